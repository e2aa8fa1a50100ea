//! Winograd F(4x4, 3x3) fused per block of 16 tiles, f32 on AVX-512, for the 3x3 convs
//! whose images are 16 or 32 pixels wide (NB-201's first two stages; the 8x8 stage has
//! four 4x4 tiles per image and keeps F(2x2, 3x3), `winograd_fused.rs`).
//!
//! An output tile of 4x4 is `A^T [(G g G^T) .* (B^T d B)] A` for the 6x6 input tile `d` at
//! `(4ty - 1, 4tx - 1)` (Lavin & Gray 2016, points 0, +-1, +-2):
//!
//! ```text
//! B^T = | 4  0 -5  0  1  0 |   G = |  1/4    0     0  |   A^T = | 1  1  1  1  1  0 |
//!       | 0 -4 -4  1  1  0 |       | -1/6  -1/6  -1/6 |         | 0  1 -1  2 -2  0 |
//!       | 0  4 -4 -1  1  0 |       | -1/6   1/6  -1/6 |         | 0  1  1  4  4  0 |
//!       | 0 -2 -1  2  1  0 |       | 1/24  1/12   1/6 |         | 0  1 -1  8 -8  1 |
//!       | 0  2 -1 -2  1  0 |       | 1/24 -1/12   1/6 |
//!       | 0  4  0 -5  0  1 |       |   0     0     1  |
//! ```
//!
//! 36 products per 16 outputs and channel pair against F(2x2)'s 16 per 4: the GEMMs do
//! 2.25 multiplies per output instead of 4. The price is rounding: the transforms scale
//! by up to 8 and by 1/24, so the error is a few times F(2x2)'s (tests/cpu_ops.rs bounds
//! both against an f64 direct convolution). The filters are transformed in f64.
//!
//! Per image: every padded input row split into its 6 stride-4 runs (`split_tiles`), then
//! per block of 16 tiles the input transform of every channel (`vb[e][ci]`), the 36
//! products `M_e = U_e V_e` (`mb[e][co]`) and the inverse, written straight into the
//! output rows. The weight gradient takes `D = A dY A^T` of each 4x4 output-gradient tile
//! and sums `D_e V_e^T` per block (`winograd_fused.rs` has the product loops both use).

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::scratch::{with_call_scratch, with_scratch};
use super::winograd_fused::{
    accumulate_weight_grad_with, lanes, products, store, transpose_block, weight_grad_products,
    ImageWeightGrad, WeightGradKernels,
};
use crate::backend::ConvGeom;

/// Tiles per vector.
const LANES: usize = 16;
/// Elements of a transformed 6x6 tile.
const ELEMS: usize = 36;

/// Whether this kernel computes the geometry on this CPU: 3x3, stride 1, pad 1, rows of
/// 16 or 32 pixels, whole blocks of 16 tiles, channel counts in whole vectors.
pub(super) fn applies(g: &ConvGeom) -> bool {
    g.k == 3
        && g.stride == 1
        && g.pad == 1
        && matches!(g.w, 16 | 32)
        && g.h.is_multiple_of(4)
        && ((g.h / 4) * (g.w / 4)).is_multiple_of(LANES)
        && g.cin.is_multiple_of(LANES)
        && g.cout.is_multiple_of(LANES)
        && std::arch::is_x86_feature_detected!("avx512f")
}

/// `ys[s] (=|+=) conv(xs[s], w)` for `n` images of each input, the filters given as
/// `filter(co, ci)` (3x3, row-major, in f64) and transformed once for all the inputs.
pub(super) fn forward(
    g: &ConvGeom,
    n: usize,
    xs: &[&[f32]],
    filter: impl Fn(usize, usize) -> [f64; 9],
    ys: &mut [&mut [f32]],
    accumulate: bool,
) {
    assert!(applies(g), "winograd F(4x4): unsupported geometry {g:?}");
    assert_eq!(xs.len(), ys.len(), "winograd F(4x4): inputs and outputs");
    let (cin, cout) = (g.cin, g.cout);
    let q_len = q_len(g);
    let work = q_len + ELEMS * (cin + cout) * LANES;
    with_call_scratch(ELEMS * cin * cout, |ut: &mut [f32]| {
        transform_filters(g, filter, ut);
        let ut = &*ut;
        ys.par_iter_mut().zip(xs).for_each(|(y, x)| {
            y[..n * g.out_len()]
                .par_chunks_mut(g.out_len())
                .zip(x[..n * g.in_len()].par_chunks(g.in_len()))
                .for_each(|(yi, xi)| {
                    with_scratch(work, |buf: &mut [f32]| {
                        let (q, rest) = buf.split_at_mut(q_len);
                        let (vb, mb) = rest.split_at_mut(ELEMS * cin * LANES);
                        // SAFETY: `applies` checked AVX-512F; the lengths are the ones
                        // `split_tiles` and `image` assert.
                        unsafe {
                            split_tiles(g, xi, q);
                            image(g, q, ut, vb, mb, yi, accumulate)
                        };
                    })
                })
        });
    });
}

