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
//! Tiles past an odd edge are computed on zero padding and clipped. In f32 on AVX-512 the
//! forward takes `winograd_fused.rs` where the shape allows (pad 1, whole blocks of 16
//! tiles, channels in multiples of 16: every NB-201 3x3 conv): the same arithmetic run
//! one block of 16 tiles at a time, so that `V` and `M` never leave L1. Images 16 or 32
//! pixels wide go one step further in f32, to F(4x4, 3x3) (`winograd4_fused.rs`, chosen
//! in `conv.rs`): 2.25 multiplies per output instead of 4, for a few times the rounding.
//!
//! The weight gradient runs the same algebra backwards: with `D = A dY A^T` of each 2x2
//! output-gradient tile (4x4) and `V` of the matching input tile, `dU_e[co][ci] = sum over
//! tiles of D_e[co][t] V_e[ci][t]` (16 GEMMs of depth "tiles") and `dw = G^T dU G`.
//!
//! Rounding: the transforms only add (and halve, exactly), so the error stays within a
//! small multiple of im2col's (tests/cpu_ops.rs bounds it against an f64 direct conv).

#[cfg(target_arch = "x86_64")]
use rayon::prelude::*;

use super::elementwise::add_assign;
use super::gemm::{for_each_image, matmul, Mat, Parallelism};
use super::scratch::{with_call_scratch, with_scratch};
use super::winograd_fused::BT_ROWS;
#[cfg(target_arch = "x86_64")]
use super::{as_f32, as_f32_mut};
use crate::backend::{ConvGeom, Real};

/// Elements of a transformed 4x4 tile.
const TILE_ELEMS: usize = 16;

/// Channel counts (in and out) from which Winograd beats im2col + GEMM: measured faster at
/// 16, 32 and 64 channels, a tie or slower at 8 and slower at 4 (docs/PERF.md), where the
/// add-only transforms cost as much as the multiplies they save.
const MIN_CHANNELS: usize = 16;

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

/// Images whose `V` and `M` (or `D`) fit in `GROUP_BYTES`, at least one.
fn images_in_group<T>(g: &ConvGeom) -> usize {
    let (th, tw) = tiles(g);
    let col_bytes = TILE_ELEMS * (g.cin + g.cout) * std::mem::size_of::<T>();
    (GROUP_BYTES / col_bytes.max(1) / (th * tw)).max(1)
}

/// Images per group of the forward: [`images_in_group`], and no more than an even share
/// of the batch per thread.
fn group_size<T>(g: &ConvGeom, n: usize) -> usize {
    let share = n.div_ceil(rayon::current_num_threads()).max(1);
    images_in_group::<T>(g).min(share)
}

/// Scratch elements the transforms need: `q` and a padded row for the input, `s` and
/// `z` for the inverse (see [`transform_image`], [`inverse_image`]).
fn transform_scratch(g: &ConvGeom) -> usize {
    let (th, tw) = tiles(g);
    let input = 8 * (th + 1) * tw + 2 * tw + 2;
    let inverse = 12 * th * tw;
    input.max(inverse)
}

/// `y (=|+=) conv(x, w)` for `n` images, `u` the transformed filters; `applies(g)`. f32
/// on AVX-512 takes the fused kernel of `winograd_fused.rs` where it applies (the same
/// arithmetic in the same order, one block of tiles at a time), else [`forward_grouped`].
pub(super) fn forward<T: Real>(
    g: &ConvGeom,
    n: usize,
    x: &[T],
    u: &[T],
    y: &mut [T],
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(x), Some(u), Some(y)) = (as_f32(x), as_f32(u), as_f32_mut(y)) {
        if super::winograd_fused::applies(g) {
            super::winograd_fused::forward(g, n, x, u, y, accumulate);
            return;
        }
    }
    forward_grouped(g, n, x, u, y, accumulate);
}

