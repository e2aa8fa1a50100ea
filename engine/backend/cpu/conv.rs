//! 2-d convolution without bias, as PyTorch `Conv2d(bias=False)`:
//! `y[n][co][oy][ox] = sum_{ci,ki,kj} w[co][ci][ki][kj] * x[n][ci][oy*s - p + ki][ox*s - p + kj]`
//! (out-of-bounds taps read zero).
//!
//! Each image is one GEMM: with `col = im2col(x_n)` of shape `[cin*k*k][oh*ow]` (row
//! `(ci*k + ki)*k + kj`), `y_n = W col` where `W` is the `[cout][cin*k*k]` weight matrix.
//! Backward data is `col2im(W^T dy_n)`; backward weight is `sum_n dy_n col^T`, computed
//! transposed (`col dy_n^T`) for speed and transposed back once. A 1x1, stride-1,
//! pad-0 convolution uses the image's `[cin][h*w]` matrix directly as `col`.
//!
//! 3x3 stride-1 convolutions with at least 16 channels in and out (forward, and backward data through the
//! flipped-kernel forward) use Winograd F(2x2, 3x3) instead (winograd.rs): 2.25x fewer
//! multiplies (in f32 with AVX-512, the fused kernels of winograd_fused.rs, also for the
//! batched weight gradient). [`ConvAlgo`] can force either algorithm.
//!
//! Images are processed in parallel with single-threaded GEMMs when there are at least as
//! many images as threads; otherwise images run in turn and each GEMM is parallel.

use rayon::prelude::*;

use super::elementwise::add_assign;
use super::gemm::{for_each_image, matmul, Mat, Parallelism};
use super::scratch::{with_call_scratch, with_scratch};
use super::winograd;
use crate::backend::{ConvGeom, Real};

/// How a convolution's forward, stride-1 backward data and batched weight gradient are
/// computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvAlgo {
    /// Winograd where it applies and pays (3x3, stride 1, enough channels), else im2col.
    #[default]
    Auto,
    /// im2col + GEMM everywhere.
    Im2col,
    /// Winograd wherever it applies (3x3, stride 1), whatever the channel counts.
    Winograd,
}

impl ConvAlgo {
    fn uses_winograd(self, g: &ConvGeom) -> bool {
        match self {
            ConvAlgo::Auto => winograd::pays(g),
            ConvAlgo::Im2col => false,
            ConvAlgo::Winograd => winograd::applies(g),
        }
    }
}

impl ConvGeom {
    /// Rows of the im2col matrix.
    fn col_rows(&self) -> usize {
        self.cin * self.k * self.k
    }
    fn out_hw(&self) -> usize {
        self.out_h() * self.out_w()
    }
    /// Whether the image matrix is already the im2col matrix.
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    /// The `col` matrix of one image.
    fn col_mat(&self) -> Mat {
        Mat::rows(self.col_rows(), self.out_hw())
    }
    /// Scratch elements im2col needs (none for the direct 1x1 path).
    fn col_len(&self) -> usize {
        if self.pointwise() {
            0
        } else {
            self.col_rows() * self.out_hw()
        }
    }
    /// The `col` matrix of image `xi`: the image itself, or its im2col written into `col`.
    fn col_of<'a, T: Real>(&self, xi: &'a [T], col: &'a mut [T]) -> &'a [T] {
        if self.pointwise() {
            xi
        } else {
            im2col(self, xi, col);
            col
        }
    }

    fn check(&self) {
        assert!(
            self.k >= 1
                && self.stride >= 1
                && self.h + 2 * self.pad >= self.k
                && self.w + 2 * self.pad >= self.k,
            "invalid conv geometry {self:?}"
        );
    }

    /// Output columns `[lo, hi)` whose tap at kernel column `kj` falls inside the image.
    fn valid_cols(&self, kj: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = p.saturating_sub(kj).div_ceil(s);
        let hi = (self.w + p)
            .saturating_sub(kj)
            .div_ceil(s)
            .min(self.out_w());
        (lo, hi.max(lo))
    }