/// `ut[e][ci][co]` = element `e` of `G f G^T` for each filter `f = filter(co, ci)`,
/// computed in f64 and rounded once.
fn transform_filters(g: &ConvGeom, filter: impl Fn(usize, usize) -> [f64; 9], ut: &mut [f32]) {
    assert_eq!(
        ut.len(),
        ELEMS * g.cin * g.cout,
        "winograd F(4x4): length of u"
    );
    // G applied to the three values of a filter column (or row): six values.
    let g_times = |a: f64, b: f64, c: f64| {
        [
            a / 4.0,
            -(a + b + c) / 6.0,
            -(a - b + c) / 6.0,
            a / 24.0 + b / 12.0 + c / 6.0,
            a / 24.0 - b / 12.0 + c / 6.0,
            c,
        ]
    };
    for co in 0..g.cout {
        for ci in 0..g.cin {
            let f = filter(co, ci);
            let cols: [[f64; 6]; 3] = std::array::from_fn(|c| g_times(f[c], f[3 + c], f[6 + c]));
            for r in 0..6 {
                let row = g_times(cols[0][r], cols[1][r], cols[2][r]);
                for (c, &v) in row.iter().enumerate() {
                    ut[((r * 6 + c) * g.cin + ci) * g.cout + co] = v as f32;
                }
            }
        }
    }
}

/// Length of [`split_tiles`]' output: per input channel, 4 row phases x 6 column runs
/// x `th + 1` rows of `tw` tiles.
fn q_len(g: &ConvGeom) -> usize {
    g.cin * 24 * (g.h / 4 + 1) * (g.w / 4)
}

/// `q[ci][p][l][u][tx] = x[ci][4 u + p - 1][4 tx + l - 1]` (zero outside the image): each
/// padded row `r = 4 u + p` as its 6 stride-4 runs, so that sample `(k, l)` of the tiles
/// `t..t + 16` (tile `(ty, tx)` at `ty tw + tx`) is the 16 consecutive values at phase
/// `k % 4`, run `l`, offset `t + (k / 4) tw`. Each run is one permute of the input row
/// (two vectors at 32 pixels).
///
/// # Safety
/// AVX-512F must be present.
#[target_feature(enable = "avx512f")]
unsafe fn split_tiles(g: &ConvGeom, x: &[f32], q: &mut [f32]) {
    let (th, tw) = (g.h / 4, g.w / 4);
    let plane = (th + 1) * tw;
    assert!(g.pad == 1 && matches!(g.w, 16 | 32) && g.h == 4 * th);
    assert_eq!(x.len(), g.cin * g.h * g.w);
    assert!(q.len() >= q_len(g));
    // Run l, lane tx: column 4 tx + l - 1 of the row (the pad lanes masked off).
    let index: [__m512i; 6] = std::array::from_fn(|l| {
        let cols: [i32; LANES] = std::array::from_fn(|tx| ((4 * tx + l) as i32 - 1).max(0));
        _mm512_loadu_si512(cols.as_ptr().cast())
    });
    let row_mask = lanes(tw);
    let mask = |l: usize| match l {
        0 => row_mask & !1,
        5 => lanes(tw - 1),
        _ => row_mask,
    };
    let (x, q) = (x.as_ptr(), q.as_mut_ptr());
    for ci in 0..g.cin {
        let (src, qc) = (x.add(ci * g.h * g.w), q.add(ci * 24 * plane));
        // Padded rows 0..=4 th + 1: all a tile reads (4 (th - 1) + 5 is the last).
        for r in 0..4 * th + 2 {
            let (lo, hi) = match r.checked_sub(1).filter(|&iy| iy < g.h) {
                None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
                Some(iy) => {
                    let row = src.add(iy * g.w);
                    let hi = if g.w > LANES {
                        _mm512_loadu_ps(row.add(LANES))
                    } else {
                        _mm512_setzero_ps()
                    };
                    (_mm512_loadu_ps(row), hi)
                }
            };
            let at = qc.add((r % 4) * 6 * plane + (r / 4) * tw);
            for (l, idx) in index.iter().enumerate() {
                let v = _mm512_maskz_permutex2var_ps(mask(l), lo, *idx, hi);
                _mm512_mask_storeu_ps(at.add(l * plane), row_mask, v);
            }
        }
    }
}

