//! F(2x2, 3x3) fused per block of 16 tiles, f32 on AVX-512 (the algebra of `winograd.rs`).
//! Forward (and so backward data): for each block, the input transform of every input
//! channel, the 16 products `M_e = U_e V_e` and the inverse run back to back on one vector
//! of 16 tiles, so `V` and `M` stay in L1 instead of going through L2 a whole image at a
//! time. Weight gradient: per block, `V`, `D = A dY A^T` and `dU_e += D_e V_e^T` the same
//! way (see [`accumulate_weight_grad`]).
//!
//! Layout of the block buffers: `vb[e][ci]`, `mb[e][co]` and `db[e][co]`, each one vector
//! (16 tiles). The filters come transposed, `ut[e][ci][co]`, so that the 16 output
//! channels of one block of accumulators are consecutive scalars to broadcast.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::scratch::with_scratch;
use crate::backend::ConvGeom;

/// Winograd F(2x2, 3x3)'s `B^T` rows as `row_i = d[a] + sign * d[b]`: `(a, b, sign is +)`
/// (here, below the unfused path in winograd.rs that shares them).
pub(super) const BT_ROWS: [(usize, usize, bool); 4] =
    [(0, 2, false), (1, 2, true), (2, 1, false), (1, 3, false)];

/// Tiles per vector.
const LANES: usize = 16;

/// Whether the fused kernel computes this geometry on this CPU: pad 1, whole blocks of
/// tiles, channel counts in whole vectors.
pub(super) fn applies(g: &ConvGeom) -> bool {
    let tiles = g.h.div_ceil(2) * g.w.div_ceil(2);
    g.k == 3
        && g.stride == 1
        && g.pad == 1
        && g.h.is_multiple_of(2)
        && g.w.is_multiple_of(2)
        && tiles.is_multiple_of(LANES)
        && (2 * LANES).is_multiple_of(g.w)
        && g.cin.is_multiple_of(LANES)
        && g.cout.is_multiple_of(LANES)
        && std::arch::is_x86_feature_detected!("avx512f")
}

/// `y (=|+=) conv(x, w)` for `n` images, `u` the transformed filters `[16][cout][cin]`.
pub(super) fn forward(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    u: &[f32],
    y: &mut [f32],
    accumulate: bool,
) {
    assert!(applies(g), "fused winograd: unsupported geometry {g:?}");
    let (cin, cout) = (g.cin, g.cout);
    assert_eq!(u.len(), 16 * cin * cout, "fused winograd: length of u");
    let mut ut = vec![0.0f32; 16 * cin * cout];
    for e in 0..16 {
        for co in 0..cout {
            for ci in 0..cin {
                ut[(e * cin + ci) * cout + co] = u[(e * cout + co) * cin + ci];
            }
        }
    }
    let (th, tw) = (g.h / 2, g.w / 2);
    let q_len = 8 * (th + 1) * tw;
    let work = cin * q_len + 16 * (cin + cout) * LANES;
    y[..n * g.out_len()]
        .par_chunks_mut(g.out_len())
        .zip(x[..n * g.in_len()].par_chunks(g.in_len()))
        .for_each(|(yi, xi)| {
            with_scratch(work, |buf: &mut [f32]| {
                let (q, rest) = buf.split_at_mut(cin * q_len);
                let (vb, mb) = rest.split_at_mut(16 * cin * LANES);
                // SAFETY: `applies` checked AVX-512F; the lengths are the ones `image`
                // and `split_planes` assert.
                unsafe {
                    split_planes(g, xi, q);
                    image(g, q, &ut, vb, mb, yi, accumulate)
                };
            })
        });
}

/// The even and odd pixels of a row of `w <= 32` values at `line` (lanes `0..w / 2`; the
/// rest zero).
///
/// # Safety
/// AVX-512F must be present; `line` holds `w` values.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn even_odd(line: *const f32, w: usize) -> [__m512; 2] {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let mask = |from: usize| lanes(w.saturating_sub(from).min(LANES));
    let lo = _mm512_maskz_loadu_ps(mask(0), line);
    let hi = _mm512_maskz_loadu_ps(mask(LANES), line.wrapping_add(LANES));
    [
        _mm512_permutex2var_ps(lo, even, hi),
        _mm512_permutex2var_ps(lo, odd, hi),
    ]
}

