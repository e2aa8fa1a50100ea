//! Gram matrices of per-sample gradients: `G += A A^T` for `A = [n][len]`.
//!
//! `n` is a batch (32 for the NTK) and `len` up to ~10^5 weights, so this is many short
//! dot products rather than a GEMM: a general GEMM spends its time packing the long,
//! row-contiguous operand (measured 26 GFLOP/s at 32 x 36864). Here each column block of
//! A is read straight from its rows by a 4x4 register tile of dot products (16 vector
//! accumulators, one load per row and vector step), only the tiles on or above the
//! diagonal are formed (G is symmetric), and blocks run in parallel.
//!
//! Rounding: products and per-lane sums in the backend's scalar over one block (a lane
//! adds `BLOCK / LANES` terms), lanes and blocks summed in f64 in a fixed order, so f32
//! rounding stays within a block and the result does not depend on the thread count (it
//! does, in the last bits, on whether the CPU has AVX-512: fused against separate
//! multiply-adds).

#[cfg(target_arch = "x86_64")]
use std::any::TypeId;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::as_f32;
use crate::backend::Real;

/// Columns of A per block (a parallel task): 32 rows of it (512 KiB) stay in L2; measured
/// faster than 1024 or 2048, whose extra tasks and partial sums cost more than they share.
const BLOCK: usize = 4096;
/// Rows of A per side of a tile of G.
const TILE: usize = 4;
/// Columns per vector step: one AVX-512 register of f32.
const LANES: usize = 16;

/// How a tile of dot products is computed: AVX-512 registers for f32 where the CPU has
/// them, else plain loops.
#[derive(Clone, Copy, Debug, PartialEq)]
enum TileKernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl TileKernel {
    fn detect<T: Real>() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if TypeId::of::<T>() == TypeId::of::<f32>()
                && std::arch::is_x86_feature_detected!("avx512f")
            {
                return TileKernel::Avx512;
            }
        }
        TileKernel::Portable
    }
}

/// `g += a a^T` where `a` is `[n][len]` row-major and `g` is `[n][n]` row-major f64.
pub fn gram_accumulate<T: Real>(a: &[T], n: usize, len: usize, g: &mut [f64]) {
    gram_accumulate_with(TileKernel::detect::<T>(), a, n, len, g);
}

fn gram_accumulate_with<T: Real>(kernel: TileKernel, a: &[T], n: usize, len: usize, g: &mut [f64]) {
    assert_eq!(a.len(), n * len, "gram_accumulate: a is [n][len]");
    assert_eq!(g.len(), n * n, "gram_accumulate: g is [n][n]");
    if n == 0 || len == 0 {
        return;
    }
    let partials: Vec<Vec<f64>> = (0..len.div_ceil(BLOCK))
        .into_par_iter()
        .map(|block| {
            let cols = block * BLOCK..((block + 1) * BLOCK).min(len);
            let mut part = vec![0.0; n * n];
            block_gram(kernel, a, n, len, cols, &mut part);
            part
        })
        .collect();
    for part in &partials {
        for (acc, v) in g.iter_mut().zip(part) {
            *acc += v;
        }
    }
}

/// `part = a[.., cols] a[.., cols]^T` (`[n][n]`): the tiles on and above the diagonal,
/// mirrored.
fn block_gram<T: Real>(
    kernel: TileKernel,
    a: &[T],
    n: usize,
    len: usize,
    cols: std::ops::Range<usize>,
    part: &mut [f64],
) {
    let zeros = vec![T::zero(); cols.len()];
    // Rows past n (a ragged last tile) read zeros and are not stored.
    let row = |i: usize| -> &[T] {
        if i < n {
            &a[i * len..][cols.clone()]
        } else {
            &zeros
        }
    };
    let tiles = n.div_ceil(TILE);
    for ti in 0..tiles {
        let x: [&[T]; TILE] = std::array::from_fn(|r| row(ti * TILE + r));
        for tj in ti..tiles {
            let y: [&[T]; TILE] = std::array::from_fn(|r| row(tj * TILE + r));
            let dots = match kernel {
                TileKernel::Portable => tile_dots_portable(x, y),
                // SAFETY: chosen only where AVX-512F was detected (and only for f32).
                #[cfg(target_arch = "x86_64")]
                TileKernel::Avx512 => unsafe {
                    tile_dots_avx512(
                        x.map(|r| as_f32(r).expect("T is f32")),
                        y.map(|r| as_f32(r).expect("T is f32")),
                    )
                },
            };
            for (r, dots) in dots.iter().enumerate() {
                let i = ti * TILE + r;
                for (c, &d) in dots.iter().enumerate() {
                    let j = tj * TILE + c;
                    if i < n && j < n {
                        part[i * n + j] = d;
                        part[j * n + i] = d;
                    }
                }
            }
        }
    }
}

/// The 4x4 dot products of rows `x` with rows `y` (all the same length), in f64 from
/// per-lane partial sums in `T`, as the AVX-512 kernel forms them (which fuses each
/// multiply-add, so the two differ in the last bits).
fn tile_dots_portable<T: Real>(x: [&[T]; TILE], y: [&[T]; TILE]) -> [[f64; TILE]; TILE] {
    let width = x[0].len();
    std::array::from_fn(|r| {
        std::array::from_fn(|c| {
            let mut lanes = [T::zero(); LANES];
            for k in 0..width - width % LANES {
                lanes[k % LANES] += x[r][k] * y[c][k];
            }
            let tail: f64 = (width - width % LANES..width)
                .map(|k| x[r][k].to_f64_lossless() * y[c][k].to_f64_lossless())
                .sum();
            lanes.iter().map(|v| v.to_f64_lossless()).sum::<f64>() + tail
        })
    })
}