    /// Input row of output row `oy` at kernel row `ki`, if inside the image.
    fn in_row(&self, oy: usize, ki: usize) -> Option<usize> {
        (oy * self.stride + ki)
            .checked_sub(self.pad)
            .filter(|&r| r < self.h)
    }
}

/// Fills `col` (`[cin*k*k][oh*ow]`) from one image `x` (`[cin][h][w]`).
fn im2col<T: Real>(g: &ConvGeom, x: &[T], col: &mut [T]) {
    let (ow, s) = (g.out_w(), g.stride);
    if s == 1 && ow == g.w && g.out_h() == g.h {
        return im2col_same(g, x, col);
    }
    let mut rows = col.chunks_exact_mut(g.out_hw());
    for plane in x.chunks_exact(g.h * g.w) {
        for ki in 0..g.k {
            for kj in 0..g.k {
                let row = rows.next().expect("col has cin*k*k rows");
                let (lo, hi) = g.valid_cols(kj);
                for (oy, out) in row.chunks_exact_mut(ow).enumerate() {
                    let Some(iy) = g.in_row(oy, ki) else {
                        out.fill(T::zero());
                        continue;
                    };
                    out[..lo].fill(T::zero());
                    out[hi..].fill(T::zero());
                    if hi == lo {
                        continue;
                    }
                    let src = &plane[iy * g.w + lo * s + kj - g.pad..(iy + 1) * g.w];
                    if s == 1 {
                        out[lo..hi].copy_from_slice(&src[..hi - lo]);
                    } else {
                        for (o, &v) in out[lo..hi].iter_mut().zip(src.iter().step_by(s)) {
                            *o = v;
                        }
                    }
                }
            }
        }
    }
}

/// [`im2col`] of a stride-1 conv whose output has the input's size: each `col` row is the
/// plane shifted by `(ki - pad) * w + (kj - pad)`, so it is one copy of the valid rows
/// (instead of one short copy per output row), then the out-of-image rows and columns
/// zeroed, which also covers the wrapped-around and clamped ends of that copy.
fn im2col_same<T: Real>(g: &ConvGeom, x: &[T], col: &mut [T]) {
    let (w, hw) = (g.w, g.h * g.w);
    let mut rows = col.chunks_exact_mut(hw);
    for plane in x.chunks_exact(hw) {
        for ki in 0..g.k {
            // Output rows whose input row `oy + ki - pad` is inside the image.
            let row_lo = g.pad.saturating_sub(ki);
            let row_hi = (g.h + g.pad).saturating_sub(ki).min(g.h).max(row_lo);
            for kj in 0..g.k {
                let out = rows.next().expect("col has cin*k*k rows");
                let (lo, hi) = g.valid_cols(kj);
                out[..row_lo * w].fill(T::zero());
                out[row_hi * w..].fill(T::zero());
                if row_hi == row_lo {
                    continue;
                }
                // Source index of out[i] is i + shift; clamp the copy to the plane.
                let shift = (ki * w + kj) as isize - (g.pad * w + g.pad) as isize;
                let start = (row_lo * w).max((-shift).max(0) as usize);
                let end = (row_hi * w).min((hw as isize - shift) as usize);
                if start < end {
                    let src = (start as isize + shift) as usize;
                    out[start..end].copy_from_slice(&plane[src..src + end - start]);
                }
                // Column by column (at most `pad` of each): a fill per line would be a
                // memset call per line.
                let valid = &mut out[row_lo * w..row_hi * w];
                for c in (0..lo).chain(hi..w) {
                    valid[c..]
                        .iter_mut()
                        .step_by(w)
                        .for_each(|v| *v = T::zero());
                }
            }
        }
    }
}