/// The mask of the first `n <= 16` lanes.
pub(super) fn lanes(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// `winograd.rs`'s `split_tile_pixels` of every channel of `x` into `q` (`[cin][8 (th + 1) tw]`), for
/// pad 1 and `w = 2 tw <= 32`: each padded row's four runs from two vector permutes of
/// the input row (`l = 1, 2` its even and odd pixels, `l = 0, 3` those shifted by a tile).
///
/// # Safety
/// AVX-512F must be present.
#[target_feature(enable = "avx512f")]
unsafe fn split_planes(g: &ConvGeom, x: &[f32], q: &mut [f32]) {
    let (th, tw) = (g.h / 2, g.w / 2);
    let q_plane = (th + 1) * tw;
    assert!(g.pad == 1 && g.w == 2 * tw && tw <= LANES);
    assert_eq!(x.len(), g.cin * g.h * g.w);
    assert!(q.len() >= g.cin * 8 * q_plane);
    let back = _mm512_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14);
    let ahead = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 15);
    let row_mask = lanes(tw);
    // Lane 0 of the shifted-back run and lane tw - 1 of the shifted-ahead run are the pad.
    let (back_mask, ahead_mask) = (row_mask & !1, row_mask >> 1);
    let (x, q) = (x.as_ptr(), q.as_mut_ptr());
    for ci in 0..g.cin {
        let (src, qc) = (x.add(ci * g.h * g.w), q.add(ci * 8 * q_plane));
        for r in 0..2 * th + 2 {
            let dst = |l: usize| qc.add(((r % 2) * 4 + l) * q_plane + (r / 2) * tw);
            let runs = match r.checked_sub(1).filter(|&iy| iy < g.h) {
                None => [_mm512_setzero_ps(); 4],
                Some(iy) => {
                    let [e, o] = even_odd(src.add(iy * g.w), g.w);
                    [
                        _mm512_maskz_permutexvar_ps(back_mask, back, o),
                        e,
                        o,
                        _mm512_maskz_permutexvar_ps(ahead_mask, ahead, e),
                    ]
                }
            };
            for (l, v) in runs.into_iter().enumerate() {
                _mm512_mask_storeu_ps(dst(l), row_mask, v);
            }
        }
    }
}

/// `B^T d B` of tiles `t..t + 16` of every input channel, from the split planes `q`
/// (`[cin][8 (th + 1) tw]`) into `vb[e][ci]` (one vector each): `B^T` on the rows first
/// (`r[l] = d[a][l] ± d[b][l]`), then on the columns of `r`.
///
/// # Safety
/// AVX-512F must be present; `q` and `vb` hold what the callers assert.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn input_transform(g: &ConvGeom, q: *const f32, t: usize, vb: *mut f32) {
    let (th, tw) = (g.h / 2, g.w / 2);
    let q_plane = (th + 1) * tw;
    let at: [[usize; 4]; 4] = std::array::from_fn(|k| {
        std::array::from_fn(|l| ((k % 2) * 4 + l) * q_plane + (k / 2) * tw)
    });
    for ci in 0..g.cin {
        let qc = q.add(ci * 8 * q_plane + t);
        let d = |k: usize, l: usize| _mm512_loadu_ps(qc.add(at[k][l]));
        for (i, &(ai, bi, pi)) in BT_ROWS.iter().enumerate() {
            let r = [0, 1, 2, 3].map(|l| plus_minus(d(ai, l), d(bi, l), pi));
            for (j, &(aj, bj, pj)) in BT_ROWS.iter().enumerate() {
                let e = i * 4 + j;
                _mm512_storeu_ps(
                    vb.add((e * g.cin + ci) * LANES),
                    plus_minus(r[aj], r[bj], pj),
                );
            }
        }
    }
}

/// `a + b` or `a - b`.
#[inline]
#[target_feature(enable = "avx512f")]
fn plus_minus(a: __m512, b: __m512, plus: bool) -> __m512 {
    if plus {
        _mm512_add_ps(a, b)
    } else {
        _mm512_sub_ps(a, b)
    }
}