/// `B^T` applied to six values.
#[inline]
#[target_feature(enable = "avx512f")]
fn bt(d: [__m512; 6]) -> [__m512; 6] {
    let (two, four, five) = (
        _mm512_set1_ps(2.0),
        _mm512_set1_ps(4.0),
        _mm512_set1_ps(5.0),
    );
    let a = _mm512_fnmadd_ps(four, d[2], d[4]); // d4 - 4 d2
    let b = _mm512_fnmadd_ps(four, d[1], d[3]); // d3 - 4 d1
    let c = _mm512_sub_ps(d[4], d[2]);
    let e = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
    [
        _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4])),
        _mm512_add_ps(a, b),
        _mm512_sub_ps(a, b),
        _mm512_add_ps(c, e),
        _mm512_sub_ps(c, e),
        _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5])),
    ]
}

/// `A^T` applied to six values.
#[inline]
#[target_feature(enable = "avx512f")]
fn at(m: [__m512; 6]) -> [__m512; 4] {
    let (s12, d12) = (_mm512_add_ps(m[1], m[2]), _mm512_sub_ps(m[1], m[2]));
    let (s34, d34) = (_mm512_add_ps(m[3], m[4]), _mm512_sub_ps(m[3], m[4]));
    [
        _mm512_add_ps(_mm512_add_ps(m[0], s12), s34),
        _mm512_fmadd_ps(_mm512_set1_ps(2.0), d34, d12),
        _mm512_fmadd_ps(_mm512_set1_ps(4.0), s34, s12),
        _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0), d34, d12), m[5]),
    ]
}

/// `B^T d B` of tiles `t..t + 16` of every input channel, from `q` into `vb[e][ci]`:
/// `B^T` down each column of the tile, then along each row of the result.
///
/// # Safety
/// AVX-512F must be present; `q` and `vb` hold what [`image`] asserts.
#[allow(clippy::needless_range_loop)] // the second pass reads across the first's outputs
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn input_transform(g: &ConvGeom, q: *const f32, t: usize, vb: *mut f32) {
    let (cin, tw) = (g.cin, g.w / 4);
    let plane = (g.h / 4 + 1) * tw;
    for ci in 0..cin {
        let qc = q.add(ci * 24 * plane + t);
        let d =
            |k: usize, l: usize| _mm512_loadu_ps(qc.add(((k % 4) * 6 + l) * plane + (k / 4) * tw));
        let mut r = [[_mm512_setzero_ps(); 6]; 6];
        for (l, rl) in r.iter_mut().enumerate() {
            *rl = bt(std::array::from_fn(|k| d(k, l)));
        }
        for i in 0..6 {
            let v = bt(std::array::from_fn(|l| r[l][i]));
            for (j, vj) in v.iter().enumerate() {
                _mm512_storeu_ps(vb.add(((i * 6 + j) * cin + ci) * LANES), *vj);
            }
        }
    }
}

