//! Average pooling on `[n][c][h][w]`, parallel over `h x w` planes.
//!
//! - 3x3, stride 1, pad 1, padding not counted: `y[i][j]` is the mean of the in-bounds taps.
//!   The tap count factorises as `rows(i) * cols(j)` (each 2 at a border, else 3), so
//!   `y = (B x) / cnt` and `dx += B (dy / cnt)` with `B` the separable 3x3 box sum.
//! - 2x2, stride 2: `y` is `[floor(h/2)][floor(w/2)]`; a trailing odd row/column is ignored
//!   (and gets no gradient), as PyTorch `AvgPool2d(2, 2)`.
//! - global: `y[n][c]` is the plane mean.

use rayon::prelude::*;

use super::elementwise::sum_f64;
use super::scratch::with_scratch;
use crate::backend::Real;

fn check(len: usize, want: usize, what: &str, op: &str) {
    assert_eq!(len, want, "{op}: length of {what}");
}

/// `1 / (number of in-bounds taps along one axis)` at position `i` of `len`.
fn inv_taps<T: Real>(i: usize, len: usize) -> T {
    let taps = 1 + usize::from(i > 0) + usize::from(i + 1 < len);
    T::one() / T::from_usize(taps).expect("small count")
}

/// `rows[i][j] = src[i][j-1] + src[i][j] + src[i][j+1]` (in-bounds terms only).
fn hsum3<T: Real>(w: usize, src: &[T], rows: &mut [T]) {
    for (s, r) in src.chunks_exact(w).zip(rows.chunks_exact_mut(w)) {
        r.copy_from_slice(s);
        for j in 1..w {
            r[j] += s[j - 1];
            r[j - 1] += s[j];
        }
    }
}

/// Calls `emit(i, row_sum)` with the vertical 3-sum of `rows` around each row `i`.
fn vsum3<T: Real>(
    h: usize,
    w: usize,
    rows: &[T],
    acc: &mut [T],
    mut emit: impl FnMut(usize, &[T]),
) {
    for i in 0..h {
        acc.copy_from_slice(&rows[i * w..(i + 1) * w]);
        for r in [i.checked_sub(1), Some(i + 1).filter(|&r| r < h)]
            .into_iter()
            .flatten()
        {
            acc.iter_mut()
                .zip(&rows[r * w..(r + 1) * w])
                .for_each(|(a, &v)| *a += v);
        }
        emit(i, acc);
    }
}

/// 3x3 average pool, stride 1, pad 1, divisor = in-bounds taps; `y` overwritten.
pub fn avgpool3x3_forward<T: Real>(n: usize, c: usize, h: usize, w: usize, x: &[T], y: &mut [T]) {
    check(x.len(), n * c * h * w, "x", "avgpool3x3_forward");
    check(y.len(), n * c * h * w, "y", "avgpool3x3_forward");
    if h * w == 0 {
        return;
    }
    y.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .for_each(|(y, x)| {
            with_scratch(h * w + 2 * w, |buf: &mut [T]| {
                let (rows, rest) = buf.split_at_mut(h * w);
                let (acc, inv_c) = rest.split_at_mut(w);
                inv_c
                    .iter_mut()
                    .enumerate()
                    .for_each(|(j, v)| *v = inv_taps(j, w));
                hsum3(w, x, rows);
                vsum3(h, w, rows, acc, |i, sum| {
                    let inv_r: T = inv_taps(i, h);
                    for ((y, &s), &ic) in y[i * w..(i + 1) * w].iter_mut().zip(sum).zip(&*inv_c) {
                        *y = s * ic * inv_r;
                    }
                });
            });
        });
}