/// Adds `col` (`[cin*k*k][oh*ow]`) back onto the image gradient `dx` (`[cin][h][w]`).
fn col2im_add<T: Real>(g: &ConvGeom, col: &[T], dx: &mut [T]) {
    let (ow, s) = (g.out_w(), g.stride);
    let mut rows = col.chunks_exact(g.out_hw());
    for plane in dx.chunks_exact_mut(g.h * g.w) {
        for ki in 0..g.k {
            for kj in 0..g.k {
                let row = rows.next().expect("col has cin*k*k rows");
                let (lo, hi) = g.valid_cols(kj);
                for (oy, src) in row.chunks_exact(ow).enumerate() {
                    let Some(iy) = g.in_row(oy, ki).filter(|_| hi > lo) else {
                        continue;
                    };
                    let dst = &mut plane[iy * g.w + lo * s + kj - g.pad..(iy + 1) * g.w];
                    for (d, &v) in dst.iter_mut().step_by(s).zip(&src[lo..hi]) {
                        *d += v;
                    }
                }
            }
        }
    }
}

/// Asserts a valid geometry and each `(name, actual, expected)` slice length.
fn check(g: &ConvGeom, op: &str, lens: [(&str, usize, usize); 3]) {
    g.check();
    for (name, got, want) in lens {
        assert_eq!(got, want, "{op}: length of {name}");
    }
}

/// `y = conv(x, w)`; `x` is `[n][cin][h][w]`, `y` is `[n][cout][oh][ow]` (overwritten).
pub fn conv2d_forward<T: Real>(g: &ConvGeom, n: usize, x: &[T], w: &[T], y: &mut [T]) {
    conv2d_forward_with(ConvAlgo::Auto, g, n, x, w, y);
}

/// [`conv2d_forward`] with the algorithm chosen by `algo`.
pub fn conv2d_forward_with<T: Real>(
    algo: ConvAlgo,
    g: &ConvGeom,
    n: usize,
    x: &[T],
    w: &[T],
    y: &mut [T],
) {
    check(
        g,
        "conv2d_forward",
        [
            ("x", x.len(), n * g.in_len()),
            ("w", w.len(), g.weight_len()),
            ("y", y.len(), n * g.out_len()),
        ],
    );
    if algo.uses_winograd(g) {
        let kk = g.k * g.k;
        let filter = |co: usize, ci: usize| {
            let f = &w[(co * g.cin + ci) * kk..][..kk];
            std::array::from_fn(|t| f[t])
        };
        winograd_images(g, n, &[x], filter, &mut [y], false);
    } else {
        forward_images(g, x, w, y, false);
    }
}

/// `ys[s] (=|+=) conv(xs[s], w)` by Winograd, the 3x3 filters given as `filter(co, ci)`
/// and transformed once for all the inputs.
fn winograd_images<T: Real>(
    g: &ConvGeom,
    n: usize,
    xs: &[&[T]],
    filter: impl Fn(usize, usize) -> [T; 9],
    ys: &mut [&mut [T]],
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(xf), Some(mut yf)) = (
        xs.iter()
            .map(|x| super::as_f32(x))
            .collect::<Option<Vec<_>>>(),
        ys.iter_mut()
            .map(|y| super::as_f32_mut(y))
            .collect::<Option<Vec<_>>>(),
    ) {
        if super::winograd4_fused::applies(g) {
            let filter64 = |co: usize, ci: usize| filter(co, ci).map(T::to_f64_lossless);
            return super::winograd4_fused::forward(g, n, &xf, filter64, &mut yf, accumulate);
        }
    }
    with_call_scratch(winograd::filters_len(g), |u| {
        winograd::transform_filters(g, filter, u);
        for (x, y) in xs.iter().zip(ys.iter_mut()) {
            winograd::forward(g, n, x, u, y, accumulate);
        }
    });
}