/// One image: `q` its split input planes (`[cin][8 (th + 1) tw]`), `y` its output.
///
/// # Safety
/// AVX-512F must be present; the buffers have the lengths [`forward`] gives them.
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
    let (th, tw) = (g.h / 2, g.w / 2);
    let q_plane = (th + 1) * tw;
    let (cin, cout) = (g.cin, g.cout);
    assert!(q.len() >= cin * 8 * q_plane && ut.len() >= 16 * cin * cout);
    assert!(vb.len() >= 16 * cin * LANES && mb.len() >= 16 * cout * LANES);
    assert_eq!(y.len(), cout * g.h * g.w);
    let (q, ut, vb, mb) = (q.as_ptr(), ut.as_ptr(), vb.as_mut_ptr(), mb.as_mut_ptr());
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for t in (0..th * tw).step_by(LANES) {
        input_transform(g, q, t, vb);
        products(16, cin, cout, ut, vb, mb);
        // Inverse per output channel; the two columns of each tile row interleaved into
        // 32 consecutive pixels: whole output rows of consecutive tile rows.
        let ty0 = t / tw;
        for co in 0..cout {
            let m = |e: usize| _mm512_loadu_ps(mb.add((e * cout + co) * LANES));
            let s: [__m512; 8] = std::array::from_fn(|k| {
                let j = k % 4;
                if k < 4 {
                    _mm512_add_ps(_mm512_add_ps(m(j), m(4 + j)), m(8 + j))
                } else {
                    _mm512_sub_ps(_mm512_sub_ps(m(4 + j), m(8 + j)), m(12 + j))
                }
            });
            let plane = y.as_mut_ptr().add(co * g.h * g.w);
            for a in 0..2 {
                let sa = &s[a * 4..][..4];
                let left = _mm512_add_ps(_mm512_add_ps(sa[0], sa[1]), sa[2]);
                let right = _mm512_sub_ps(_mm512_sub_ps(sa[1], sa[2]), sa[3]);
                let pixels = [
                    _mm512_permutex2var_ps(left, lo, right),
                    _mm512_permutex2var_ps(left, hi, right),
                ];
                // Pixel f of the 32 is column f % w of tile row ty0 + f / w.
                let row = |r: usize| plane.add((2 * (ty0 + r) + a) * g.w);
                for (h, &v) in pixels.iter().enumerate() {
                    let f0 = h * LANES;
                    if g.w >= LANES {
                        store(row(f0 / g.w).add(f0 % g.w), v, 0xffff, accumulate);
                    } else {
                        // w = 8: two rows per vector; the upper half's lane 8 is column 0.
                        store(row(f0 / g.w), v, 0x00ff, accumulate);
                        store(row(f0 / g.w + 1).sub(8), v, 0xff00, accumulate);
                    }
                }
            }
        }
    }
}

/// Whether [`accumulate_weight_grad`] takes this geometry: [`applies`], with 16, 32 or 64
/// input channels (one to four vectors per tile row of `V^T`).
pub(super) fn applies_weight_grad(g: &ConvGeom) -> bool {
    applies(g) && matches!(g.cin, 16 | 32 | 64)
}

/// `du_s += sum over the images of D_e V_e^T` for each output gradient `dys[s]` of the
/// images `x` (`[n][cin][h][w]`; `du` `[seeds][16][cout][cin]`), the Winograd-domain weight
/// gradient, one block of 16 tiles at a time: `V` as in the forward and transposed per
/// element (tiles to rows) once for all the gradients, then per gradient `D = A dY A^T`
/// from the block's rows of `dy` and 16 tiles of products summed into its `du` by
/// broadcast FMAs, tile by tile in order. Images in order, so the sums do not depend on
/// threads, nor on how many gradients share the call.
pub(super) fn accumulate_weight_grad(g: &ConvGeom, x: &[f32], dys: &[&[f32]], du: &mut [f32]) {
    assert!(
        applies_weight_grad(g),
        "fused winograd: unsupported geometry {g:?}"
    );
    let image: ImageWeightGrad = match g.cin / LANES {
        1 => weight_grad_image::<1>,
        2 => weight_grad_image::<2>,
        _ => weight_grad_image::<4>,
    };
    let kernels = WeightGradKernels {
        elems: 16,
        q_len: g.cin * 8 * (g.h / 2 + 1) * (g.w / 2),
        split_input: split_planes,
        split_gradient,
        image,
    };
    accumulate_weight_grad_with(g, x, dys, du, &kernels);
}

/// One image's weight gradient: `(g, q, yq, vb, vt, db, du)` as
/// [`accumulate_weight_grad_with`] hands them over.
pub(super) type ImageWeightGrad =
    unsafe fn(&ConvGeom, &[f32], &[f32], &mut [f32], &mut [f32], &mut [f32], &mut [f32]);

/// The kernels of one fused Winograd weight gradient (F(2x2) here, F(4x4) in
/// `winograd4_fused.rs`), for [`accumulate_weight_grad_with`].
pub(super) struct WeightGradKernels {
    /// Elements of a transformed input tile (16 or 36).
    pub elems: usize,
    /// Length of one image's split input.
    pub q_len: usize,
    /// Splits one image of `x` into `q`.
    pub split_input: unsafe fn(&ConvGeom, &[f32], &mut [f32]),
    /// Splits one image of an output gradient into `yq` (`out_len` values).
    pub split_gradient: unsafe fn(&ConvGeom, &[f32], &mut [f32]),
    /// One image (for this geometry's input channels).
    pub image: ImageWeightGrad,
}

