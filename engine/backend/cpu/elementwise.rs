//! Elementwise helpers: `dst += src`, plus the f64-accumulated reductions that batch norm
//! and pooling share (eight independent lanes so the compiler can vectorise them).

use rayon::prelude::*;

use crate::backend::Real;

/// Slices longer than this are split into chunks of this size for rayon.
pub(crate) const PAR_CHUNK: usize = 1 << 14;

const LANES: usize = 8;

/// Runs `f` compiled for the widest vector unit this CPU has (AVX-512, else AVX2, else the
/// baseline). The build targets baseline x86-64 (SSE2), so loops the compiler vectorises
/// run 4 f32 lanes wide unless called through here. `f` must be `#[inline(always)]` (and
/// the kernels it calls `#[inline]`) so it is compiled into the feature-enabled wrapper;
/// results are the same on every path (no FMA contraction, same operation order).
#[inline(always)]
pub(crate) fn with_widest_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the features were detected at run time.
            return unsafe { run_avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { run_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2")]
unsafe fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `dst += src`, in parallel chunks for large slices.
pub fn add_assign<T: Real>(dst: &mut [T], src: &[T]) {
    assert_eq!(dst.len(), src.len(), "add_assign: length mismatch");
    dst.par_chunks_mut(PAR_CHUNK)
        .zip(src.par_chunks(PAR_CHUNK))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &s)| *d += s));
}

/// Sum of `x` accumulated in f64.
pub(crate) fn sum_f64<T: Real>(x: &[T]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|v| v.to_f64_lossless()).sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v.to_f64_lossless();
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Running `(sum (x - shift), sum (x - shift)^2)` in f64 over any number of slices: both
/// moments in one pass. Sixteen lanes per sum (two AVX-512 registers each) so the adds are
/// not latency-bound. Both sums live in one lane array, folded out of line: with two lane
/// arrays, or the final fold inlined, LLVM's SLP vectoriser pairs lanes up and emits
/// scalar code.
pub(crate) struct Moments {
    shift: f64,
    lanes: [f64; 4 * LANES],
    tail: (f64, f64),
}

impl Moments {
    const WIDE: usize = 2 * LANES;

    pub(crate) fn new(shift: f64) -> Self {
        Moments {
            shift,
            lanes: [0.0; 4 * LANES],
            tail: (0.0, 0.0),
        }
    }

    /// Adds the values of `x` (lane by lane; a remainder shorter than the lanes to `tail`).
    #[inline(always)]
    pub(crate) fn add<T: Real>(&mut self, x: &[T]) {
        let (shift, wide) = (self.shift, Self::WIDE);
        let chunks = x.chunks_exact(wide);
        for v in chunks.remainder() {
            let d = v.to_f64_lossless() - shift;
            self.tail.0 += d;
            self.tail.1 += d * d;
        }
        for c in chunks {
            let mut d = [0.0f64; 4 * LANES];
            for l in 0..wide {
                d[l] = c[l].to_f64_lossless() - shift;
            }
            for l in 0..wide {
                d[wide + l] = d[l] * d[l];
            }
            for (a, d) in self.lanes.iter_mut().zip(d) {
                *a += d;
            }
        }
    }

    /// `(sum (x - shift), sum (x - shift)^2)` of everything added.
    #[inline(never)]
    pub(crate) fn sums(&self) -> (f64, f64) {
        let (s1, s2) = self.lanes.split_at(Self::WIDE);
        (
            s1.iter().sum::<f64>() + self.tail.0,
            s2.iter().sum::<f64>() + self.tail.1,
        )
    }
}

