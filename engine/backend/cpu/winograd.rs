//! Winograd minimal filtering F(2x2, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! A 2x2 output tile is `A^T [(G g G^T) .* (B^T d B)] A` for a 3x3 filter `g` and the 4x4
//! input tile `d` at `(2ty - pad, 2tx - pad)` (zeros outside the image), with
//!
//! ```text
//! B^T = | 1  0 -1  0 |    G = |  1    0    0  |    A^T = | 1  1  1  0 |
//!       | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//!       | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//!       | 0  1  0 -1 |        |  0    0    1  |
//! ```
//!
//! Summed over input channels, element `e` of the transformed tile is a matrix product,
//! `M_e[co][t] = sum_ci U_e[co][ci] V_e[ci][t]`: a convolution is 16 GEMMs of depth `cin`,
//! 4 multiplies per output and input channel instead of 9, plus add-only transforms. The
//! transforms are written out below as those adds.
//!
//! Layouts: `U` `[16][cout][cin]` (filters, once per call); `V` `[16][cin][cols]` and `M`
//! `[16][cout][cols]` for a group of images whose tiles make up the `cols` columns (image
//! `b`'s tile `(ty, tx)` is column `(b * th + ty) * tw + tx`), groups sized to stay in L2.
//! Tiles past an odd edge are computed on zero padding and clipped.
//!
//! Rounding: the transforms only add (and halve, exactly), so the error stays within a
//! small multiple of im2col's (tests/cpu_ops.rs bounds it against an f64 direct conv).

use super::conv::for_each_image;
use super::gemm::{matmul, Mat};
use super::scratch::with_scratch;
use crate::backend::{ConvGeom, Real};

/// Elements of a transformed 4x4 tile.
pub(super) const TILE_ELEMS: usize = 16;

/// Channel counts (in and out) from which Winograd beats im2col + GEMM (docs/PERF.md).
const MIN_CHANNELS: usize = 8;

/// Bytes of `V` and `M` per image group: half of a Zen 4 core's 1 MiB L2.
const GROUP_BYTES: usize = 512 << 10;

/// Whether F(2x2, 3x3) computes this geometry (any padding).
pub(super) fn applies(g: &ConvGeom) -> bool {
    g.k == 3 && g.stride == 1
}

/// Whether it also pays over im2col here.
pub(super) fn pays(g: &ConvGeom) -> bool {
    applies(g) && g.cin >= MIN_CHANNELS && g.cout >= MIN_CHANNELS
}

/// Elements of the transformed filters `U`.
pub(super) fn filters_len(g: &ConvGeom) -> usize {
    TILE_ELEMS * g.cout * g.cin
}

/// Fills `u` (`[16][cout][cin]`) with `G f G^T` of each filter `f = filter(co, ci)`
/// (3x3, row-major).
pub(super) fn transform_filters<T: Real>(
    g: &ConvGeom,
    filter: impl Fn(usize, usize) -> [T; 9],
    u: &mut [T],
) {
    assert_eq!(u.len(), filters_len(g), "winograd: length of u");
    let half = T::from_f64_rounded(0.5);
    // G applied to the three values of a filter column (or row): four values.
    let g_times = |a: T, b: T, c: T| [a, (a + b + c) * half, (a - b + c) * half, c];
    let plane = g.cout * g.cin;
    for co in 0..g.cout {
        for ci in 0..g.cin {
            let f = filter(co, ci);
            let cols: [[T; 4]; 3] = std::array::from_fn(|c| g_times(f[c], f[3 + c], f[6 + c]));
            for r in 0..4 {
                let row = g_times(cols[0][r], cols[1][r], cols[2][r]);
                for (c, &v) in row.iter().enumerate() {
                    u[(r * 4 + c) * plane + co * g.cin + ci] = v;
                }
            }
        }
    }
}

/// Tile rows and columns of the output.
fn tiles(g: &ConvGeom) -> (usize, usize) {
    (g.out_h().div_ceil(2), g.out_w().div_ceil(2))
}

