//! Gram matrices of per-sample gradients: `G += A A^T` for `A = [n][len]`.
//!
//! Products are formed in the backend's scalar by GEMM over column blocks of A and each
//! block's `n x n` result is added to G in f64, so f32 rounding stays within one block
//! while the sum over hundreds of thousands of parameters is accumulated in f64.

use rayon::prelude::*;

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

/// Columns per task of [`column_moments`]: each task reads a 16 KiB run of every row.
const MOMENT_COLUMNS: usize = 4096;

/// `out[j]` = mean_i |a[i][j]|, `out[len + j]` = the population variance of column j of
/// `a` (`[n][len]`), in f64: sums row by row (contiguous), then squared deviations from the
/// column means; runs of columns in parallel (each column's sums in row order, so the
/// result does not depend on the thread count).
pub fn column_moments<T: Real>(a: &[T], n: usize, len: usize, out: &mut [f64]) {
    assert_eq!(a.len(), n * len, "column_moments: a is [n][len]");
    assert_eq!(out.len(), 2 * len, "column_moments: out holds 2 * len");
    let nf = n as f64;
    let (mean_abs, var) = out.split_at_mut(len);
    mean_abs
        .par_chunks_mut(MOMENT_COLUMNS)
        .zip(var.par_chunks_mut(MOMENT_COLUMNS))
        .enumerate()
        .for_each(|(task, (mean_abs, var))| {
            let (first, width) = (task * MOMENT_COLUMNS, mean_abs.len());
            let rows = || {
                a.chunks_exact(len)
                    .map(move |row| &row[first..first + width])
            };
            let mut mean = vec![0.0f64; width];
            mean_abs.fill(0.0);
            for row in rows() {
                for ((s, m), v) in mean.iter_mut().zip(mean_abs.iter_mut()).zip(row) {
                    let v = v.to_f64_lossless();
                    *s += v;
                    *m += v.abs();
                }
            }
            mean.iter_mut().for_each(|s| *s /= nf);
            mean_abs.iter_mut().for_each(|m| *m /= nf);
            var.fill(0.0);
            for row in rows() {
                for ((d, m), v) in var.iter_mut().zip(&mean).zip(row) {
                    let dev = v.to_f64_lossless() - m;
                    *d += dev * dev;
                }
            }
            var.iter_mut().for_each(|d| *d /= nf);
        });
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

        // Several column tasks, the last one ragged: each column as computed alone.
        let (n, len) = (3, 2 * MOMENT_COLUMNS + 5);
        let a: Vec<f32> = (0..n * len)
            .map(|i| ((i * 7919) % 101) as f32 - 50.0)
            .collect();
        let mut out = vec![f64::NAN; 2 * len];
        column_moments(&a, n, len, &mut out);
        for j in [
            0,
            MOMENT_COLUMNS - 1,
            MOMENT_COLUMNS,
            2 * MOMENT_COLUMNS + 4,
        ] {
            let col: Vec<f64> = (0..n).map(|i| f64::from(a[i * len + j])).collect();
            let mean = col.iter().sum::<f64>() / n as f64;
            let mean_abs = col.iter().map(|v| v.abs()).sum::<f64>() / n as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            assert_eq!((out[j], out[len + j]), (mean_abs, var), "column {j}");
        }
    }
}
