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

/// The Pearson correlation matrix (`[c][c]` row-major) of the `c` rows of `x` (`[c][m]`:
/// each row a variable, its `m` entries observations), as `torch.corrcoef` computes it,
/// with the NaN it gives replaced by 0 as MeCo does: a row without spread (constant, or
/// `m < 2`) has a zero row and column, its diagonal included. Entries are clamped to
/// [-1, 1] as torch clamps them.
pub fn row_correlation(x: &[f64], c: usize, m: usize) -> Vec<f64> {
    assert_eq!(x.len(), c * m);
    let mut centred = vec![0.0f64; c * m];
    let mut norms = vec![0.0f64; c];
    if m >= 2 {
        for (i, (row, out)) in x
            .chunks_exact(m)
            .zip(centred.chunks_exact_mut(m))
            .enumerate()
        {
            let mean = row.iter().sum::<f64>() / m as f64;
            for (o, &v) in out.iter_mut().zip(row) {
                *o = v - mean;
            }
            norms[i] = out.iter().map(|v| v * v).sum::<f64>().sqrt();
        }
    }
    let mut corr = vec![0.0f64; c * c];
    for i in 0..c {
        if norms[i] == 0.0 {
            continue;
        }
        let a = &centred[i * m..(i + 1) * m];
        for j in i..c {
            if norms[j] == 0.0 {
                continue;
            }
            let b = &centred[j * m..(j + 1) * m];
            let dot: f64 = a.iter().zip(b).map(|(p, q)| p * q).sum();
            let r = (dot / (norms[i] * norms[j])).clamp(-1.0, 1.0);
            corr[i * c + j] = r;
            corr[j * c + i] = r;
        }
    }
    corr
}

/// The Pearson correlation matrix (`[c][c]` row-major) of `c` variables from their centred
/// Gram `g` (`[c][c]`: sums of products of the variables less their means, as
/// [`crate::backend::Backend::channel_gram`] gives), as [`row_correlation`] computes it
/// from the observations (the same divisions, bit for bit where `g` holds its sums):
/// `g_ij / (sqrt(g_ii) sqrt(g_jj))` clamped to [-1, 1] from the upper triangle, with a zero
/// row and column (diagonal included) for each variable without spread: `constant[i]`
/// (its observations all equal, which a rounded mean may not show as `g_ii = 0`), or
/// `g_ii = 0`.
pub fn correlation_of_centred_gram(g: &[f64], c: usize, constant: &[bool]) -> Vec<f64> {
    assert_eq!((g.len(), constant.len()), (c * c, c));
    let norms: Vec<f64> = (0..c)
        .map(|i| {
            if constant[i] {
                0.0
            } else {
                g[i * c + i].sqrt()
            }
        })
        .collect();
    let mut corr = vec![0.0f64; c * c];
    for i in 0..c {
        if norms[i] == 0.0 {
            continue;
        }
        for j in i..c {
            if norms[j] == 0.0 {
                continue;
            }
            let r = (g[i * c + j] / (norms[i] * norms[j])).clamp(-1.0, 1.0);
            corr[i * c + j] = r;
            corr[j * c + i] = r;
        }
    }
    corr
}

/// The largest singular value of a `rows x cols` row-major matrix.
pub fn largest_singular_value(m: &[f64], rows: usize, cols: usize) -> f64 {
    assert_eq!(m.len(), rows * cols);
    DMatrix::from_row_slice(rows, cols, m)
        .singular_values()
        .iter()
        .copied()
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pearson's r from its textbook formula, one pair at a time.
    fn pearson(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    }

    #[test]
    fn largest_singular_value_of_known_matrices() {
        // diag(3, -5) padded to 3x2: singular values 5 and 3.
        let m = [3.0, 0.0, 0.0, -5.0, 0.0, 0.0];
        assert!((largest_singular_value(&m, 3, 2) - 5.0).abs() < 1e-12);
        // A rank-one outer product u v^T has |u| |v|.
        let (u, v) = ([1.0, 2.0], [2.0, 0.0, 1.0]);
        let m: Vec<f64> = u
            .iter()
            .flat_map(|a| v.iter().map(move |b| a * b))
            .collect();
        let want = (5.0f64).sqrt() * (5.0f64).sqrt();
        assert!((largest_singular_value(&m, 2, 3) - want).abs() < 1e-12);
    }

    #[test]
    fn row_correlation_is_pearson_with_constant_rows_zeroed() {
        let x: [f64; 12] = [
            1.0, 2.0, 4.0, 3.0, // row 0
            -2.0, 0.5, 0.25, 8.0, // row 1
            3.0, 3.0, 3.0, 3.0, // row 2: constant
        ];
        let corr = row_correlation(&x, 3, 4);
        let rows: Vec<&[f64]> = x.chunks(4).collect();
        for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let want = pearson(rows[i], rows[j]);
            assert!((corr[i * 3 + j] - want).abs() < 1e-12, "({i}, {j})");
        }
        for k in 0..3 {
            assert_eq!(corr[2 * 3 + k], 0.0);
            assert_eq!(corr[k * 3 + 2], 0.0);
        }
        // One observation per row: no correlation at all.
        assert!(row_correlation(&[1.0, 2.0, 3.0], 3, 1)
            .iter()
            .all(|&v| v == 0.0));
    }

    #[test]
    fn correlation_of_the_centred_gram_is_row_correlation_bit_for_bit() {
        use crate::backend::cpu::channel::channel_gram;
        use crate::backend::ChannelView;
        // Rows of mixed spread, a constant row whose mean is exact (0.5) and one whose
        // mean rounds (0.1 x 7 / 7), which row_correlation keeps as rounding noise and the
        // constancy flag zeroes.
        let (c, m) = (5, 7);
        let mut x: Vec<f64> = (0..c * m)
            .map(|v| ((v * 37) % 19) as f64 * 0.173 - 1.4)
            .collect();
        x[2 * m..3 * m].fill(0.5);
        x[4 * m..5 * m].fill(0.1);
        let view = ChannelView::plain(c, m);
        let mut g = vec![0.0; c * c];
        channel_gram(&x, view, &x, view, 1, true, &mut g);
        let want = row_correlation(&x, c, m);
        assert!(
            want[4 * c + 4] > 0.99,
            "the rounded mean's noise, correlated with itself"
        );
        let constant: Vec<bool> = x.chunks(m).map(|r| r.iter().all(|&v| v == r[0])).collect();
        let got = correlation_of_centred_gram(&g, c, &constant);
        for i in 0..c {
            for j in 0..c {
                let (got, want) = (got[i * c + j], want[i * c + j]);
                if i == 4 || j == 4 {
                    assert_eq!(got, 0.0, "({i}, {j}): a constant row");
                } else {
                    assert_eq!(got.to_bits(), want.to_bits(), "({i}, {j})");
                }
            }
        }
        // Without the flags, the same bits as row_correlation everywhere.
        let got = correlation_of_centred_gram(&g, c, &[false; 5]);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
    }

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