/// Backward of [`avgpool3x3_forward`]: `dx += B(dy / cnt)`.
pub fn avgpool3x3_backward<T: Real>(
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    dy: &[T],
    dx: &mut [T],
) {
    check(dy.len(), n * c * h * w, "dy", "avgpool3x3_backward");
    check(dx.len(), n * c * h * w, "dx", "avgpool3x3_backward");
    if h * w == 0 {
        return;
    }
    dx.par_chunks_mut(h * w)
        .zip(dy.par_chunks(h * w))
        .for_each(|(dx, dy)| {
            with_scratch(2 * h * w + w, |buf: &mut [T]| {
                let (scaled, rest) = buf.split_at_mut(h * w);
                let (rows, acc) = rest.split_at_mut(h * w);
                for (i, (s, d)) in scaled
                    .chunks_exact_mut(w)
                    .zip(dy.chunks_exact(w))
                    .enumerate()
                {
                    let inv_r: T = inv_taps(i, h);
                    for (j, (s, &d)) in s.iter_mut().zip(d).enumerate() {
                        *s = d * inv_r * inv_taps(j, w);
                    }
                }
                hsum3(w, scaled, rows);
                vsum3(h, w, rows, acc, |i, sum| {
                    dx[i * w..(i + 1) * w]
                        .iter_mut()
                        .zip(sum)
                        .for_each(|(d, &s)| *d += s);
                });
            });
        });
}

/// 2x2 average pool, stride 2, output `floor(h/2) x floor(w/2)`; `y` overwritten.
pub fn avgpool2x2_forward<T: Real>(n: usize, c: usize, h: usize, w: usize, x: &[T], y: &mut [T]) {
    let (oh, ow) = (h / 2, w / 2);
    check(x.len(), n * c * h * w, "x", "avgpool2x2_forward");
    check(y.len(), n * c * oh * ow, "y", "avgpool2x2_forward");
    if oh * ow == 0 {
        return;
    }
    let quarter = T::from_f64_rounded(0.25);
    y.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(y, x)| {
            for (i, yr) in y.chunks_exact_mut(ow).enumerate() {
                let (r0, r1) = (&x[2 * i * w..][..w], &x[(2 * i + 1) * w..][..w]);
                for (j, y) in yr.iter_mut().enumerate() {
                    *y = (r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1]) * quarter;
                }
            }
        });
}

/// Backward of [`avgpool2x2_forward`]: each of the four inputs gets `dy / 4`.
pub fn avgpool2x2_backward<T: Real>(
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    dy: &[T],
    dx: &mut [T],
) {
    let (oh, ow) = (h / 2, w / 2);
    check(dy.len(), n * c * oh * ow, "dy", "avgpool2x2_backward");
    check(dx.len(), n * c * h * w, "dx", "avgpool2x2_backward");
    if oh * ow == 0 {
        return;
    }
    let quarter = T::from_f64_rounded(0.25);
    dx.par_chunks_mut(h * w)
        .zip(dy.par_chunks(oh * ow))
        .for_each(|(dx, dy)| {
            for (i, dr) in dy.chunks_exact(ow).enumerate() {
                for r in [2 * i, 2 * i + 1] {
                    let row = &mut dx[r * w..][..w];
                    for (j, &d) in dr.iter().enumerate() {
                        let g = d * quarter;
                        row[2 * j] += g;
                        row[2 * j + 1] += g;
                    }
                }
            }
        });
}

/// `y[n][c]` = mean over each `hw` plane of `x`; overwritten.
pub fn global_avgpool_forward<T: Real>(n: usize, c: usize, hw: usize, x: &[T], y: &mut [T]) {
    check(x.len(), n * c * hw, "x", "global_avgpool_forward");
    check(y.len(), n * c, "y", "global_avgpool_forward");
    if hw == 0 {
        return;
    }
    y.par_iter_mut()
        .zip(x.par_chunks(hw))
        .for_each(|(y, x)| *y = T::from_f64_rounded(sum_f64(x) / hw as f64));
}

/// Backward of [`global_avgpool_forward`]: `dx += dy / hw` over each plane.
pub fn global_avgpool_backward<T: Real>(n: usize, c: usize, hw: usize, dy: &[T], dx: &mut [T]) {
    check(dy.len(), n * c, "dy", "global_avgpool_backward");
    check(dx.len(), n * c * hw, "dx", "global_avgpool_backward");
    if hw == 0 {
        return;
    }
    let inv = T::one() / T::from_usize(hw).expect("plane size fits");
    dx.par_chunks_mut(hw)
        .zip(dy.par_iter())
        .for_each(|(dx, &d)| {
            let g = d * inv;
            dx.iter_mut().for_each(|v| *v += g);
        });
}