/// The driver both fused weight gradients share: `du` (`[seeds][elems][cout][cin]`) +=
/// each output gradient's Winograd-domain weight gradient, image by image in order, each
/// image's input split once and each gradient's image split beside it.
pub(super) fn accumulate_weight_grad_with(
    g: &ConvGeom,
    x: &[f32],
    dys: &[&[f32]],
    du: &mut [f32],
    kernels: &WeightGradKernels,
) {
    let n = x.len() / g.in_len();
    let seeds = dys.len();
    assert_eq!(x.len(), n * g.in_len(), "fused winograd: length of x");
    for dy in dys {
        assert_eq!(dy.len(), n * g.out_len(), "fused winograd: length of dy");
    }
    let (cin, cout, elems) = (g.cin, g.cout, kernels.elems);
    assert_eq!(
        du.len(),
        seeds * elems * cin * cout,
        "fused winograd: length of du"
    );
    let q_len = kernels.q_len;
    let (v_len, vt_len, d_len) = (
        elems * cin * LANES,
        elems * LANES * cin,
        elems * cout * LANES,
    );
    let y_len = g.out_len();
    with_scratch(
        q_len + seeds * y_len + v_len + vt_len + d_len,
        |buf: &mut [f32]| {
            let (q, rest) = buf.split_at_mut(q_len);
            let (yq, rest) = rest.split_at_mut(seeds * y_len);
            let (vb, rest) = rest.split_at_mut(v_len);
            let (vt, db) = rest.split_at_mut(vt_len);
            for (i, xi) in x.chunks_exact(g.in_len()).enumerate() {
                // SAFETY: the callers checked AVX-512F (`applies`); the buffers have the
                // lengths the kernels assert.
                unsafe {
                    (kernels.split_input)(g, xi, q);
                    for (dy, yq) in dys.iter().zip(yq.chunks_exact_mut(y_len)) {
                        (kernels.split_gradient)(g, &dy[i * y_len..][..y_len], yq);
                    }
                    (kernels.image)(g, q, yq, vb, vt, db, du);
                }
            }
        },
    )
}

/// One image of [`accumulate_weight_grad`], `CIV = cin / 16` vectors per row of `V^T`;
/// `yq` and `du` hold one split gradient and one `dU` per output gradient.
///
/// # Safety
/// AVX-512F must be present.
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
    let (th, tw) = (g.h / 2, g.w / 2);
    let (cin, cout) = (g.cin, g.cout);
    let (y_len, du_len) = (cout * g.h * g.w, 16 * cin * cout);
    let seeds = yq.len() / y_len;
    assert_eq!(cin, CIV * LANES);
    assert!(q.len() >= cin * 8 * (th + 1) * tw);
    assert!(vb.len() >= 16 * cin * LANES && vt.len() >= 16 * LANES * cin);
    assert!(db.len() >= 16 * cout * LANES);
    assert_eq!(yq.len(), seeds * y_len);
    assert_eq!(du.len(), seeds * du_len);
    let (q, vb, vt, db) = (
        q.as_ptr(),
        vb.as_mut_ptr(),
        vt.as_mut_ptr(),
        db.as_mut_ptr(),
    );
    let tiles = th * tw;
    for t in (0..tiles).step_by(LANES) {
        input_transform(g, q, t, vb);
        transpose_block(16, cin, vb, vt);
        for (yq, du) in yq.chunks_exact(y_len).zip(du.chunks_exact_mut(du_len)) {
            // D = A dY A^T: the block's 2x2 output-gradient tiles, A down then across.
            let yq = yq.as_ptr();
            for co in 0..cout {
                let y: [[__m512; 2]; 2] = std::array::from_fn(|a| {
                    std::array::from_fn(|b| {
                        _mm512_loadu_ps(yq.add(((co * 2 + a) * 2 + b) * tiles + t))
                    })
                });
                let r: [[__m512; 2]; 4] =
                    std::array::from_fn(|i| std::array::from_fn(|b| a_row(i, y[0][b], y[1][b])));
                for (i, ri) in r.iter().enumerate() {
                    for j in 0..4 {
                        let e = i * 4 + j;
                        _mm512_storeu_ps(db.add((e * cout + co) * LANES), a_row(j, ri[0], ri[1]));
                    }
                }
            }
            weight_grad_products::<CIV>(16, cin, cout, vt, db, du.as_mut_ptr());
        }
    }
}

