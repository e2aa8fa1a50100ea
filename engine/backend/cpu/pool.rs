//! Average pooling on `[n][c][h][w]`, parallel over `h x w` planes.
//!
//! - 3x3, stride 1, pad 1, padding not counted: `y[i][j]` is the mean of the in-bounds taps.
//!   The tap count factorises as `rows(i) * cols(j)` (each 2 at a border, else 3), so
//!   `y = (B x) / cnt` and `dx += B (dy / cnt)` with `B` the separable 3x3 box sum.
//! - 2x2, stride 2: `y` is `[floor(h/2)][floor(w/2)]`; a trailing odd row/column is ignored
//!   (and gets no gradient), as PyTorch `AvgPool2d(2, 2)`.
//! - global: `y[n][c]` is the plane mean.

use rayon::prelude::*;

use super::elementwise::{sum_f64, with_widest_simd, PAR_CHUNK};
use super::scratch::with_scratch;
use crate::backend::Real;

/// Elements between the two scratch planes of [`avgpool3x3_forward`] (one cache line of
/// f32), so they are not a multiple of 4 KiB apart.
const SKEW: usize = 16;

/// Planes narrower than this take [`avgpool3x3_forward`]'s column divisors from a table.
const NARROW: usize = 32;

fn check(len: usize, want: usize, what: &str, op: &str) {
    assert_eq!(len, want, "{op}: length of {what}");
}

/// `1 / (number of in-bounds taps along one axis)` at position `i` of `len`.
fn inv_taps<T: Real>(i: usize, len: usize) -> T {
    let taps = 1 + usize::from(i > 0) + usize::from(i + 1 < len);
    T::one() / T::from_usize(taps).expect("small count")
}

/// 3x3 average pool, stride 1, pad 1, divisor = in-bounds taps; `y` overwritten.
///
/// Per plane, the additions in a fixed order, horizontal `R[j] = (s[j] + s[j-1]) + s[j+1]`
/// then vertical `(R[i] + R[i-1]) + R[i+1]` (in-bounds terms only), as long flat loops
/// over the plane so they vectorise even for 8-wide rows: the horizontal sums `R` of the
/// whole plane in one shifted-slice loop (row ends patched after), then `y = ((R[i] + R[i-1]) + R[i+1]) * inv_c(j) * inv_r(i)`
/// with the interior rows (all `inv_r = 1/3`) in one flat loop. `R` is one plane
/// (L1-resident); several planes per rayon task.
pub fn avgpool3x3_forward<T: Real>(n: usize, c: usize, h: usize, w: usize, x: &[T], y: &mut [T]) {
    check(x.len(), n * c * h * w, "x", "avgpool3x3_forward");
    check(y.len(), n * c * h * w, "y", "avgpool3x3_forward");
    let hw = h * w;
    if hw == 0 {
        return;
    }
    let task = hw * (PAR_CHUNK / hw).max(1);
    y.par_chunks_mut(task)
        .zip(x.par_chunks(task))
        .for_each(|(y, x)| {
            // Narrow planes (8, 16 wide) take `inv_c` from a plane-sized table: patching two
            // columns in eight costs more than the extra stream. Wide ones multiply every
            // column by 1/3 and patch the two end columns after (2x faster at 32x32).
            let table = if w < NARROW { hw } else { 0 };
            with_scratch(hw + SKEW + table, |buf: &mut [T]| {
                let (rows, inv_c) = buf.split_at_mut(hw);
                let inv_c = &mut inv_c[SKEW..];
                for r in inv_c.chunks_exact_mut(w) {
                    r.iter_mut()
                        .enumerate()
                        .for_each(|(j, v)| *v = inv_taps(j, w));
                }
                with_widest_simd(
                    #[inline(always)]
                    || {
                        for (y, x) in y.chunks_exact_mut(hw).zip(x.chunks_exact(hw)) {
                            hsum3_plane(w, x, rows);
                            if w < NARROW {
                                vsum3_scale_plane_table(h, w, rows, inv_c, y);
                            } else {
                                vsum3_scale_plane(h, w, rows, y);
                            }
                        }
                    },
                )
            });
        });
}

/// Horizontal 3-tap sums of one plane: `r[k] = (s[k] + s[k-1]) + s[k+1]` over the flat plane, then
/// each row's first and last entry recomputed without the neighbour across the row end.
#[inline(always)]
fn hsum3_plane<T: Real>(w: usize, s: &[T], r: &mut [T]) {
    let len = s.len();
    if w == 1 {
        r.copy_from_slice(s);
        return;
    }
    for (((r, &c), &l), &rt) in r[1..len - 1]
        .iter_mut()
        .zip(&s[1..len - 1])
        .zip(&s[..len - 2])
        .zip(&s[2..])
    {
        *r = (c + l) + rt;
    }
    for (r, s) in r.chunks_exact_mut(w).zip(s.chunks_exact(w)) {
        r[0] = s[0] + s[1];
        r[w - 1] = s[w - 1] + s[w - 2];
    }
}