/// One image: `q` its split rows ([`split_tiles`]), `y` its output.
///
/// # Safety
/// AVX-512F must be present; the buffers have the lengths [`forward`] gives them.
#[allow(clippy::needless_range_loop)] // the second pass reads across the first's outputs
#[target_feature(enable = "avx512f")]
unsafe fn image(
    g: &ConvGeom,
    q: &[f32],
    ut: &[f32],
    vb: &mut [f32],
    mb: &mut [f32],
    y: &mut [f32],
    accumulate: bool,
) {
    let (th, tw) = (g.h / 4, g.w / 4);
    let tiles = th * tw;
    let (cin, cout) = (g.cin, g.cout);
    assert!(q.len() >= q_len(g) && ut.len() >= ELEMS * cin * cout);
    assert!(vb.len() >= ELEMS * cin * LANES && mb.len() >= ELEMS * cout * LANES);
    assert_eq!(y.len(), cout * g.h * g.w);
    // Output vector o of an output row pair: lane j is column j % 4 of tile lane
    // s = rr tw + 4 h + j / 4, with (rr, h) = (o / halves, o % halves), halves = w / 16:
    // `from[o]` takes lane s of the first vector for even columns, of the second for odd,
    // applied to (Y[0], Y[1]) and to (Y[2], Y[3]), then blended by column.
    let halves = g.w / LANES;
    let from: [__m512i; 4] = std::array::from_fn(|o| {
        let (rr, h) = (o / halves, o % halves);
        let idx: [i32; LANES] = std::array::from_fn(|j| {
            let s = rr * tw + 4 * h + j / 4;
            (s + (j % 2) * LANES) as i32
        });
        _mm512_loadu_si512(idx.as_ptr().cast())
    });
    let (q, ut, vb, mb) = (q.as_ptr(), ut.as_ptr(), vb.as_mut_ptr(), mb.as_mut_ptr());
    for t in (0..tiles).step_by(LANES) {
        input_transform(g, q, t, vb);
        products(ELEMS, cin, cout, ut, vb, mb);
        // Inverse per output channel: A^T down the columns, then along the rows; each
        // output row's 4 vectors Y[a][b] interleaved into whole rows of pixels.
        let ty0 = t / tw;
        for co in 0..cout {
            let m = |e: usize| _mm512_loadu_ps(mb.add((e * cout + co) * LANES));
            let cols: [[__m512; 4]; 6] =
                std::array::from_fn(|j| at(std::array::from_fn(|i| m(i * 6 + j))));
            let plane = y.as_mut_ptr().add(co * g.h * g.w);
            for a in 0..4 {
                let yb = at(std::array::from_fn(|j| cols[j][a]));
                for (o, idx) in from.iter().enumerate() {
                    let (rr, h) = (o / halves, o % halves);
                    let x01 = _mm512_permutex2var_ps(yb[0], *idx, yb[1]);
                    let x23 = _mm512_permutex2var_ps(yb[2], *idx, yb[3]);
                    let v = _mm512_mask_blend_ps(0xcccc, x01, x23);
                    let row = plane.add((4 * (ty0 + rr) + a) * g.w + h * LANES);
                    store(row, v, 0xffff, accumulate);
                }
            }
        }
    }
}

/// Whether [`backward_weight`] takes this geometry: [`applies`], with 16, 32 or 64 input
/// channels (one to four vectors per tile row of `V^T`).
pub(super) fn applies_weight_grad(g: &ConvGeom) -> bool {
    applies(g) && matches!(g.cin, 16 | 32 | 64)
}

/// `dws[s] += sum_i dw_i` (`[cout][cin][3][3]`) for `n` images and each output gradient
/// `dys[s]` of the same input `x`: `dU_e = sum over tiles of D_e V_e^T` with `D = A dY
/// A^T` of each 4x4 output-gradient tile, then `dw = G^T dU G` in f64. The work on `x`
/// (split, input transform, transposes) is done once for all the gradients. Images in
/// fixed chunks of `chunk`, each chunk's `dU` summed in image order and the chunks in
/// chunk order: the same sums for any number of threads or gradients.
pub(super) fn backward_weight(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    dys: &[&[f32]],
    chunk: usize,
    dws: &mut [&mut [f32]],
) {
    assert!(
        applies_weight_grad(g),
        "winograd F(4x4): unsupported geometry {g:?}"
    );
    assert_eq!(
        dys.len(),
        dws.len(),
        "winograd F(4x4): gradients and outputs"
    );
    let seeds = dys.len();
    let du_len = ELEMS * g.cin * g.cout;
    // One partial dU per chunk and gradient, in call scratch (fresh allocations of this
    // size cost page faults on every call).
    let part_len = seeds * du_len;
    with_call_scratch(n.div_ceil(chunk) * part_len, |partials: &mut [f32]| {
        partials.fill(0.0);
        partials
            .par_chunks_mut(part_len)
            .enumerate()
            .for_each(|(c, du)| {
                let images = c * chunk..((c + 1) * chunk).min(n);
                let dys: Vec<&[f32]> = dys
                    .iter()
                    .map(|dy| &dy[images.start * g.out_len()..images.end * g.out_len()])
                    .collect();
                let x = &x[images.start * g.in_len()..images.end * g.in_len()];
                accumulate_weight_grad(g, x, &dys, du);
            });
        untransform_weight_grad(g, partials, part_len, dws);
    });
}

