//! Dense f64 linear algebra on the small `n x n` matrices scores end in (nalgebra).

use nalgebra::DMatrix;

/// `log |det m|` of a symmetric matrix (`[n][n]` row-major), sign ignored.
///
/// Cholesky first (the kernels scores build are positive semi-definite in exact
/// arithmetic); where it fails (indefinite, or singular to rounding) LU with partial
/// pivoting gives the magnitude. A singular matrix gives `-inf`, a non-finite one `NaN`:
/// never a made-up number.
pub fn log_abs_det(m: &[f64], n: usize) -> f64 {
    assert_eq!(m.len(), n * n);
    if m.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let matrix = DMatrix::from_row_slice(n, n, m);
    if let Some(chol) = matrix.clone().cholesky() {
        return 2.0
            * chol
                .l_dirty()
                .diagonal()
                .iter()
                .map(|d| d.ln())
                .sum::<f64>();
    }
    let lu = matrix.lu();
    lu.u().diagonal().iter().map(|d| d.abs().ln()).sum()
}

/// Eigenvalues of a symmetric matrix, ascending.
pub fn symmetric_eigenvalues(m: &[f64], n: usize) -> Vec<f64> {
    assert_eq!(m.len(), n * n);
    let matrix = DMatrix::from_row_slice(n, n, m);
    let mut values: Vec<f64> = matrix.symmetric_eigenvalues().iter().copied().collect();
    values.sort_by(f64::total_cmp);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Determinant by Laplace expansion: the textbook definition.
    fn det_laplace(m: &[f64], n: usize) -> f64 {
        if n == 1 {
            return m[0];
        }
        (0..n)
            .map(|col| {
                let minor: Vec<f64> = (1..n)
                    .flat_map(|r| (0..n).filter(move |&c| c != col).map(move |c| (r, c)))
                    .map(|(r, c)| m[r * n + c])
                    .collect();
                let sign = if col % 2 == 0 { 1.0 } else { -1.0 };
                sign * m[col] * det_laplace(&minor, n - 1)
            })
            .sum()
    }

    #[test]
    fn log_abs_det_matches_laplace_for_definite_and_indefinite_matrices() {
        let spd = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let indefinite = [1.0, 2.0, 3.0, 2.0, -1.0, 0.5, 3.0, 0.5, 2.0];
        for m in [spd, indefinite] {
            let expected = det_laplace(&m, 3).abs().ln();
            assert!((log_abs_det(&m, 3) - expected).abs() < 1e-12);
        }
    }

    #[test]
    fn singular_and_non_finite_are_reported_as_such() {
        let singular = [1.0, 2.0, 2.0, 4.0];
        assert_eq!(log_abs_det(&singular, 2), f64::NEG_INFINITY);
        assert!(log_abs_det(&[1.0, f64::NAN, 0.0, 1.0], 2).is_nan());
    }

    #[test]
    fn eigenvalues_of_a_known_matrix() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3.
        let values = symmetric_eigenvalues(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((values[0] - 1.0).abs() < 1e-12 && (values[1] - 3.0).abs() < 1e-12);
    }
}
