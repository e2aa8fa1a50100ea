//! A bounds-checked wrapper over `gemm::gemm` for matrices stored in slices with arbitrary
//! non-negative row/column strides (so transposes are just swapped strides).
//!
//! `matmul` computes `dst = a * b` or, with `accumulate`, `dst += a * b`, where `a` is
//! `m x k`, `b` is `k x n` and `dst` is `m x n`. The crate's own convention is
//! `dst = alpha * dst + beta * lhs * rhs` when it reads `dst`; this wrapper hides it.

use super::super::Real;
pub use gemm::Parallelism;
use rayon::prelude::*;

/// Shape and strides of a matrix view into a slice: element `(i, j)` is at `i * rs + j * cs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl Mat {
    /// A dense row-major `rows x cols` matrix.
    pub fn rows(rows: usize, cols: usize) -> Self {
        Mat {
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of this view (no data moves).
    pub fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Number of slice elements the view reaches (0 for an empty matrix).
    fn span(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.rs + (self.cols - 1) * self.cs + 1
        }
    }
}

/// `dst (=|+=) a * b`. Panics if the shapes disagree or a view runs past its slice.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Real>(
    dst: &mut [T],
    d: Mat,
    accumulate: bool,
    a: &[T],
    am: Mat,
    b: &[T],
    bm: Mat,
    par: Parallelism,
) {
    assert!(
        am.rows == d.rows && bm.cols == d.cols && am.cols == bm.rows,
        "matmul shapes: dst {d:?}, a {am:?}, b {bm:?}"
    );
    assert!(
        d.span() <= dst.len(),
        "matmul: dst view {d:?} past {}",
        dst.len()
    );
    assert!(
        am.span() <= a.len(),
        "matmul: a view {am:?} past {}",
        a.len()
    );
    assert!(
        bm.span() <= b.len(),
        "matmul: b view {bm:?} past {}",
        b.len()
    );
    if d.rows == 0 || d.cols == 0 {
        return;
    }
    if am.cols == 0 {
        if !accumulate {
            for i in 0..d.rows {
                for j in 0..d.cols {
                    dst[i * d.rs + j * d.cs] = T::zero();
                }
            }
        }
        return;
    }
    // SAFETY: every index the views can reach was checked against its slice above; `dst`
    // is exclusively borrowed so it cannot alias `a` or `b`; T is f32 or f64, which the
    // crate supports.
    unsafe {
        gemm::gemm(
            d.rows,
            d.cols,
            am.cols,
            dst.as_mut_ptr(),
            d.cs as isize,
            d.rs as isize,
            accumulate,
            a.as_ptr(),
            am.cs as isize,
            am.rs as isize,
            b.as_ptr(),
            bm.cs as isize,
            bm.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        )
    }
}

/// Runs `f(i, out_i, parallelism)` over the per-image chunks `out_i` of `out`: images in
/// parallel when there are enough of them, else one at a time with parallel products.
pub(super) fn for_each_image<T: Real>(
    out: &mut [T],
    per_image: usize,
    f: impl Fn(usize, &mut [T], Parallelism) + Send + Sync,
) {
    if per_image == 0 {
        return;
    }
    if out.len() / per_image >= rayon::current_num_threads() {
        out.par_chunks_mut(per_image)
            .enumerate()
            .for_each(|(i, o)| f(i, o, Parallelism::None));
    } else {
        for (i, o) in out.chunks_mut(per_image).enumerate() {
            f(i, o, Parallelism::Rayon(0));
        }
    }
}