/// `y (=|+=) conv(x, w)` image by image, lengths already checked.
fn forward_images<T: Real>(g: &ConvGeom, x: &[T], w: &[T], y: &mut [T], accumulate: bool) {
    let wm = Mat::rows(g.cout, g.col_rows());
    let ym = Mat::rows(g.cout, g.out_hw());
    for_each_image(y, g.out_len(), |i, yi, par| {
        let xi = &x[i * g.in_len()..(i + 1) * g.in_len()];
        with_scratch(g.col_len(), |col| {
            matmul(
                yi,
                ym,
                accumulate,
                w,
                wm,
                g.col_of(xi, col),
                g.col_mat(),
                par,
            );
        });
    });
}

/// `dx += conv^T(dy, w)`; `dy` is `[n][cout][oh][ow]`, `dx` is `[n][cin][h][w]`.
pub fn conv2d_backward_data<T: Real>(g: &ConvGeom, n: usize, dy: &[T], w: &[T], dx: &mut [T]) {
    conv2d_backward_data_with(ConvAlgo::Auto, g, n, dy, w, dx);
}

/// [`conv2d_backward_data`] with the algorithm of its stride-1 forward chosen by `algo`.
pub fn conv2d_backward_data_with<T: Real>(
    algo: ConvAlgo,
    g: &ConvGeom,
    n: usize,
    dy: &[T],
    w: &[T],
    dx: &mut [T],
) {
    conv2d_backward_data_many_with(algo, g, n, &[dy], w, &mut [dx], true);
}

