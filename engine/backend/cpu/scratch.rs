//! Per-thread scratch buffers (im2col columns, pooling temporaries, transformed filters),
//! reused across calls so hot loops over images never allocate.
//!
//! A buffer is taken out of its thread-local slot while in use, so a nested use of the same
//! slot on the same thread (rayon may run another task while a parallel gemm waits) simply
//! gets a fresh buffer instead of aliasing the first one. Two slots: per-image work, and
//! per-call buffers that the per-image tasks read (which the calling thread, itself running
//! some of those tasks, holds throughout).

use std::any::TypeId;
use std::cell::Cell;
use std::thread::LocalKey;

use crate::backend::Real;

thread_local! {
    static IMAGE: Cell<Vec<f64>> = const { Cell::new(Vec::new()) };
    static CALL: Cell<Vec<f64>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on a thread-local buffer of `len` elements with unspecified contents.
pub(crate) fn with_scratch<T: Real, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    with_slot(&IMAGE, len, f)
}

/// As [`with_scratch`], from a second slot, for a buffer held across a whole call while the
/// per-image tasks use [`with_scratch`].
pub(crate) fn with_call_scratch<T: Real, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    with_slot(&CALL, len, f)
}

fn with_slot<T: Real, R>(
    slot: &'static LocalKey<Cell<Vec<f64>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    assert!(
        TypeId::of::<T>() == TypeId::of::<f32>() || TypeId::of::<T>() == TypeId::of::<f64>(),
        "scratch buffers hold f32 or f64 only"
    );
    let mut buf = slot.with(Cell::take);
    let words = (len * std::mem::size_of::<T>()).div_ceil(std::mem::size_of::<f64>());
    if buf.len() < words {
        buf.resize(words, 0.0);
    }
    // SAFETY: T is f32 or f64 (asserted): alignment at most that of f64, every bit pattern
    // valid, and `words` f64s cover `len` elements of T. `buf` is owned here, so no alias.
    let view = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<T>(), len) };
    let result = f(view);
    slot.with(|cell| {
        let other = cell.take();
        cell.set(if other.len() > buf.len() { other } else { buf });
    });
    result
}