/// [`forward`] for any `Real` and geometry: groups of images sized for L2, each
/// transformed whole, multiplied by 16 GEMMs and transformed back.
pub(super) fn forward_grouped<T: Real>(
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
    let work_len = transform_scratch(g);
    for_each_image(y, group * g.out_len(), |i, yg, par| {
        let images = yg.len() / g.out_len();
        let xg = &x[i * group * g.in_len()..][..images * g.in_len()];
        let cols = images * th * tw;
        let (v_len, m_len) = (TILE_ELEMS * g.cin * cols, TILE_ELEMS * g.cout * cols);
        with_scratch(v_len + m_len + work_len, |buf| {
            let (v, rest) = buf.split_at_mut(v_len);
            let (m, work) = rest.split_at_mut(m_len);
            for (b, xi) in xg.chunks_exact(g.in_len()).enumerate() {
                transform_image(g, xi, b * th * tw, cols, v, work);
            }
            // Multiplied as M^T = V^T U^T, the tiles as the GEMM's rows (measured no slower
            // than U V; the `gemm` crate's kernels run along rows).
            let (um, vm, mm) = (
                Mat::rows(g.cout, g.cin).t(),
                Mat::rows(g.cin, cols).t(),
                Mat::rows(g.cout, cols).t(),
            );
            for e in 0..TILE_ELEMS {
                matmul(
                    &mut m[e * g.cout * cols..][..g.cout * cols],
                    mm,
                    false,
                    &v[e * g.cin * cols..][..g.cin * cols],
                    vm,
                    &u[e * g.cout * g.cin..][..g.cout * g.cin],
                    um,
                    par,
                );
            }
            for (b, yi) in yg.chunks_exact_mut(g.out_len()).enumerate() {
                inverse_image(g, m, b * th * tw, cols, yi, work, accumulate);
            }
        });
    });
}

/// Runs `$body` compiled for AVX-512 where the CPU has it (the crate is built for baseline
/// x86-64, so plain code would get 128-bit vectors), else as is.
macro_rules! wide_simd {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            unsafe fn wide<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the feature was detected at run time.
                return unsafe {
                    wide(
                        #[inline(always)]
                        || $body,
                    )
                };
            }
        }
        $body
    }};
}

/// `out = (a0 ±i b0) ±j (a1 ±i b1)`, signs `+` where `I` / `J`.
#[inline(always)]
fn combine<T: Real, const I: bool, const J: bool>(
    out: &mut [T],
    a0: &[T],
    b0: &[T],
    a1: &[T],
    b1: &[T],
) {
    let pm = |x: T, y: T, plus: bool| if plus { x + y } else { x - y };
    let n = out.len();
    let (a0, b0, a1, b1) = (&a0[..n], &b0[..n], &a1[..n], &b1[..n]);
    for t in 0..n {
        out[t] = pm(pm(a0[t], b0[t], I), pm(a1[t], b1[t], I), J);
    }
}

/// Writes `B^T d B` of every tile of image `x` (`[cin][h][w]`) into `v` (`[16][cin][cols]`)
/// at columns `col0..col0 + th tw`.
///
/// Per channel, the plane is split by [`split_tile_pixels`], so that each of the 16
/// outputs is one loop over all tiles.
fn transform_image<T: Real>(
    g: &ConvGeom,
    x: &[T],
    col0: usize,
    cols: usize,
    v: &mut [T],
    work: &mut [T],
) {
    wide_simd!(transform_image_body(g, x, col0, cols, v, work))
}

#[inline(always)]
fn transform_image_body<T: Real>(
    g: &ConvGeom,
    x: &[T],
    col0: usize,
    cols: usize,
    v: &mut [T],
    work: &mut [T],
) {
    let (th, tw) = tiles(g);
    let (tiles, q_plane) = (th * tw, (th + 1) * tw);
    let (q, padded_row) = work.split_at_mut(8 * q_plane);
    for (ci, src) in x.chunks_exact(g.h * g.w).enumerate() {
        split_tile_pixels(g, src, q, padded_row);
        let d = |k: usize, l: usize| &q[((k % 2) * 4 + l) * q_plane + (k / 2) * tw..][..tiles];
        for (i, &(ai, bi, pi)) in BT_ROWS.iter().enumerate() {
            for (j, &(aj, bj, pj)) in BT_ROWS.iter().enumerate() {
                let out = &mut v[((i * 4 + j) * g.cin + ci) * cols + col0..][..tiles];
                let args = (d(ai, aj), d(bi, aj), d(ai, bj), d(bi, bj));
                match (pi, pj) {
                    (false, false) => {
                        combine::<T, false, false>(out, args.0, args.1, args.2, args.3)
                    }
                    (false, true) => combine::<T, false, true>(out, args.0, args.1, args.2, args.3),
                    (true, false) => combine::<T, true, false>(out, args.0, args.1, args.2, args.3),
                    (true, true) => combine::<T, true, true>(out, args.0, args.1, args.2, args.3),
                }
            }
        }
    }
}

