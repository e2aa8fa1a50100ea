//! Gram matrices of per-sample gradients: `G += A A^T` for `A = [n][len]`.
//!
//! Products are formed in the backend's scalar by GEMM over column blocks of A and each
//! block's `n x n` result is added to G in f64, so f32 rounding stays within one block
//! while the sum over hundreds of thousands of parameters is accumulated in f64.

use super::gemm::{matmul, Mat, Parallelism};
use crate::backend::Real;

/// Columns of A per block: large enough for an efficient GEMM, small enough that the f32
/// partial sums of one block stay accurate.
const BLOCK: usize = 4096;

/// `g += a a^T` where `a` is `[n][len]` row-major and `g` is `[n][n]` row-major f64.
pub fn gram_accumulate<T: Real>(a: &[T], n: usize, len: usize, g: &mut [f64]) {
    assert_eq!(a.len(), n * len);
    assert_eq!(g.len(), n * n);
    let mut block_gram = vec![T::zero(); n * n];
    for start in (0..len).step_by(BLOCK) {
        let width = BLOCK.min(len - start);
        // The [n][width] block at column `start` of A (row stride len), times its transpose.
        let block = Mat {
            rows: n,
            cols: width,
            rs: len,
            cs: 1,
        };
        let a_block = &a[start..];
        matmul(
            &mut block_gram,
            Mat::rows(n, n),
            false,
            a_block,
            block,
            a_block,
            block.t(),
            Parallelism::Rayon(0),
        );
        for (acc, v) in g.iter_mut().zip(&block_gram) {
            *acc += v.to_f64_lossless();
        }
    }
}

/// `out[j]` = mean_i |a[i][j]|, `out[len + j]` = the population variance of column j of
/// `a` (`[n][len]`), in f64: sums row by row (contiguous), then squared deviations from the
/// column means.
pub fn column_moments<T: Real>(a: &[T], n: usize, len: usize, out: &mut [f64]) {
    assert_eq!(a.len(), n * len, "column_moments: a is [n][len]");
    assert_eq!(out.len(), 2 * len, "column_moments: out holds 2 * len");
    let nf = n as f64;
    let (mean_abs, var) = out.split_at_mut(len);
    let mut mean = vec![0.0f64; len];
    mean_abs.fill(0.0);
    for row in a.chunks_exact(len) {
        for ((s, m), v) in mean.iter_mut().zip(mean_abs.iter_mut()).zip(row) {
            let v = v.to_f64_lossless();
            *s += v;
            *m += v.abs();
        }
    }
    mean.iter_mut().for_each(|s| *s /= nf);
    mean_abs.iter_mut().for_each(|m| *m /= nf);
    var.fill(0.0);
    for row in a.chunks_exact(len) {
        for ((d, m), v) in var.iter_mut().zip(&mean).zip(row) {
            let dev = v.to_f64_lossless() - m;
            *d += dev * dev;
        }
    }
    var.iter_mut().for_each(|d| *d /= nf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_equals_naive_dot_products() {
        let (n, len) = (7, 2 * BLOCK + 37);
        let a: Vec<f32> = (0..n * len)
            .map(|i| ((i * 2654435761usize) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut g = vec![0.5; n * n];
        gram_accumulate(&a, n, len, &mut g);
        for i in 0..n {
            for j in 0..n {
                let dot: f64 = (0..len)
                    .map(|k| f64::from(a[i * len + k]) * f64::from(a[j * len + k]))
                    .sum();
                let got = g[i * n + j] - 0.5;
                assert!(
                    (got - dot).abs() <= 1e-5 * dot.abs().max(1.0),
                    "({i},{j}) {got} vs {dot}"
                );
            }
        }
    }

    #[test]
    fn column_moments_are_the_mean_absolute_value_and_the_variance_of_each_column() {
        // Columns: constant (variance 0), symmetric (mean 0), a large offset against a
        // small spread (the two-pass variance keeps it).
        let a: Vec<f32> = vec![
            2.0, -1.0, 1000.5, //
            2.0, 1.0, 1000.0, //
            2.0, -3.0, 1001.0, //
            2.0, 3.0, 1000.5,
        ];
        let mut out = vec![f64::NAN; 6];
        column_moments(&a, 4, 3, &mut out);
        assert_eq!(out[..3], [2.0, 2.0, 1000.5]);
        assert_eq!(out[3..], [0.0, 5.0, 0.125]);
    }
}