/// `(sum dy, sum dy * (x - mean))` of one plane, accumulated in `T` across 32 lanes per
/// sum and folded into f64 (inlined, so that a caller under [`with_widest_simd`] gets its
/// vectors). A plane holds at most 1,024 values (NB-201's 32x32), so each f32 lane adds at
/// most 32 terms; callers sum the planes in f64. f32 on AVX-512 takes
/// [`sum_dy_dev_avx512`]. The generic loop is laid out as [`Moments`]: both sums in one
/// lane array, folded out of line; with two arrays LLVM paired the sums up lane by lane
/// and the loop ran scalar (11 % of an exact NTK in perf).
#[inline(always)]
pub(crate) fn sum_dy_dev<T: Real>(x: &[T], dy: &[T], mean: T) -> (f64, f64) {
    const WIDE: usize = 4 * LANES;
    assert_eq!(x.len(), dy.len());
    #[cfg(target_arch = "x86_64")]
    if let (Some(xf), Some(dyf)) = (super::as_f32(x), super::as_f32(dy)) {
        if std::arch::is_x86_feature_detected!("avx512f") {
            let mean = mean.to_f64_lossless() as f32;
            // SAFETY: AVX-512F was detected; the lengths are equal (asserted).
            return unsafe { sum_dy_dev_avx512(xf, dyf, mean) };
        }
    }
    let mut lanes = [T::zero(); 2 * WIDE];
    let (xc, dc) = (x.chunks_exact(WIDE), dy.chunks_exact(WIDE));
    let (mut ts, mut tsx) = (0.0, 0.0);
    let mean64 = mean.to_f64_lossless();
    for (&xv, &dv) in xc.remainder().iter().zip(dc.remainder()) {
        let d = dv.to_f64_lossless();
        ts += d;
        tsx += d * (xv.to_f64_lossless() - mean64);
    }
    for (xs, ds) in xc.zip(dc) {
        let mut d = [T::zero(); 2 * WIDE];
        d[..WIDE].copy_from_slice(ds);
        for l in 0..WIDE {
            d[WIDE + l] = ds[l] * (xs[l] - mean);
        }
        for (a, d) in lanes.iter_mut().zip(d) {
            *a += d;
        }
    }
    let (s, sx) = fold_halves(&lanes);
    (s + ts, sx + tsx)
}

/// The f64 sums of the two halves of `lanes` (out of line, see [`sum_dy_dev`]).
#[inline(never)]
fn fold_halves<T: Real>(lanes: &[T; 8 * LANES]) -> (f64, f64) {
    let (a, b) = lanes.split_at(4 * LANES);
    let sum = |h: &[T]| h.iter().map(|v| v.to_f64_lossless()).sum();
    (sum(a), sum(b))
}

/// [`sum_dy_dev`] of f32 on AVX-512: two vectors per sum, `dy (x - mean)` by FMA, the tail
/// by masked loads (zero `dy` adds nothing); the 32 lanes added in f32, then in f64. The
/// generic loop kept its 64 lanes in a stack array here and ran on 256-bit halves.
///
/// # Safety
/// AVX-512F must be present; `x` and `dy` have equal lengths.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sum_dy_dev_avx512(x: &[f32], dy: &[f32], mean: f32) -> (f64, f64) {
    use std::arch::x86_64::*;
    let n = x.len();
    let (x, dy) = (x.as_ptr(), dy.as_ptr());
    let m = _mm512_set1_ps(mean);
    let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let (mut t0, mut t1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    while i + 32 <= n {
        let (x0, x1) = (_mm512_loadu_ps(x.add(i)), _mm512_loadu_ps(x.add(i + 16)));
        let (d0, d1) = (_mm512_loadu_ps(dy.add(i)), _mm512_loadu_ps(dy.add(i + 16)));
        s0 = _mm512_add_ps(s0, d0);
        s1 = _mm512_add_ps(s1, d1);
        t0 = _mm512_fmadd_ps(d0, _mm512_sub_ps(x0, m), t0);
        t1 = _mm512_fmadd_ps(d1, _mm512_sub_ps(x1, m), t1);
        i += 32;
    }
    while i < n {
        let mask: __mmask16 = (((1u32 << (n - i).min(16)) - 1) & 0xffff) as u16;
        let x0 = _mm512_maskz_loadu_ps(mask, x.add(i));
        let d0 = _mm512_maskz_loadu_ps(mask, dy.add(i));
        s0 = _mm512_add_ps(s0, d0);
        t0 = _mm512_fmadd_ps(d0, _mm512_sub_ps(x0, m), t0);
        i += 16;
    }
    let to_f64 = |v: __m512| {
        let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(
            _mm512_castps_pd(v),
            1,
        )));
        _mm512_reduce_add_pd(_mm512_add_pd(lo, hi))
    };
    (to_f64(_mm512_add_ps(s0, s1)), to_f64(_mm512_add_ps(t0, t1)))
}