/// [`tile_dots_portable`] for f32 with 16 AVX-512 accumulators (fused multiply-adds).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_dots_avx512(x: [&[f32]; TILE], y: [&[f32]; TILE]) -> [[f64; TILE]; TILE] {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };
    let width = x[0].len();
    assert!(
        x.iter().chain(&y).all(|row| row.len() == width),
        "tile rows differ in length"
    );
    let body = width - width % LANES;
    let mut acc: [[__m512; TILE]; TILE] = [[_mm512_setzero_ps(); TILE]; TILE];
    let mut k = 0;
    while k < body {
        let mut xs = [_mm512_setzero_ps(); TILE];
        let mut ys = [_mm512_setzero_ps(); TILE];
        for r in 0..TILE {
            // SAFETY: k + LANES <= body <= width, the length of every row.
            xs[r] = unsafe { _mm512_loadu_ps(x[r].as_ptr().add(k)) };
            ys[r] = unsafe { _mm512_loadu_ps(y[r].as_ptr().add(k)) };
        }
        for r in 0..TILE {
            for c in 0..TILE {
                acc[r][c] = _mm512_fmadd_ps(xs[r], ys[c], acc[r][c]);
            }
        }
        k += LANES;
    }
    let mut out = [[0.0; TILE]; TILE];
    for r in 0..TILE {
        for c in 0..TILE {
            let mut lanes = [0.0f32; LANES];
            // SAFETY: `lanes` holds LANES f32.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), acc[r][c]) };
            let tail: f64 = (body..width)
                .map(|k| f64::from(x[r][k]) * f64::from(y[c][k]))
                .sum();
            out[r][c] = lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + tail;
        }
    }
    out
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

/// `out[0] += sum_i |a[i] * b[i]|`, `out[1] += sum_i b[i]^2`, in f64, in index order.
pub fn abs_products_and_squares<T: Real>(a: &[T], b: &[T], out: &mut [f64]) {
    assert_eq!(a.len(), b.len(), "abs_products_and_squares: lengths");
    let (mut abs_products, mut squares) = (0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.to_f64_lossless(), y.to_f64_lossless());
        abs_products += (x * y).abs();
        squares += y * y;
    }
    out[0] += abs_products;
    out[1] += squares;
}

/// `sum_i x[i] * (a[i] - b[i])`, in f64, in index order.
pub fn difference_dot<T: Real>(x: &[T], a: &[T], b: &[T]) -> f64 {
    assert!(
        x.len() == a.len() && x.len() == b.len(),
        "difference_dot: lengths"
    );
    x.iter()
        .zip(a)
        .zip(b)
        .map(|((x, a), b)| x.to_f64_lossless() * (a.to_f64_lossless() - b.to_f64_lossless()))
        .sum()
}

/// `sum_r (sum_p a[r][p] * b[r][p])^2` for `a, b = [rows][len]`, in f64, in index order.
pub fn row_dot_squares<T: Real>(a: &[T], b: &[T], rows: usize, len: usize) -> f64 {
    assert_eq!(a.len(), rows * len, "row_dot_squares: a is [rows][len]");
    assert_eq!(b.len(), rows * len, "row_dot_squares: b is [rows][len]");
    if len == 0 {
        return 0.0;
    }
    a.chunks_exact(len)
        .zip(b.chunks_exact(len))
        .map(|(a, b)| {
            let dot: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| x.to_f64_lossless() * y.to_f64_lossless())
                .sum();
            dot * dot
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tile kernel this machine can run, for T.
    fn kernels<T: Real>() -> Vec<TileKernel> {
        let mut all = vec![TileKernel::Portable];
        if TileKernel::detect::<T>() != TileKernel::Portable {
            all.push(TileKernel::detect::<T>());
        }
        all
    }

    /// `gram_accumulate_with` against f64 dot products of the same values, for shapes with
    /// a ragged last tile (n not a multiple of 4), a vector tail and several blocks.
    fn check_against_naive<T: Real>(tol: f64) {
        for (n, len) in [
            (1, 5),
            (7, 2 * BLOCK + 37),
            (8, LANES),
            (13, BLOCK + 1),
            (32, 300),
        ] {
            let a: Vec<T> = (0..n * len)
                .map(|i| T::from_f64_rounded(((i * 2654435761usize) % 1000) as f64 / 500.0 - 1.0))
                .collect();
            for kernel in kernels::<T>() {
                let mut g = vec![0.5; n * n];
                gram_accumulate_with(kernel, &a, n, len, &mut g);
                for i in 0..n {
                    for j in 0..n {
                        let dot: f64 = (0..len)
                            .map(|k| {
                                a[i * len + k].to_f64_lossless() * a[j * len + k].to_f64_lossless()
                            })
                            .sum();
                        let got = g[i * n + j] - 0.5;
                        assert!(
                            (got - dot).abs() <= tol * dot.abs().max(1.0),
                            "{kernel:?} n {n} len {len} ({i},{j}): {got} vs {dot}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn gram_equals_naive_dot_products() {
        check_against_naive::<f32>(1e-5);
        check_against_naive::<f64>(1e-12);
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