/// Images per group: as many as keep `V` and `M` within `GROUP_BYTES`, at least one, and
/// no more than an even share of the batch per thread.
fn group_size<T>(g: &ConvGeom, n: usize) -> usize {
    let (th, tw) = tiles(g);
    let col_bytes = TILE_ELEMS * (g.cin + g.cout) * std::mem::size_of::<T>();
    let cols = GROUP_BYTES / col_bytes.max(1);
    let share = n.div_ceil(rayon::current_num_threads()).max(1);
    (cols / (th * tw)).clamp(1, share)
}

/// `y (=|+=) conv(x, w)` for `n` images, `u` the transformed filters; `applies(g)`.
pub(super) fn forward<T: Real>(
    g: &ConvGeom,
    n: usize,
    x: &[T],
    u: &[T],
    y: &mut [T],
    accumulate: bool,
) {
    assert!(applies(g), "winograd: not a 3x3 stride-1 conv: {g:?}");
    assert_eq!(u.len(), filters_len(g), "winograd: length of u");
    let (th, tw) = tiles(g);
    let group = group_size::<T>(g, n);
    let (plane_len, rows_len) = (2 * (2 * th + 2) * (tw + 1), 8 * (tw + 1));
    for_each_image(y, group * g.out_len(), |i, yg, par| {
        let images = yg.len() / g.out_len();
        let xg = &x[i * group * g.in_len()..][..images * g.in_len()];
        let cols = images * th * tw;
        let (v_len, m_len) = (TILE_ELEMS * g.cin * cols, TILE_ELEMS * g.cout * cols);
        with_scratch(v_len + m_len + plane_len + rows_len, |buf| {
            let (v, rest) = buf.split_at_mut(v_len);
            let (m, rest) = rest.split_at_mut(m_len);
            let (plane, rows) = rest.split_at_mut(plane_len);
            for (b, xi) in xg.chunks_exact(g.in_len()).enumerate() {
                transform_image(g, xi, b * th * tw, cols, v, plane, rows);
            }
            let (um, vm, mm) = (
                Mat::rows(g.cout, g.cin),
                Mat::rows(g.cin, cols),
                Mat::rows(g.cout, cols),
            );
            for e in 0..TILE_ELEMS {
                matmul(
                    &mut m[e * g.cout * cols..][..g.cout * cols],
                    mm,
                    false,
                    &u[e * g.cout * g.cin..][..g.cout * g.cin],
                    um,
                    &v[e * g.cin * cols..][..g.cin * cols],
                    vm,
                    par,
                );
            }
            for (b, yi) in yg.chunks_exact_mut(g.out_len()).enumerate() {
                inverse_image(g, m, b * th * tw, cols, yi, rows, accumulate);
            }
        });
    });
}

/// Writes `B^T d B` of every tile of image `x` (`[cin][h][w]`) into `v` (`[16][cin][cols]`)
/// from column `col0` on. `plane` holds one zero-padded channel split into even and odd
/// columns (`[2][2 th + 2][tw + 1]`), so that tiles read contiguous runs; `rows` holds the
/// row-transformed tile rows (`[4][2][tw + 1]`).
fn transform_image<T: Real>(
    g: &ConvGeom,
    x: &[T],
    col0: usize,
    cols: usize,
    v: &mut [T],
    plane: &mut [T],
    rows: &mut [T],
) {
    let (th, tw) = tiles(g);
    let (ph, pw) = (2 * th + 2, tw + 1);
    let (even, odd) = plane.split_at_mut(ph * pw);
    for (ci, src) in x.chunks_exact(g.h * g.w).enumerate() {
        // Padded pixel (r, c) is x[r - pad][c - pad]; `c = 2t` goes to even[r][t], `2t + 1`
        // to odd[r][t].
        for r in 0..ph {
            let (er, or) = (&mut even[r * pw..][..pw], &mut odd[r * pw..][..pw]);
            let Some(line) = r
                .checked_sub(g.pad)
                .filter(|&iy| iy < g.h)
                .map(|iy| &src[iy * g.w..][..g.w])
            else {
                er.fill(T::zero());
                or.fill(T::zero());
                continue;
            };
            let at = |c: usize| {
                c.checked_sub(g.pad)
                    .and_then(|ix| line.get(ix).copied())
                    .unwrap_or(T::zero())
            };
            for t in 0..pw {
                er[t] = at(2 * t);
                or[t] = at(2 * t + 1);
            }
        }
        for ty in 0..th {
            // B^T on the tile rows 2ty..2ty+4, both column parities: rows[i][parity].
            for (p, half) in [&*even, &*odd].into_iter().enumerate() {
                let r = |k: usize| &half[(2 * ty + k) * pw..][..pw];
                let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
                let at = |i: usize| (i * 2 + p) * pw;
                fill(&mut rows[at(0)..][..pw], |c| r0[c] - r2[c]);
                fill(&mut rows[at(1)..][..pw], |c| r1[c] + r2[c]);
                fill(&mut rows[at(2)..][..pw], |c| r2[c] - r1[c]);
                fill(&mut rows[at(3)..][..pw], |c| r1[c] - r3[c]);
            }
            // B on the columns: tile tx's columns are e[tx], o[tx], e[tx + 1], o[tx + 1].
            let base = col0 + ty * tw;
            for i in 0..4 {
                let e = &rows[(i * 2) * pw..][..pw];
                let o = &rows[(i * 2 + 1) * pw..][..pw];
                let (e0, e1, o0, o1) = (&e[..tw], &e[1..], &o[..tw], &o[1..]);
                let at = |j: usize| ((i * 4 + j) * g.cin + ci) * cols + base;
                fill(&mut v[at(0)..][..tw], |t| e0[t] - e1[t]);
                fill(&mut v[at(1)..][..tw], |t| o0[t] + e1[t]);
                fill(&mut v[at(2)..][..tw], |t| e1[t] - o0[t]);
                fill(&mut v[at(3)..][..tw], |t| o0[t] - o1[t]);
            }
        }
    }
}