/// Splits one zero-padded input plane `src` (`[h][w]`, never formed whole: row by row)
/// into `q[rp][l][Y][tx] = padded[2Y + rp][2tx + l]` (`rp` in 0..2, `l` in 0..4, `Y` in
/// 0..=th; `q` holds `8 (th + 1) tw`), so that pixel `(k, l)` of every tile,
/// `padded[2ty + k][2tx + l]`, is the contiguous run `q[k % 2][l]` from row `k / 2` on.
/// `padded_row` holds `2 tw + 2`.
#[inline(always)]
fn split_tile_pixels<T: Real>(g: &ConvGeom, src: &[T], q: &mut [T], padded_row: &mut [T]) {
    let (th, tw) = tiles(g);
    let q_plane = (th + 1) * tw;
    let (ph, pw) = (2 * th + 2, 2 * tw + 2);
    let padded_row = &mut padded_row[..pw];
    // The common case, pad 1 and an even width, reads each row's pixels straight into q.
    let direct = g.pad == 1 && g.w == 2 * tw;
    for r in 0..ph {
        // Rows q[r % 2][l][r / 2], l = 0..4, are q_plane apart.
        let first = ((r % 2) * 4 * (th + 1) + r / 2) * tw;
        let block = &mut q[first..][..3 * q_plane + tw];
        let (q0, rest) = block.split_at_mut(q_plane);
        let (q1, rest) = rest.split_at_mut(q_plane);
        let (q2, q3) = rest.split_at_mut(q_plane);
        let (q0, q1, q2, q3) = (&mut q0[..tw], &mut q1[..tw], &mut q2[..tw], &mut q3[..tw]);
        let Some(iy) = r.checked_sub(g.pad).filter(|&iy| iy < g.h) else {
            for qi in [q0, q1, q2, q3] {
                qi.fill(T::zero());
            }
            continue;
        };
        let line = &src[iy * g.w..][..g.w];
        if direct {
            // padded[2t + l] = line[2t + l - 1]: l = 1, 2 are the even and odd pixels,
            // l = 0 and 3 the same shifted by one tile, a zero at the edge.
            deinterleave(line, q1, q2);
            q0[0] = T::zero();
            q0[1..].copy_from_slice(&q2[..tw - 1]);
            q3[..tw - 1].copy_from_slice(&q1[1..]);
            q3[tw - 1] = T::zero();
        } else {
            // Zeros around the row (pw >= w + pad).
            padded_row[..g.pad].fill(T::zero());
            padded_row[g.pad..g.pad + g.w].copy_from_slice(line);
            padded_row[g.pad + g.w..].fill(T::zero());
            deinterleave(&padded_row[..2 * tw], q0, q1);
            deinterleave(&padded_row[2..], q2, q3);
        }
    }
}

/// `even[t] = src[2t]`, `odd[t] = src[2t + 1]` for `t < even.len()`.
#[inline(always)]
fn deinterleave<T: Real>(src: &[T], even: &mut [T], odd: &mut [T]) {
    // Pairs by `chunks_exact`, which LLVM turns into vector shuffles (indexing `src[2t +
    // 1]` kept a bounds check per pixel and stayed scalar).
    for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(src.chunks_exact(2)) {
        *e = pair[0];
        *o = pair[1];
    }
}