/// `M_e = U_e V_e` for the `elems` elements of a block (`ut[e][ci][co]`, `vb[e][ci]`,
/// `mb[e][co]`), 16 output channels at a time: the products of the F(2x2) and F(4x4)
/// forward kernels.
///
/// # Safety
/// AVX-512F must be present; the buffers hold `elems cin cout` values and `elems cin`,
/// `elems cout` vectors.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn products(
    elems: usize,
    cin: usize,
    cout: usize,
    ut: *const f32,
    vb: *const f32,
    mb: *mut f32,
) {
    for e in 0..elems {
        for c0 in (0..cout).step_by(LANES) {
            let mut acc = [_mm512_setzero_ps(); LANES];
            for ci in 0..cin {
                let v = _mm512_loadu_ps(vb.add((e * cin + ci) * LANES));
                let w = ut.add((e * cin + ci) * cout + c0);
                for (c, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(_mm512_set1_ps(*w.add(c)), v, *a);
                }
            }
            for (c, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(mb.add((e * cout + c0 + c) * LANES), *a);
            }
        }
    }
}

/// `vt[e]` = `V_e` transposed (row t: tile t's input channels) for the `elems` elements
/// of a block (`vb[e][ci]`, one vector of 16 tiles each; `vt` `[elems][16][cin]`): the
/// right-hand operands of [`weight_grad_products`], formed once per block and shared by
/// every output gradient of the same input.
///
/// # Safety
/// AVX-512F must be present; `vb` holds `elems cin` vectors and `vt` `elems 16 cin` values.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose_block(elems: usize, cin: usize, vb: *const f32, vt: *mut f32) {
    for e in 0..elems {
        for c in 0..cin / LANES {
            transpose(
                vb.add((e * cin + c * LANES) * LANES),
                vt.add(e * LANES * cin + c * LANES),
                cin,
            );
        }
    }
}

/// `du[e] += D_e V_e^T` for the `elems` elements of a block (`vt` from
/// [`transpose_block`], `db[e][co]` one vector of 16 tiles each; `du` `[elems][cout][cin]`):
/// the 16 tiles' products summed in order by broadcast FMAs, `CIV = cin / 16` vectors per
/// row. The weight gradient of the F(2x2) and F(4x4) kernels.
///
/// # Safety
/// AVX-512F must be present; the buffers hold what those kernels assert.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn weight_grad_products<const CIV: usize>(
    elems: usize,
    cin: usize,
    cout: usize,
    vt: *const f32,
    db: *const f32,
    du: *mut f32,
) {
    // Output channels per block of accumulators: 16 accumulators in all.
    let co_block = LANES / CIV;
    for e in 0..elems {
        let vt = vt.add(e * LANES * cin);
        for co0 in (0..cout).step_by(co_block) {
            let du_at = |k: usize, c: usize| du.add((e * cout + co0 + k) * cin + c * LANES);
            let mut acc = [[_mm512_setzero_ps(); CIV]; LANES];
            for (k, a) in acc.iter_mut().enumerate().take(co_block) {
                for (c, v) in a.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(du_at(k, c));
                }
            }
            for tile in 0..LANES {
                let v: [__m512; CIV] =
                    std::array::from_fn(|c| _mm512_loadu_ps(vt.add(tile * cin + c * LANES)));
                for (k, a) in acc.iter_mut().enumerate().take(co_block) {
                    let d = _mm512_set1_ps(*db.add((e * cout + co0 + k) * LANES + tile));
                    for (c, v) in a.iter_mut().zip(&v) {
                        *c = _mm512_fmadd_ps(d, *v, *c);
                    }
                }
            }
            for (k, a) in acc.iter().enumerate().take(co_block) {
                for (c, v) in a.iter().enumerate() {
                    _mm512_storeu_ps(du_at(k, c), *v);
                }
            }
        }
    }
}

/// Row `op` of `A` (4x2) applied to `(x, y)`: `x`, `x + y`, `x - y`, `-y`.
#[inline]
#[target_feature(enable = "avx512f")]
fn a_row(op: usize, x: __m512, y: __m512) -> __m512 {
    match op {
        0 => x,
        1 => _mm512_add_ps(x, y),
        2 => _mm512_sub_ps(x, y),
        // Exact negation (a sign flip, as `-y` is on the grouped path).
        _ => _mm512_castsi512_ps(_mm512_xor_si512(
            _mm512_castps_si512(y),
            _mm512_set1_epi32(i32::MIN),
        )),
    }
}

