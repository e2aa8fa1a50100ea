//! F(2x2, 3x3) forward fused per block of 16 tiles, f32 on AVX-512 (the algebra of
//! `winograd.rs`): for each block, the input transform of every input channel, the 16
//! products `M_e = U_e V_e` and the inverse run back to back on one vector of 16 tiles,
//! so `V` and `M` stay in L1 instead of going through L2 a whole image at a time.
//!
//! Layout of the block buffers: `vb[e][ci]` and `mb[e][co]`, each one vector (16 tiles).
//! The filters come transposed, `ut[e][ci][co]`, so that the 16 output channels of one
//! block of accumulators are consecutive scalars to broadcast.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::scratch::with_scratch;
use super::winograd::BT_ROWS;
use crate::backend::ConvGeom;

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

/// `split_tile_pixels` of every channel of `x` into `q` (`[cin][8 (th + 1) tw]`), for
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
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let back = _mm512_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14);
    let ahead = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 15);
    let row_mask: __mmask16 = ((1u32 << tw) - 1) as __mmask16;
    // Lane 0 of the shifted-back run and lane tw - 1 of the shifted-ahead run are the pad.
    let (back_mask, ahead_mask) = (row_mask & !1, row_mask >> 1);
    let in_mask = |from: usize| -> __mmask16 {
        let n = g.w.saturating_sub(from).min(LANES);
        ((1u32 << n) - 1) as __mmask16
    };
    let (mask0, mask1) = (in_mask(0), in_mask(LANES));
    let (x, q) = (x.as_ptr(), q.as_mut_ptr());
    for ci in 0..g.cin {
        let (src, qc) = (x.add(ci * g.h * g.w), q.add(ci * 8 * q_plane));
        for r in 0..2 * th + 2 {
            let dst = |l: usize| qc.add(((r % 2) * 4 + l) * q_plane + (r / 2) * tw);
            let runs = match r.checked_sub(1).filter(|&iy| iy < g.h) {
                None => [_mm512_setzero_ps(); 4],
                Some(iy) => {
                    let line = src.add(iy * g.w);
                    let a = _mm512_maskz_loadu_ps(mask0, line);
                    let b = _mm512_maskz_loadu_ps(mask1, line.wrapping_add(LANES));
                    let (e, o) = (
                        _mm512_permutex2var_ps(a, even, b),
                        _mm512_permutex2var_ps(a, odd, b),
                    );
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
    let at: [[usize; 4]; 4] = std::array::from_fn(|k| {
        std::array::from_fn(|l| ((k % 2) * 4 + l) * q_plane + (k / 2) * tw)
    });
    let pm = |a: __m512, b: __m512, plus: bool| {
        if plus {
            _mm512_add_ps(a, b)
        } else {
            _mm512_sub_ps(a, b)
        }
    };
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for t in (0..th * tw).step_by(LANES) {
        // Input transform, channel by channel.
        for ci in 0..cin {
            let qc = q.add(ci * 8 * q_plane + t);
            let d = |k: usize, l: usize| _mm512_loadu_ps(qc.add(at[k][l]));
            for (i, &(ai, bi, pi)) in BT_ROWS.iter().enumerate() {
                let r = [0, 1, 2, 3].map(|l| pm(d(ai, l), d(bi, l), pi));
                for (j, &(aj, bj, pj)) in BT_ROWS.iter().enumerate() {
                    let e = i * 4 + j;
                    _mm512_storeu_ps(vb.add((e * cin + ci) * LANES), pm(r[aj], r[bj], pj));
                }
            }
        }
        // M_e = U_e V_e, 16 output channels at a time.
        for e in 0..16 {
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

/// `p[i] (=|+=) v[i]` for the lanes `i` set in `mask` (the others are not touched).
///
/// # Safety
/// AVX-512F must be present; `p` valid for the lanes in `mask`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store(p: *mut f32, v: __m512, mask: __mmask16, accumulate: bool) {
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

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
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
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: no AVX-512F");
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