/// `dws[s] += sum_i dw_i` (`[cout][cin][3][3]`) for each output gradient `dys[s]` of the
/// same `n` images `x`, the weight gradient by Winograd (module docs). Images go in fixed
/// chunks of `chunk`, each chunk's `dU` summed in image order and the chunks in chunk
/// order, and the groups inside a chunk do not depend on the thread count: the same
/// additions for any number of threads or gradients. The fused f32 kernel transforms `x`
/// once for all the gradients.
pub(super) fn backward_weight<T: Real>(
    g: &ConvGeom,
    n: usize,
    x: &[T],
    dys: &[&[T]],
    chunk: usize,
    dws: &mut [&mut [T]],
) {
    assert!(applies(g), "winograd: not a 3x3 stride-1 conv: {g:?}");
    assert_eq!(dys.len(), dws.len(), "winograd: gradients and outputs");
    let (th, tw) = tiles(g);
    let per_image = th * tw;
    let group = images_in_group::<T>(g).min(chunk);
    let work_len = transform_scratch(g);
    let (cin, cout) = (g.cin, g.cout);
    let du_len = filters_len(g);
    // One partial dU per chunk and gradient, in call scratch (fresh allocations of this
    // size cost page faults on every call).
    let part_len = dys.len() * du_len;
    with_call_scratch(n.div_ceil(chunk) * part_len, |partials: &mut [T]| {
        partials.fill(T::zero());
        partials
            .par_chunks_mut(part_len)
            .enumerate()
            .for_each(|(c, du)| {
                let images = c * chunk..((c + 1) * chunk).min(n);
                #[cfg(target_arch = "x86_64")]
                if let (Some(xc), Some(dyc), Some(duc)) = (
                    as_f32(&x[images.start * g.in_len()..images.end * g.in_len()]),
                    dys.iter()
                        .map(|dy| as_f32(&dy[images.start * g.out_len()..images.end * g.out_len()]))
                        .collect::<Option<Vec<&[f32]>>>(),
                    as_f32_mut(du),
                ) {
                    if super::winograd_fused::applies_weight_grad(g) {
                        super::winograd_fused::accumulate_weight_grad(g, xc, &dyc, duc);
                        return;
                    }
                }
                for (dy, du) in dys.iter().zip(du.chunks_exact_mut(du_len)) {
                    for first in images.clone().step_by(group) {
                        let count = group.min(images.end - first);
                        let cols = count * per_image;
                        let (v_len, d_len) = (TILE_ELEMS * cin * cols, TILE_ELEMS * cout * cols);
                        with_scratch(v_len + d_len + work_len, |buf| {
                            let (v, rest) = buf.split_at_mut(v_len);
                            let (d, work) = rest.split_at_mut(d_len);
                            for b in 0..count {
                                let i = first + b;
                                let (xi, dyi) = (
                                    &x[i * g.in_len()..][..g.in_len()],
                                    &dy[i * g.out_len()..][..g.out_len()],
                                );
                                transform_image(g, xi, b * per_image, cols, v, work);
                                transform_gradient(g, dyi, b * per_image, cols, d, work);
                            }
                            for e in 0..TILE_ELEMS {
                                matmul(
                                    &mut du[e * cout * cin..][..cout * cin],
                                    Mat::rows(cout, cin),
                                    true,
                                    &d[e * cout * cols..][..cout * cols],
                                    Mat::rows(cout, cols),
                                    &v[e * cin * cols..][..cin * cols],
                                    Mat::rows(cin, cols).t(),
                                    Parallelism::None,
                                );
                            }
                        });
                    }
                }
            });
        with_scratch(du_len, |du: &mut [T]| {
            for (s, dw) in dws.iter_mut().enumerate() {
                du.fill(T::zero());
                for p in partials.chunks_exact(part_len) {
                    add_assign(du, &p[s * du_len..][..du_len]);
                }
                untransform_weight_grad(g, du, dw);
            }
        });
    });
}