/// `dws[s] += G^T dU_s G` in f64, `dU_s` the sum in chunk order of gradient `s`'s
/// partials (`partials` `[chunks][seeds][36][cout][cin]`, `part_len` per chunk).
fn untransform_weight_grad(
    g: &ConvGeom,
    partials: &[f32],
    part_len: usize,
    dws: &mut [&mut [f32]],
) {
    let du_len = ELEMS * g.cin * g.cout;
    // G^T applied to six values: three.
    let gt_times = |u: [f64; 6]| {
        let (s12, d12, s34, d34) = (u[1] + u[2], u[1] - u[2], u[3] + u[4], u[3] - u[4]);
        [
            u[0] / 4.0 - s12 / 6.0 + s34 / 24.0,
            -d12 / 6.0 + d34 / 12.0,
            -s12 / 6.0 + s34 / 6.0 + u[5],
        ]
    };
    let (cin, cout) = (g.cin, g.cout);
    with_scratch(du_len, |du: &mut [f32]| {
        for (s, dw) in dws.iter_mut().enumerate() {
            assert_eq!(dw.len(), g.weight_len(), "winograd F(4x4): length of dw");
            du.fill(0.0);
            for p in partials.chunks_exact(part_len) {
                for (d, v) in du.iter_mut().zip(&p[s * du_len..][..du_len]) {
                    *d += v;
                }
            }
            for co in 0..cout {
                for ci in 0..cin {
                    let at = |e: usize| f64::from(du[(e * cout + co) * cin + ci]);
                    let rows: [[f64; 3]; 6] =
                        std::array::from_fn(|i| gt_times(std::array::from_fn(|j| at(i * 6 + j))));
                    let f = &mut dw[(co * cin + ci) * 9..][..9];
                    for c in 0..3 {
                        let col = gt_times(std::array::from_fn(|i| rows[i][c]));
                        for r in 0..3 {
                            f[r * 3 + c] = (f64::from(f[r * 3 + c]) + col[r]) as f32;
                        }
                    }
                }
            }
        }
    });
}

/// `du_s += sum over the images of D_e V_e^T` for each output gradient `dys[s]` (`du`
/// `[seeds][36][cout][cin]`), one block of 16 tiles at a time: `V` as in the forward and
/// transposed (tiles to rows) once for all the gradients, then per gradient `D = A dY A^T`
/// from the block's 4x4 tiles of its `dy` and 16 tiles of products summed into its `du`
/// by broadcast FMAs, tile by tile in order.
fn accumulate_weight_grad(g: &ConvGeom, x: &[f32], dys: &[&[f32]], du: &mut [f32]) {
    let image: ImageWeightGrad = match g.cin / LANES {
        1 => weight_grad_image::<1>,
        2 => weight_grad_image::<2>,
        _ => weight_grad_image::<4>,
    };
    let kernels = WeightGradKernels {
        elems: ELEMS,
        q_len: q_len(g),
        split_input: split_tiles,
        split_gradient,
        image,
    };
    accumulate_weight_grad_with(g, x, dys, du, &kernels);
}

/// `yq[co][a][b][tile] = dy[co][4 ty + a][4 tx + b]`: each tile's 16 pixels as 16 runs
/// over the tiles, one permute of an output row per run.
///
/// # Safety
/// AVX-512F must be present.
#[target_feature(enable = "avx512f")]
unsafe fn split_gradient(g: &ConvGeom, dy: &[f32], yq: &mut [f32]) {
    let (th, tw) = (g.h / 4, g.w / 4);
    let tiles = th * tw;
    assert!(matches!(g.w, 16 | 32) && g.h == 4 * th);
    assert_eq!(dy.len(), g.cout * g.h * g.w);
    assert_eq!(yq.len(), dy.len());
    let index: [__m512i; 4] = std::array::from_fn(|b| {
        let cols: [i32; LANES] = std::array::from_fn(|tx| ((4 * tx + b) % 32) as i32);
        _mm512_loadu_si512(cols.as_ptr().cast())
    });
    let row_mask = lanes(tw);
    let (dy, yq) = (dy.as_ptr(), yq.as_mut_ptr());
    for co in 0..g.cout {
        for oy in 0..g.h {
            let (ty, a) = (oy / 4, oy % 4);
            let row = dy.add((co * g.h + oy) * g.w);
            let lo = _mm512_loadu_ps(row);
            let hi = if g.w > LANES {
                _mm512_loadu_ps(row.add(LANES))
            } else {
                _mm512_setzero_ps()
            };
            for (b, idx) in index.iter().enumerate() {
                let v = _mm512_permutex2var_ps(lo, *idx, hi);
                let out = yq.add(((co * 4 + a) * 4 + b) * tiles + ty * tw);
                _mm512_mask_storeu_ps(out, row_mask, v);
            }
        }
    }
}