/// `out[i] = f(i)` for every index (inlined into a vectorisable loop).
#[inline(always)]
fn fill<T>(out: &mut [T], f: impl Fn(usize) -> T) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = f(i);
    }
}

/// `y (=|+=) A^T m A` for the tiles of one image (`y` `[cout][oh][ow]`), read from `m`
/// (`[16][cout][cols]`) at column `col0` on, clipped at odd edges. `rows` is scratch for
/// the row-transformed tiles (`[2][4][tw]`).
fn inverse_image<T: Real>(
    g: &ConvGeom,
    m: &[T],
    col0: usize,
    cols: usize,
    y: &mut [T],
    rows: &mut [T],
    accumulate: bool,
) {
    let (th, tw) = tiles(g);
    let (oh, ow) = (g.out_h(), g.out_w());
    let pairs = ow / 2;
    for (co, out) in y.chunks_exact_mut(oh * ow).enumerate() {
        for ty in 0..th {
            let base = col0 + ty * tw;
            let src = |e: usize| &m[(e * g.cout + co) * cols + base..][..tw];
            // A^T on the rows of the 4x4 tile: s[a][j] for output row a, tile column j.
            for j in 0..4 {
                let (m0, m1, m2, m3) = (src(j), src(4 + j), src(8 + j), src(12 + j));
                fill(&mut rows[j * tw..][..tw], |t| m0[t] + m1[t] + m2[t]);
                fill(&mut rows[(4 + j) * tw..][..tw], |t| m1[t] - m2[t] - m3[t]);
            }
            for a in 0..2 {
                let oy = 2 * ty + a;
                if oy >= oh {
                    break;
                }
                let s = |j: usize| &rows[(a * 4 + j) * tw..][..tw];
                let (s0, s1, s2, s3) = (s(0), s(1), s(2), s(3));
                // A on the columns: outputs 2tx and 2tx + 1.
                let left = |t: usize| s0[t] + s1[t] + s2[t];
                let right = |t: usize| s1[t] - s2[t] - s3[t];
                let line = &mut out[oy * ow..][..ow];
                let (full, rest) = line.split_at_mut(2 * pairs);
                for (t, o) in full.chunks_exact_mut(2).enumerate() {
                    if accumulate {
                        o[0] += left(t);
                        o[1] += right(t);
                    } else {
                        o[0] = left(t);
                        o[1] = right(t);
                    }
                }
                if let Some(o) = rest.first_mut() {
                    *o = if accumulate {
                        *o + left(pairs)
                    } else {
                        left(pairs)
                    };
                }
            }
        }
    }
}