/// `y[i][j] = ((r[i] + r[i-1]) + r[i+1])[j] * inv_c[i][j] * inv_r(i)` (in-bounds rows),
/// as [`vsum3`] adds; `inv_c` is the plane-sized table of column divisors.
#[inline(always)]
fn vsum3_scale_plane_table<T: Real>(h: usize, w: usize, r: &[T], inv_c: &[T], y: &mut [T]) {
    let hw = h * w;
    if h == 1 {
        let inv_r: T = inv_taps(0, 1);
        for ((y, &c), &ic) in y.iter_mut().zip(r).zip(inv_c) {
            *y = c * ic * inv_r;
        }
        return;
    }
    // First and last rows: two terms each.
    let (first, last) = (inv_taps::<T>(0, h), inv_taps::<T>(h - 1, h));
    for (((y, &c), &d), &ic) in y[..w].iter_mut().zip(&r[..w]).zip(&r[w..2 * w]).zip(inv_c) {
        *y = (c + d) * ic * first;
    }
    let lo = hw - w;
    for (((y, &c), &u), &ic) in y[lo..]
        .iter_mut()
        .zip(&r[lo..])
        .zip(&r[lo - w..lo])
        .zip(inv_c)
    {
        *y = (c + u) * ic * last;
    }
    // Interior rows, all with three terms and `inv_r = 1/3`: one flat loop.
    let third: T = inv_taps(1, 3);
    for ((((y, &c), &u), &d), &ic) in y[w..lo]
        .iter_mut()
        .zip(&r[w..lo])
        .zip(&r[..lo - w])
        .zip(&r[2 * w..])
        .zip(&inv_c[w..lo])
    {
        *y = ((c + u) + d) * ic * third;
    }
}

/// `y[i][j] = ((r[i] + r[i-1]) + r[i+1])[j] * inv_c(j) * inv_r(i)` (in-bounds rows), as
/// [`vsum3`] adds.
#[inline(always)]
fn vsum3_scale_plane<T: Real>(h: usize, w: usize, r: &[T], y: &mut [T]) {
    let hw = h * w;
    let row = |i: usize| &r[i * w..(i + 1) * w];
    // Every column at the interior divisor first (a column's divisor is 1/3 unless it is
    // the first or last), then the two end columns of every row rewritten.
    let third: T = inv_taps(1, 3);
    if h == 1 {
        let inv_r: T = inv_taps(0, 1);
        for (y, &c) in y.iter_mut().zip(r) {
            *y = c * third * inv_r;
        }
    } else {
        let (first, last) = (inv_taps::<T>(0, h), inv_taps::<T>(h - 1, h));
        for ((y, &c), &d) in y[..w].iter_mut().zip(row(0)).zip(row(1)) {
            *y = (c + d) * third * first;
        }
        let lo = hw - w;
        for ((y, &c), &u) in y[lo..].iter_mut().zip(row(h - 1)).zip(row(h - 2)) {
            *y = (c + u) * third * last;
        }
        // Interior rows, all with three terms: one flat loop.
        for (((y, &c), &u), &d) in y[w..lo]
            .iter_mut()
            .zip(&r[w..lo])
            .zip(&r[..lo - w])
            .zip(&r[2 * w..])
        {
            *y = ((c + u) + d) * third * third;
        }
    }
    for (i, y) in y.chunks_exact_mut(w).enumerate() {
        let vsum = |j: usize| {
            let mut s = r[i * w + j];
            if i > 0 {
                s += r[(i - 1) * w + j];
            }
            if i + 1 < h {
                s += r[(i + 1) * w + j];
            }
            s
        };
        let inv_r: T = inv_taps(i, h);
        for j in [0, w - 1] {
            y[j] = vsum(j) * inv_taps(j, w) * inv_r;
        }
    }
}

/// `dx +=` the gradient of [`avgpool3x3_forward`]: `B (dy / cnt)`, per plane `dy` scaled
/// by `inv_r(i) * inv_c(j)`, then the same horizontal and vertical sums as the forward
/// (same order), added to `dx`; flat loops, several planes per rayon task.
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
    let hw = h * w;
    if hw == 0 {
        return;
    }
    let task = hw * (PAR_CHUNK / hw).max(1);
    dx.par_chunks_mut(task)
        .zip(dy.par_chunks(task))
        .for_each(|(dx, dy)| {
            with_scratch(2 * hw + SKEW + w, |buf: &mut [T]| {
                let (scaled, rest) = buf.split_at_mut(hw);
                let (rows, inv_c) = rest[SKEW..].split_at_mut(hw);
                for (j, v) in inv_c.iter_mut().enumerate() {
                    *v = inv_taps(j, w);
                }
                with_widest_simd(
                    #[inline(always)]
                    || {
                        for (dx, dy) in dx.chunks_exact_mut(hw).zip(dy.chunks_exact(hw)) {
                            for (i, (s, d)) in scaled
                                .chunks_exact_mut(w)
                                .zip(dy.chunks_exact(w))
                                .enumerate()
                            {
                                let inv_r: T = inv_taps(i, h);
                                for ((s, &d), &ic) in s.iter_mut().zip(d).zip(&*inv_c) {
                                    *s = d * inv_r * ic;
                                }
                            }
                            hsum3_plane(w, scaled, rows);
                            vsum3_add_plane(h, w, rows, dx);
                        }
                    },
                )
            });
        });
}

/// `dx[i] += (r[i] + r[i-1]) + r[i+1]` for each row `i` of one plane (in-bounds rows only):
/// the two end rows, then the interior as one flat loop.
#[inline(always)]
fn vsum3_add_plane<T: Real>(h: usize, w: usize, r: &[T], dx: &mut [T]) {
    if h == 1 {
        for (d, &c) in dx.iter_mut().zip(r) {
            *d += c;
        }
        return;
    }
    let lo = h * w - w;
    for ((d, &c), &down) in dx[..w].iter_mut().zip(&r[..w]).zip(&r[w..2 * w]) {
        *d += c + down;
    }
    for ((d, &c), &up) in dx[lo..].iter_mut().zip(&r[lo..]).zip(&r[lo - w..lo]) {
        *d += c + up;
    }
    for (((d, &c), &up), &down) in dx[w..lo]
        .iter_mut()
        .zip(&r[w..lo])
        .zip(&r[..lo - w])
        .zip(&r[2 * w..])
    {
        *d += (c + up) + down;
    }
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