/// `dw += G^T dU G` for each filter.
fn untransform_weight_grad<T: Real>(g: &ConvGeom, du: &[T], dw: &mut [T]) {
    let (cin, cout) = (g.cin, g.cout);
    let half = T::from_f64_rounded(0.5);
    let gt_times = |d0: T, d1: T, d2: T, d3: T| {
        let (sum, diff) = ((d1 + d2) * half, (d1 - d2) * half);
        [d0 + sum, diff, sum + d3]
    };
    let plane = cout * cin;
    for co in 0..cout {
        for ci in 0..cin {
            let at = |e: usize| du[e * plane + co * cin + ci];
            // G^T on the columns of each row of dU (4 rows of 3), then on those columns.
            let rows: [[T; 3]; 4] = std::array::from_fn(|i| {
                gt_times(at(i * 4), at(i * 4 + 1), at(i * 4 + 2), at(i * 4 + 3))
            });
            let f = &mut dw[(co * cin + ci) * 9..][..9];
            for c in 0..3 {
                let col = gt_times(rows[0][c], rows[1][c], rows[2][c], rows[3][c]);
                for r in 0..3 {
                    f[r * 3 + c] += col[r];
                }
            }
        }
    }
}

/// Writes `A dY A^T` of every 2x2 tile of the output gradient `dy` (`[cout][oh][ow]`, zero
/// past odd edges) into `d` (`[16][cout][cols]`) at columns `col0..col0 + th tw`: the
/// tiles' four pixels gathered into planes `y[a][b]`, `A` applied down (`r[i][b]`), then
/// across (element `(i, j)`), each step one loop over all tiles.
fn transform_gradient<T: Real>(
    g: &ConvGeom,
    dy: &[T],
    col0: usize,
    cols: usize,
    d: &mut [T],
    work: &mut [T],
) {
    wide_simd!(transform_gradient_body(g, dy, col0, cols, d, work))
}

/// `out = x`, `x + y`, `x - y` or `-y` (`OP` 0..4): the rows of `A`.
#[inline(always)]
fn a_combine<T: Real, const OP: u8>(out: &mut [T], x: &[T], y: &[T]) {
    let n = out.len();
    let (x, y) = (&x[..n], &y[..n]);
    for t in 0..n {
        out[t] = match OP {
            0 => x[t],
            1 => x[t] + y[t],
            2 => x[t] - y[t],
            _ => -y[t],
        };
    }
}

/// `a_combine` with the operation picked at run time (each arm compiled on its own).
#[inline(always)]
fn a_row_op<T: Real>(op: usize, out: &mut [T], x: &[T], y: &[T]) {
    match op {
        0 => a_combine::<T, 0>(out, x, y),
        1 => a_combine::<T, 1>(out, x, y),
        2 => a_combine::<T, 2>(out, x, y),
        _ => a_combine::<T, 3>(out, x, y),
    }
}

#[inline(always)]
fn transform_gradient_body<T: Real>(
    g: &ConvGeom,
    dy: &[T],
    col0: usize,
    cols: usize,
    d: &mut [T],
    work: &mut [T],
) {
    let (th, tw) = tiles(g);
    let tiles = th * tw;
    let (oh, ow) = (g.out_h(), g.out_w());
    let pairs = ow / 2;
    let (y, r) = work[..12 * tiles].split_at_mut(4 * tiles);
    for (co, plane) in dy.chunks_exact(oh * ow).enumerate() {
        // y[a][b][ty tw + tx] = dy[2ty + a][2tx + b].
        for a in 0..2 {
            let (even, odd) = y[2 * a * tiles..][..2 * tiles].split_at_mut(tiles);
            for ty in 0..th {
                let (e, o) = (&mut even[ty * tw..][..tw], &mut odd[ty * tw..][..tw]);
                let oy = 2 * ty + a;
                if oy >= oh {
                    e.fill(T::zero());
                    o.fill(T::zero());
                    continue;
                }
                let line = &plane[oy * ow..][..ow];
                deinterleave(&line[..2 * pairs], &mut e[..pairs], &mut o[..pairs]);
                if ow % 2 == 1 {
                    e[pairs] = line[ow - 1];
                    o[pairs] = T::zero();
                }
            }
        }
        // r[i][b] = (A y)[i][b] from y[0][b] and y[1][b].
        for i in 0..4 {
            for b in 0..2 {
                let (y0, y1) = (&y[b * tiles..][..tiles], &y[(2 + b) * tiles..][..tiles]);
                a_row_op(i, &mut r[(i * 2 + b) * tiles..][..tiles], y0, y1);
            }
        }
        // d[(i, j)] = (r A^T)[i][j] from r[i][0] and r[i][1].
        for i in 0..4 {
            let (r0, r1) = (
                &r[(i * 2) * tiles..][..tiles],
                &r[(i * 2 + 1) * tiles..][..tiles],
            );
            for j in 0..4 {
                let out = &mut d[((i * 4 + j) * g.cout + co) * cols + col0..][..tiles];
                a_row_op(j, out, r0, r1);
            }
        }
    }
}