/// `A` (6x4) applied to four values: six.
#[inline]
#[target_feature(enable = "avx512f")]
fn a_times(y: [__m512; 4]) -> [__m512; 6] {
    let (s02, s13) = (_mm512_add_ps(y[0], y[2]), _mm512_add_ps(y[1], y[3]));
    let p = _mm512_fmadd_ps(_mm512_set1_ps(4.0), y[2], y[0]); // y0 + 4 y2
    let q = _mm512_mul_ps(
        _mm512_set1_ps(2.0),
        _mm512_fmadd_ps(_mm512_set1_ps(4.0), y[3], y[1]),
    ); // 2 y1 + 8 y3
    [
        y[0],
        _mm512_add_ps(s02, s13),
        _mm512_sub_ps(s02, s13),
        _mm512_add_ps(p, q),
        _mm512_sub_ps(p, q),
        y[3],
    ]
}

/// One image of [`accumulate_weight_grad`], `CIV = cin / 16` vectors per row of `V^T`;
/// `yq` and `du` hold one split gradient and one `dU` per output gradient.
///
/// # Safety
/// AVX-512F must be present.
#[allow(clippy::needless_range_loop)] // the second pass reads across the first's outputs
#[target_feature(enable = "avx512f")]
unsafe fn weight_grad_image<const CIV: usize>(
    g: &ConvGeom,
    q: &[f32],
    yq: &[f32],
    vb: &mut [f32],
    vt: &mut [f32],
    db: &mut [f32],
    du: &mut [f32],
) {
    let tiles = (g.h / 4) * (g.w / 4);
    let (cin, cout) = (g.cin, g.cout);
    let (y_len, du_len) = (cout * g.h * g.w, ELEMS * cin * cout);
    let seeds = yq.len() / y_len;
    assert_eq!(cin, CIV * LANES);
    assert!(q.len() >= q_len(g));
    assert!(vb.len() >= ELEMS * cin * LANES && vt.len() >= ELEMS * LANES * cin);
    assert!(db.len() >= ELEMS * cout * LANES);
    assert_eq!(yq.len(), seeds * y_len);
    assert_eq!(du.len(), seeds * du_len);
    let (q, vb, vt, db) = (
        q.as_ptr(),
        vb.as_mut_ptr(),
        vt.as_mut_ptr(),
        db.as_mut_ptr(),
    );
    for t in (0..tiles).step_by(LANES) {
        input_transform(g, q, t, vb);
        transpose_block(ELEMS, cin, vb, vt);
        for (yq, du) in yq.chunks_exact(y_len).zip(du.chunks_exact_mut(du_len)) {
            // D = A dY A^T: A down the tile's columns, then along the rows.
            let yq = yq.as_ptr();
            for co in 0..cout {
                let y = |a: usize, b: usize| {
                    _mm512_loadu_ps(yq.add(((co * 4 + a) * 4 + b) * tiles + t))
                };
                let cols: [[__m512; 6]; 4] =
                    std::array::from_fn(|b| a_times(std::array::from_fn(|a| y(a, b))));
                for i in 0..6 {
                    let d = a_times(std::array::from_fn(|b| cols[b][i]));
                    for (j, dj) in d.iter().enumerate() {
                        _mm512_storeu_ps(db.add(((i * 6 + j) * cout + co) * LANES), *dj);
                    }
                }
            }
            weight_grad_products::<CIV>(ELEMS, cin, cout, vt, db, du.as_mut_ptr());
        }
    }
}