/// Splits the output gradient `dy` (`[cout][h][w]`, pad 1 so `h = 2 th`, `w = 2 tw`)
/// into `yq[co][a][b][ty tw + tx] = dy[co][2ty + a][2tx + b]`: each tile's four pixels as
/// four runs over the tiles, read plane by plane (the block loop then loads them from
/// cache instead of striding across every channel's rows).
///
/// # Safety
/// AVX-512F must be present.
#[target_feature(enable = "avx512f")]
unsafe fn split_gradient(g: &ConvGeom, dy: &[f32], yq: &mut [f32]) {
    let (th, tw) = (g.h / 2, g.w / 2);
    assert!(g.w == 2 * tw && g.h == 2 * th && tw <= LANES);
    assert_eq!(dy.len(), g.cout * g.h * g.w);
    assert_eq!(yq.len(), dy.len());
    let tiles = th * tw;
    let (dy, yq) = (dy.as_ptr(), yq.as_mut_ptr());
    for co in 0..g.cout {
        for oy in 0..g.h {
            let (ty, a) = (oy / 2, oy % 2);
            let pixels = even_odd(dy.add((co * g.h + oy) * g.w), g.w);
            for (b, v) in pixels.into_iter().enumerate() {
                let out = yq.add(((co * 2 + a) * 2 + b) * tiles + ty * tw);
                _mm512_mask_storeu_ps(out, lanes(tw), v);
            }
        }
    }
}

/// Lane indices of the transpose's rounds: for round `r` (bit `b = 8 >> r`), row `i`
/// (bit `b` clear) keeps its lanes with bit `b` clear and takes row `i + b`'s lanes
/// `l - b` where `l` has it (`[r][0]`); row `i + b` the other way round (`[r][1]`).
const TRANSPOSE_LANES: [[[i32; LANES]; 2]; 4] = {
    let mut idx = [[[0i32; LANES]; 2]; 4];
    let mut r = 0;
    while r < 4 {
        let b = 8 >> r;
        let mut l = 0;
        while l < LANES {
            let (low, high) = if l & b == 0 {
                (l, l + b)
            } else {
                (LANES + l - b, LANES + l)
            };
            idx[r][0][l] = low as i32;
            idx[r][1][l] = high as i32;
            l += 1;
        }
        r += 1;
    }
    idx
};

/// Writes the transpose of the 16x16 block at `src` (16 contiguous rows of 16) as 16
/// rows `stride` apart from `dst`: four rounds in registers, each swapping bit `b` of the
/// row index with bit `b` of the lane index (`b` = 8, 4, 2, 1).
///
/// # Safety
/// AVX-512F must be present; `src` holds 256 values, `dst` 16 rows of 16 at `stride`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn transpose(src: *const f32, dst: *mut f32, stride: usize) {
    // Sixteen named vectors, not an array: with an array LLVM turned the row loads into a
    // memcpy through the stack (the weight-gradient bench 20-30 % slower).
    let r: [__m512; LANES] = std::array::from_fn(|k| _mm512_loadu_ps(src.add(k * LANES)));
    let [mut r0, mut r1, mut r2, mut r3, mut r4, mut r5, mut r6, mut r7] =
        [r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]];
    let [mut r8, mut r9, mut r10, mut r11, mut r12, mut r13, mut r14, mut r15] =
        [r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]];
    for (round, [low, high]) in TRANSPOSE_LANES.iter().enumerate() {
        let (low, high) = (
            _mm512_loadu_si512(low.as_ptr().cast()),
            _mm512_loadu_si512(high.as_ptr().cast()),
        );
        let swap = |x: &mut __m512, y: &mut __m512| {
            let (a, b) = (*x, *y);
            *x = _mm512_permutex2var_ps(a, low, b);
            *y = _mm512_permutex2var_ps(a, high, b);
        };
        match 8 >> round {
            8 => {
                swap(&mut r0, &mut r8);
                swap(&mut r1, &mut r9);
                swap(&mut r2, &mut r10);
                swap(&mut r3, &mut r11);
                swap(&mut r4, &mut r12);
                swap(&mut r5, &mut r13);
                swap(&mut r6, &mut r14);
                swap(&mut r7, &mut r15);
            }
            4 => {
                swap(&mut r0, &mut r4);
                swap(&mut r1, &mut r5);
                swap(&mut r2, &mut r6);
                swap(&mut r3, &mut r7);
                swap(&mut r8, &mut r12);
                swap(&mut r9, &mut r13);
                swap(&mut r10, &mut r14);
                swap(&mut r11, &mut r15);
            }
            2 => {
                swap(&mut r0, &mut r2);
                swap(&mut r1, &mut r3);
                swap(&mut r4, &mut r6);
                swap(&mut r5, &mut r7);
                swap(&mut r8, &mut r10);
                swap(&mut r9, &mut r11);
                swap(&mut r12, &mut r14);
                swap(&mut r13, &mut r15);
            }
            _ => {
                swap(&mut r0, &mut r1);
                swap(&mut r2, &mut r3);
                swap(&mut r4, &mut r5);
                swap(&mut r6, &mut r7);
                swap(&mut r8, &mut r9);
                swap(&mut r10, &mut r11);
                swap(&mut r12, &mut r13);
                swap(&mut r14, &mut r15);
            }
        }
    }
    let rows = [
        r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15,
    ];
    for (k, row) in rows.iter().enumerate() {
        _mm512_storeu_ps(dst.add(k * stride), *row);
    }
}

