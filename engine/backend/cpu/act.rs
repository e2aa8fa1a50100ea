//! ReLU: `y = max(x, 0)`; backward `dx += dy * [x > 0]` with `x` the ReLU input.
//! Flat slices (any layout), parallel in chunks, each compiled for the widest vectors.

use rayon::prelude::*;

use super::elementwise::{with_widest_simd, PAR_CHUNK};
use crate::backend::Real;

/// `y = max(x, 0)`.
pub fn relu_forward<T: Real>(x: &[T], y: &mut [T]) {
    assert_eq!(x.len(), y.len(), "relu_forward: length mismatch");
    y.par_chunks_mut(PAR_CHUNK)
        .zip(x.par_chunks(PAR_CHUNK))
        .for_each(|(y, x)| {
            with_widest_simd(
                #[inline(always)]
                || {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = if x > T::zero() { x } else { T::zero() };
                    }
                },
            )
        });
}

/// `dx += dy * [x > 0]`.
pub fn relu_backward<T: Real>(x: &[T], dy: &[T], dx: &mut [T]) {
    relu_backward_into(x, dy, dx, true);
}

/// [`relu_backward`], or without `accumulate` the same values written over whatever `dx`
/// holds: `0 + g` is what adding to a zeroed `dx` gives, bit for bit (a -0 becomes +0).
pub fn relu_backward_into<T: Real>(x: &[T], dy: &[T], dx: &mut [T], accumulate: bool) {
    assert!(
        x.len() == dy.len() && x.len() == dx.len(),
        "relu_backward: length mismatch"
    );
    dx.par_chunks_mut(PAR_CHUNK)
        .zip(x.par_chunks(PAR_CHUNK).zip(dy.par_chunks(PAR_CHUNK)))
        .for_each(|(dx, (x, dy))| {
            with_widest_simd(
                #[inline(always)]
                || {
                    let pairs = dx.iter_mut().zip(x.iter().zip(dy));
                    let g = |x: T, dy: T| if x > T::zero() { dy } else { T::zero() };
                    if accumulate {
                        pairs.for_each(|(dx, (&x, &dy))| *dx += g(x, dy));
                    } else {
                        pairs.for_each(|(dx, (&x, &dy))| *dx = T::zero() + g(x, dy));
                    }
                },
            )
        });
}
