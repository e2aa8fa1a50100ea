//! Elementwise helpers: `dst += src`, plus the f64-accumulated reductions that batch norm
//! and pooling share (eight independent lanes so the compiler can vectorise them).

use rayon::prelude::*;

use crate::backend::Real;

/// Slices longer than this are split into chunks of this size for rayon.
pub(crate) const PAR_CHUNK: usize = 1 << 14;

const LANES: usize = 8;

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

/// Sum of `(x - mean)^2` accumulated in f64.
pub(crate) fn sum_sq_dev<T: Real>(x: &[T], mean: f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|v| (v.to_f64_lossless() - mean).powi(2))
        .sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            let d = v.to_f64_lossless() - mean;
            *a += d * d;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `(sum dy, sum dy * (x - mean))` accumulated in f64.
pub(crate) fn sum_dy_dev<T: Real>(x: &[T], dy: &[T], mean: f64) -> (f64, f64) {
    assert_eq!(x.len(), dy.len());
    let (mut s, mut sx) = ([0.0f64; LANES], [0.0f64; LANES]);
    let (xc, dc) = (x.chunks_exact(LANES), dy.chunks_exact(LANES));
    let (mut ts, mut tsx) = (0.0, 0.0);
    for (&xv, &dv) in xc.remainder().iter().zip(dc.remainder()) {
        let d = dv.to_f64_lossless();
        ts += d;
        tsx += d * (xv.to_f64_lossless() - mean);
    }
    for (xs, ds) in xc.zip(dc) {
        for l in 0..LANES {
            let d = ds[l].to_f64_lossless();
            s[l] += d;
            sx[l] += d * (xs[l].to_f64_lossless() - mean);
        }
    }
    (s.iter().sum::<f64>() + ts, sx.iter().sum::<f64>() + tsx)
}