/// `y (=|+=) A^T m A` for the tiles of one image (`y` `[cout][oh][ow]`), read from `m`
/// (`[16][cout][cols]`) at columns `col0..col0 + th tw`, clipped at odd edges. Each step
/// is a loop over all tiles: `A^T` on tile rows into `s[a][j]`, `A` on its columns into
/// `z[a][b]` (output pixel `(2ty + a, 2tx + b)`), then the interleaving store.
fn inverse_image<T: Real>(
    g: &ConvGeom,
    m: &[T],
    col0: usize,
    cols: usize,
    y: &mut [T],
    work: &mut [T],
    accumulate: bool,
) {
    wide_simd!(inverse_image_body(g, m, col0, cols, y, work, accumulate))
}

/// `out = x + y + z` (`A^T` row 0) or `x - y - z` (row 1, `x, y, z` = entries 1, 2, 3).
#[inline(always)]
fn a_row<T: Real, const FIRST: bool>(out: &mut [T], x: &[T], y: &[T], z: &[T]) {
    let n = out.len();
    let (x, y, z) = (&x[..n], &y[..n], &z[..n]);
    for t in 0..n {
        out[t] = if FIRST {
            x[t] + y[t] + z[t]
        } else {
            x[t] - y[t] - z[t]
        };
    }
}

#[inline(always)]
fn inverse_image_body<T: Real>(
    g: &ConvGeom,
    m: &[T],
    col0: usize,
    cols: usize,
    y: &mut [T],
    work: &mut [T],
    accumulate: bool,
) {
    let (th, tw) = tiles(g);
    let tiles = th * tw;
    let (oh, ow) = (g.out_h(), g.out_w());
    let pairs = ow / 2;
    let (s, z) = work[..12 * tiles].split_at_mut(8 * tiles);
    for (co, out) in y.chunks_exact_mut(oh * ow).enumerate() {
        let src = |e: usize| &m[(e * g.cout + co) * cols + col0..][..tiles];
        for j in 0..4 {
            let (m0, m1, m2, m3) = (src(j), src(4 + j), src(8 + j), src(12 + j));
            a_row::<T, true>(&mut s[j * tiles..][..tiles], m0, m1, m2);
            a_row::<T, false>(&mut s[(4 + j) * tiles..][..tiles], m1, m2, m3);
        }
        for a in 0..2 {
            let sa = |j: usize| &s[(a * 4 + j) * tiles..][..tiles];
            let (s0, s1, s2, s3) = (sa(0), sa(1), sa(2), sa(3));
            a_row::<T, true>(&mut z[(2 * a) * tiles..][..tiles], s0, s1, s2);
            a_row::<T, false>(&mut z[(2 * a + 1) * tiles..][..tiles], s1, s2, s3);
        }
        for oy in 0..oh {
            let (ty, a) = (oy / 2, oy % 2);
            let left = &z[(2 * a) * tiles + ty * tw..][..tw];
            let right = &z[(2 * a + 1) * tiles + ty * tw..][..tw];
            let line = &mut out[oy * ow..][..ow];
            let (full, rest) = line.split_at_mut(2 * pairs);
            let lr = left.iter().zip(right);
            if accumulate {
                for (o, (&l, &r)) in full.chunks_exact_mut(2).zip(lr) {
                    o[0] += l;
                    o[1] += r;
                }
            } else {
                for (o, (&l, &r)) in full.chunks_exact_mut(2).zip(lr) {
                    o[0] = l;
                    o[1] = r;
                }
            }
            if let Some(o) = rest.first_mut() {
                *o = if accumulate {
                    *o + left[pairs]
                } else {
                    left[pairs]
                };
            }
        }
    }
}