/// `p[i] (=|+=) v[i]` for the lanes `i` set in `mask` (the others are not touched).
///
/// # Safety
/// AVX-512F must be present; `p` valid for the lanes in `mask`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn store(p: *mut f32, v: __m512, mask: __mmask16, accumulate: bool) {
    let v = if accumulate {
        _mm512_add_ps(_mm512_maskz_loadu_ps(mask, p), v)
    } else {
        v
    };
    _mm512_mask_storeu_ps(p, mask, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::winograd::{filters_len, forward_grouped};

    fn geom(c: (usize, usize), h: usize, w: usize) -> ConvGeom {
        ConvGeom {
            cin: c.0,
            cout: c.1,
            h,
            w,
            k: 3,
            stride: 1,
            pad: 1,
        }
    }

    /// Whether this CPU runs the fused kernels; says so when a test is skipped (on the
    /// stream itself: the harness captures eprintln of passing tests), and fails instead
    /// under CI, whose machines have AVX-512F (issue 27: a skip there hides a broken set-up).
    fn has_avx512() -> bool {
        use std::io::Write;
        let has = std::arch::is_x86_feature_detected!("avx512f");
        if !has {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
            assert!(
                !ci,
                "no AVX-512F under CI: the fused Winograd kernels are not checked"
            );
            let _ = writeln!(
                std::io::stderr(),
                "NOTICE: no AVX-512F: fused Winograd kernels not checked"
            );
        }
        has
    }

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        crate::net::init::uniform_stream(seed, 1, len)
            .map(|u| (2.0 * u - 1.0) as f32)
            .collect()
    }

    #[test]
    fn transpose_moves_each_element_to_its_mirror() {
        if !has_avx512() {
            return;
        }
        let src: Vec<f32> = (0..256).map(|i| i as f32).collect();
        // Rows 20 apart, with a guard value between them that must survive.
        let mut dst = vec![-1.0f32; 16 * 20];
        unsafe { transpose(src.as_ptr(), dst.as_mut_ptr(), 20) };
        for r in 0..16 {
            for c in 0..16 {
                assert_eq!(dst[r * 20 + c], src[c * 16 + r], "({r}, {c})");
            }
            assert!(dst[r * 20 + 16..r * 20 + 20].iter().all(|&v| v == -1.0));
        }
    }

    /// `du[e][co][ci] = sum over images and tiles of D_e[co] V_e[ci]`, each tile's
    /// transforms written out as the matrix products `B^T d B` and `A^T`-side `A dy A^T`
    /// in f64 (no splitting, no blocking).
    #[allow(clippy::needless_range_loop)] // matrix indices read as the formulas do
    fn naive_weight_grad(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f64> {
        const BT: [[f64; 4]; 4] = [
            [1.0, 0.0, -1.0, 0.0],
            [0.0, 1.0, 1.0, 0.0],
            [0.0, -1.0, 1.0, 0.0],
            [0.0, 1.0, 0.0, -1.0],
        ];
        const A: [[f64; 2]; 4] = [[1.0, 0.0], [1.0, 1.0], [1.0, -1.0], [0.0, -1.0]];
        let (cin, cout, h, w) = (g.cin, g.cout, g.h, g.w);
        let mut du = vec![0.0; 16 * cout * cin];
        for (xi, dyi) in x.chunks_exact(g.in_len()).zip(dy.chunks_exact(g.out_len())) {
            for ty in 0..h / 2 {
                for tx in 0..w / 2 {
                    let v: Vec<[f64; 16]> = (0..cin)
                        .map(|ci| {
                            let d = |k: usize, l: usize| {
                                let (iy, ix) =
                                    ((2 * ty + k) as isize - 1, (2 * tx + l) as isize - 1);
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    0.0
                                } else {
                                    xi[(ci * h + iy as usize) * w + ix as usize] as f64
                                }
                            };
                            std::array::from_fn(|e| {
                                let (i, j) = (e / 4, e % 4);
                                let mut sum = 0.0;
                                for k in 0..4 {
                                    for l in 0..4 {
                                        sum += BT[i][k] * d(k, l) * BT[j][l];
                                    }
                                }
                                sum
                            })
                        })
                        .collect();
                    for co in 0..cout {
                        let p =
                            |a: usize, b: usize| dyi[(co * h + 2 * ty + a) * w + 2 * tx + b] as f64;
                        for e in 0..16 {
                            let (i, j) = (e / 4, e % 4);
                            let mut dd = 0.0;
                            for a in 0..2 {
                                for b in 0..2 {
                                    dd += A[i][a] * p(a, b) * A[j][b];
                                }
                            }
                            for ci in 0..cin {
                                du[(e * cout + co) * cin + ci] += dd * v[ci][e];
                            }
                        }
                    }
                }
            }
        }
        du
    }

    #[test]
    fn fused_weight_grad_matches_the_tile_by_tile_definition() {
        if !has_avx512() {
            return;
        }
        let n = 2;
        for (i, g) in [
            geom((16, 16), 32, 32),
            geom((32, 16), 16, 16),
            geom((64, 32), 8, 8),
            geom((16, 48), 16, 8),
        ]
        .into_iter()
        .enumerate()
        {
            assert!(applies_weight_grad(&g));
            let seed = 100 + 10 * i as u64;
            let (x, dy) = (
                values(n * g.in_len(), seed),
                values(n * g.out_len(), seed + 1),
            );
            let start = values(16 * g.cin * g.cout, seed + 2);
            let mut got = start.clone();
            accumulate_weight_grad(&g, &x, &[&dy], &mut got);
            let want = naive_weight_grad(&g, &x, &dy);
            // Each entry sums n * tiles products of values below 4 * 4 = 16 (V) and 4 (D).
            let bound = 1e-5 * (n * g.h * g.w / 4) as f64 * 64.0;
            for (j, ((&s, &v), &w)) in start.iter().zip(&got).zip(&want).enumerate() {
                let err = (v as f64 - s as f64 - w).abs();
                assert!(err <= bound, "{g:?}: entry {j}: {v} - {s} against {w}");
            }
        }
        assert!(!applies_weight_grad(&geom((48, 16), 16, 16)));
    }

    #[test]
    fn applies_only_to_whole_blocks_and_vectors() {
        for (g, want) in [
            (geom((16, 16), 32, 32), true),
            (geom((32, 64), 16, 16), true),
            (geom((64, 64), 8, 8), true),
            (geom((16, 16), 16, 8), true),
            (geom((16, 16), 4, 8), false),
            (geom((17, 16), 32, 32), false),
            (geom((16, 24), 32, 32), false),
            (geom((16, 16), 6, 6), false),
            (geom((16, 16), 64, 64), false),
            (geom((16, 16), 7, 8), false),
            (
                ConvGeom {
                    pad: 0,
                    ..geom((16, 16), 32, 32)
                },
                false,
            ),
        ] {
            if !std::arch::is_x86_feature_detected!("avx512f") {
                assert!(!applies(&g));
                continue;
            }
            assert_eq!(applies(&g), want, "{g:?}");
        }
    }

    /// The fused kernel does the grouped path's arithmetic (same transforms, products
    /// summed over input channels in order), so the two agree to rounding of the
    /// products' order at most; in both modes (overwrite, accumulate).
    #[test]
    fn fused_forward_matches_the_grouped_path() {
        if !has_avx512() {
            return;
        }
        let n = 3;
        for (i, g) in [
            geom((16, 16), 32, 32),
            geom((32, 16), 16, 16),
            geom((16, 48), 16, 16),
            geom((64, 64), 8, 8),
            geom((16, 32), 16, 8),
        ]
        .into_iter()
        .enumerate()
        {
            assert!(applies(&g));
            let seed = 10 * i as u64;
            let (x, u) = (
                values(n * g.in_len(), seed),
                values(filters_len(&g), seed + 1),
            );
            for accumulate in [false, true] {
                let start = values(n * g.out_len(), seed + 2);
                let (mut want, mut got) = (start.clone(), start.clone());
                forward_grouped(&g, n, &x, &u, &mut want, accumulate);
                forward(&g, n, &x, &u, &mut got, accumulate);
                let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (j, (w, v)) in want.iter().zip(&got).enumerate() {
                    assert!(
                        (w - v).abs() <= 1e-6 * scale,
                        "{g:?} accumulate {accumulate}: element {j}: {v} against {w}"
                    );
                }
            }
        }
    }
}