/// `dxs[s] (+)= conv^T(dys[s], w)` for several output gradients through the same filters
/// (the passes of a multi-seed backward): what [`conv2d_backward_data_with`] computes for
/// each, with the Winograd filters transformed once for all of them. Without
/// `accumulate`, `dxs` are overwritten (their contents may be anything).
pub fn conv2d_backward_data_many_with<T: Real>(
    algo: ConvAlgo,
    g: &ConvGeom,
    n: usize,
    dys: &[&[T]],
    w: &[T],
    dxs: &mut [&mut [T]],
    accumulate: bool,
) {
    assert_eq!(
        dys.len(),
        dxs.len(),
        "conv2d_backward_data: gradients and outputs"
    );
    for (dy, dx) in dys.iter().zip(dxs.iter()) {
        check(
            g,
            "conv2d_backward_data",
            [
                ("dy", dy.len(), n * g.out_len()),
                ("w", w.len(), g.weight_len()),
                ("dx", dx.len(), n * g.in_len()),
            ],
        );
    }
    if g.stride == 1 && !g.pointwise() && g.pad < g.k {
        // Stride 1: dx is dy correlated with the spatially flipped, transposed kernel at
        // pad k-1-p, a forward convolution whose GEMM has depth cout*k*k, much faster than
        // W^T dy (depth cout) followed by a scattering col2im.
        let transposed = ConvGeom {
            cin: g.cout,
            cout: g.cin,
            h: g.out_h(),
            w: g.out_w(),
            k: g.k,
            stride: 1,
            pad: g.k - 1 - g.pad,
        };
        let kk = g.k * g.k;
        if algo.uses_winograd(&transposed) {
            // Filter (ci, co) of the transposed conv is w[co][ci] reversed.
            let filter = |ci: usize, co: usize| {
                let f = &w[(co * g.cin + ci) * kk..][..kk];
                std::array::from_fn(|t| f[kk - 1 - t])
            };
            winograd_images(&transposed, n, dys, filter, dxs, accumulate);
            return;
        }
        let mut flipped = vec![T::zero(); w.len()];
        for co in 0..g.cout {
            for ci in 0..g.cin {
                let src = &w[(co * g.cin + ci) * kk..][..kk];
                let dst = &mut flipped[(ci * g.cout + co) * kk..][..kk];
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
        }
        for (dy, dx) in dys.iter().zip(dxs.iter_mut()) {
            forward_images(&transposed, dy, &flipped, dx, accumulate);
        }
        return;
    }
    for (dy, dx) in dys.iter().zip(dxs.iter_mut()) {
        if !accumulate {
            dx.fill(T::zero());
        }
        backward_data_scattered(g, dy, w, dx);
    }
}

/// `dx += W^T dy` then col2im, image by image: the strided and pointwise convs.
fn backward_data_scattered<T: Real>(g: &ConvGeom, dy: &[T], w: &[T], dx: &mut [T]) {
    let wt = Mat::rows(g.cout, g.col_rows()).t();
    let dym = Mat::rows(g.cout, g.out_hw());
    for_each_image(dx, g.in_len(), |i, dxi, par| {
        let dyi = &dy[i * g.out_len()..(i + 1) * g.out_len()];
        if g.pointwise() {
            matmul(dxi, g.col_mat(), true, w, wt, dyi, dym, par);
        } else {
            with_scratch(g.col_rows() * g.out_hw(), |col| {
                matmul(col, g.col_mat(), false, w, wt, dyi, dym, par);
                col2im_add(g, col, dxi);
            });
        }
    });
}

/// `t (=|+=) col(x_i) dy_i^T`: image `i`'s weight gradient, transposed to `[cin*k*k][cout]`.
///
/// This orientation is ~10x faster in the `gemm` crate than `dy_i col^T` into `[cout][cin*k*k]`,
/// whose large, k-contiguous left operand it packs slowly. `col` is im2col scratch.
fn weight_grad_t<T: Real>(
    g: &ConvGeom,
    xi: &[T],
    dyi: &[T],
    col: &mut [T],
    t: &mut [T],
    accumulate: bool,
    par: Parallelism,
) {
    let tm = Mat::rows(g.col_rows(), g.cout);
    let dyt = Mat::rows(g.cout, g.out_hw()).t();
    matmul(
        t,
        tm,
        accumulate,
        g.col_of(xi, col),
        g.col_mat(),
        dyi,
        dyt,
        par,
    );
}

/// `dw[co][r] (=|+=) t[r][co]`.
fn untranspose<T: Real>(g: &ConvGeom, t: &[T], dw: &mut [T], accumulate: bool) {
    for (co, row) in dw.chunks_exact_mut(g.col_rows()).enumerate() {
        for (d, &v) in row.iter_mut().zip(t[co..].iter().step_by(g.cout)) {
            *d = if accumulate { *d + v } else { v };
        }
    }
}

/// Images per partial sum of the batched weight gradient (a constant, not the thread
/// count, so that the summation order is fixed).
const WEIGHT_GRAD_CHUNK: usize = 8;

/// `dw += sum_n dy_n col(x_n)^T`; partial sums over fixed chunks of images, then one
/// reduction in chunk order.
pub fn conv2d_backward_weight<T: Real>(g: &ConvGeom, n: usize, x: &[T], dy: &[T], dw: &mut [T]) {
    conv2d_backward_weight_with(ConvAlgo::Auto, g, n, x, dy, dw);
}

/// [`conv2d_backward_weight`] with the algorithm chosen by `algo` (Winograd: the same
/// fixed chunks of images).
pub fn conv2d_backward_weight_with<T: Real>(
    algo: ConvAlgo,
    g: &ConvGeom,
    n: usize,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
) {
    conv2d_backward_weight_many_with(algo, g, n, x, &[dy], &mut [dw]);
}

/// `dws[s] += sum_n dys[s]_n col(x_n)^T` for several output gradients of the same input
/// (the passes of a multi-seed backward): what [`conv2d_backward_weight_with`] computes
/// for each, bit for bit, with the Winograd transforms of `x` done once for all of them.
pub fn conv2d_backward_weight_many_with<T: Real>(
    algo: ConvAlgo,
    g: &ConvGeom,
    n: usize,
    x: &[T],
    dys: &[&[T]],
    dws: &mut [&mut [T]],
) {
    assert_eq!(
        dys.len(),
        dws.len(),
        "conv2d_backward_weight: gradients and outputs"
    );
    for (dy, dw) in dys.iter().zip(dws.iter()) {
        check(
            g,
            "conv2d_backward_weight",
            [
                ("x", x.len(), n * g.in_len()),
                ("dy", dy.len(), n * g.out_len()),
                ("dw", dw.len(), g.weight_len()),
            ],
        );
    }
    if algo.uses_winograd(g) {
        #[cfg(target_arch = "x86_64")]
        if let (Some(xf), Some(dyf), Some(mut dwf)) = (
            super::as_f32(x),
            dys.iter()
                .map(|dy| super::as_f32(dy))
                .collect::<Option<Vec<_>>>(),
            dws.iter_mut()
                .map(|dw| super::as_f32_mut(dw))
                .collect::<Option<Vec<_>>>(),
        ) {
            if super::winograd4_fused::applies_weight_grad(g) {
                return super::winograd4_fused::backward_weight(
                    g,
                    n,
                    xf,
                    &dyf,
                    WEIGHT_GRAD_CHUNK,
                    &mut dwf,
                );
            }
        }
        return winograd::backward_weight(g, n, x, dys, WEIGHT_GRAD_CHUNK, dws);
    }
    for (dy, dw) in dys.iter().zip(dws.iter_mut()) {
        backward_weight_im2col(g, n, x, dy, dw);
    }
}

/// [`conv2d_backward_weight`] by im2col and GEMM, lengths already checked.
fn backward_weight_im2col<T: Real>(g: &ConvGeom, n: usize, x: &[T], dy: &[T], dw: &mut [T]) {
    let (xi, dyi) = (
        |i: usize| &x[i * g.in_len()..(i + 1) * g.in_len()],
        |i: usize| &dy[i * g.out_len()..(i + 1) * g.out_len()],
    );
    if n > WEIGHT_GRAD_CHUNK {
        // Fixed chunks of images, each summed in image order, then the chunk sums in chunk
        // order: the same additions for any thread count, so scores do not depend on it.
        let chunks = n.div_ceil(WEIGHT_GRAD_CHUNK);
        let partials: Vec<Vec<T>> = (0..chunks)
            .into_par_iter()
            .map(|c| {
                let mut t = vec![T::zero(); g.weight_len()];
                let images = c * WEIGHT_GRAD_CHUNK..((c + 1) * WEIGHT_GRAD_CHUNK).min(n);
                with_scratch(g.col_len(), |col| {
                    for i in images {
                        weight_grad_t(g, xi(i), dyi(i), col, &mut t, true, Parallelism::None);
                    }
                });
                t
            })
            .collect();
        let mut total = vec![T::zero(); g.weight_len()];
        for t in &partials {
            add_assign(&mut total, t);
        }
        untranspose(g, &total, dw, true);
    } else if n > 0 {
        with_scratch(g.col_len() + g.weight_len(), |buf| {
            let (col, t) = buf.split_at_mut(g.col_len());
            for i in 0..n {
                weight_grad_t(g, xi(i), dyi(i), col, t, i > 0, Parallelism::Rayon(0));
            }
            untranspose(g, t, dw, true);
        });
    }
}

/// `out[i] = dy_i col(x_i)^T`, the weight gradient of each image alone (`[n][weight_len]`).
pub fn conv2d_weight_grad_per_sample<T: Real>(
    g: &ConvGeom,
    n: usize,
    x: &[T],
    dy: &[T],
    out: &mut [T],
) {
    check(
        g,
        "conv2d_weight_grad_per_sample",
        [
            ("x", x.len(), n * g.in_len()),
            ("dy", dy.len(), n * g.out_len()),
            ("out", out.len(), n * g.weight_len()),
        ],
    );
    for_each_image(out, g.weight_len(), |i, oi, par| {
        let xi = &x[i * g.in_len()..(i + 1) * g.in_len()];
        let dyi = &dy[i * g.out_len()..(i + 1) * g.out_len()];
        with_scratch(g.col_len() + g.weight_len(), |buf| {
            let (col, t) = buf.split_at_mut(g.col_len());
            weight_grad_t(g, xi, dyi, col, t, false, par);
            untranspose(g, t, oi, false);
        });
    });
}
