//! Backends (primitives on buffers) and the executor that runs a plan on them.
//!
//! A backend knows tensors and layers, never scores: the [`Backend`] trait is the list of
//! primitives the [`executor::Executor`] drives. Conventions every backend follows:
//! tensors are NCHW with the batch outermost; forward primitives overwrite their output;
//! backward primitives accumulate (`+=`) into their gradient outputs; per-sample gradient
//! outputs (`[n][len]`) are overwritten.

pub mod cpu;
pub mod cuda;
pub mod executor;
pub mod real;

pub use crate::net::geom::ConvGeom;
use crate::net::init::InitRule;
pub use executor::{
    BackwardOptions, BnStatistics, CodeBlock, Executor, ForwardStart, Gradients, ParamGrads,
    Streamed,
};
use rayon::prelude::*;
pub use real::Real;

/// How batch-norm gradients treat the batch statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BnGrad {
    /// The true gradient: through the mean and variance of the statistics group.
    Full,
    /// Mean and inverse standard deviation held constant: images decouple.
    FrozenStats,
}

/// Batch-norm geometry: `n` images of `c` channels of `hw` positions; statistics over
/// groups of `group` consecutive images (`group == n`: batch statistics; `group == 1`:
/// each image normalised as a batch of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnGeom {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub group: usize,
}

impl BnGeom {
    /// Number of statistics groups.
    pub fn groups(&self) -> usize {
        self.n / self.group
    }
}

/// How a channel primitive ([`Backend::channel_sums`], [`Backend::channel_gram`]) reads an
/// activation map: a buffer of `[images][c][h s][w s]` values seen as `[images][c s²][h][w]`
/// (PyTorch's `PixelUnshuffle(s)`: view channel `ch s² + dy s + dx` holds the pixels at
/// offset `(dy, dx)` of each `s x s` block of stored channel `ch`); `s = 1` is the map as
/// stored. The view's positions are its `h w` pixels, row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelView {
    /// Channels stored.
    pub c: usize,
    /// The view's height and width (the stored map's divided by `s`).
    pub h: usize,
    pub w: usize,
    /// Pixel-unshuffle factor (1: none).
    pub s: usize,
}

impl ChannelView {
    /// A map of `c` channels of `hw` positions, as stored.
    pub fn plain(c: usize, hw: usize) -> Self {
        ChannelView {
            c,
            h: 1,
            w: hw,
            s: 1,
        }
    }

    /// A map of `c` channels of `h x w` pixels pixel-unshuffled by `s` (`h`, `w`
    /// multiples of `s`).
    pub fn unshuffled(c: usize, h: usize, w: usize, s: usize) -> Self {
        assert!(
            s >= 1 && h.is_multiple_of(s) && w.is_multiple_of(s),
            "{h}x{w} is not a multiple of {s}"
        );
        ChannelView {
            c,
            h: h / s,
            w: w / s,
            s,
        }
    }

    /// Channels of the view (`c s²`).
    pub fn channels(&self) -> usize {
        self.c * self.s * self.s
    }

    /// Positions per view channel (`h w`).
    pub fn positions(&self) -> usize {
        self.h * self.w
    }

    /// Values per image, stored or viewed.
    pub fn image_len(&self) -> usize {
        self.channels() * self.positions()
    }

    /// The stored index of view channel `ch` at position `p` of image `image`.
    pub fn index(&self, image: usize, ch: usize, p: usize) -> usize {
        let s = self.s;
        let (stored, dy, dx) = (ch / (s * s), (ch / s) % s, ch % s);
        let (y, x) = (p / self.w, p % self.w);
        ((image * self.c + stored) * self.h * s + y * s + dy) * self.w * s + x * s + dx
    }
}

/// One statistic of [`Backend::channel_stats`], written at `at` of the accumulator.
pub enum ChannelStat<'a, B: Backend> {
    /// [`Backend::channel_sums`] of `a`: `2 C` values.
    Sums {
        a: &'a B::Buf,
        view: ChannelView,
        at: usize,
    },
    /// [`Backend::channel_gram`] of `a` and `b`: `Ca Cb` values.
    Gram {
        a: &'a B::Buf,
        va: ChannelView,
        b: &'a B::Buf,
        vb: ChannelView,
        centred: bool,
        at: usize,
    },
}

impl<B: Backend> ChannelStat<'_, B> {
    /// Where it is written: `at` and the number of values.
    pub fn range(&self) -> (usize, usize) {
        match *self {
            ChannelStat::Sums { view, at, .. } => (at, 2 * view.channels()),
            ChannelStat::Gram { va, vb, at, .. } => (at, va.channels() * vb.channels()),
        }
    }
}

/// Softmax cross-entropy reduction over the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Mean over images (the training loss).
    Mean,
    /// Sum over images: each image's gradient is that of its own loss.
    Sum,
}

/// A failure a backend recorded while running primitives (a device allocation or kernel
/// launch that failed): the primitives cannot return errors, so a backend keeps its first
/// failure and reports it through [`Backend::status`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {message}")]
pub struct BackendError {
    /// The primitive that failed.
    pub op: &'static str,
    pub message: String,
}

/// The primitives a plan is executed with.
pub trait Backend: Sync + 'static {
    /// The scalar the backend computes in.
    type Real: Real;
    /// A buffer of `Real`s in the backend's memory.
    type Buf: Default + Send + Sync;
    /// A buffer of u64 words: packed sign codes, exact counts.
    type Words: Default + Send;
    /// A buffer of f64: Gram accumulators.
    type Acc: Default + Send;

    /// The first failure of any primitive so far. After one, results are meaningless (a
    /// CUDA backend skips later work, as a CUDA context does after a sticky error); callers
    /// check this once per arch. Backends that cannot fail keep the default.
    fn status(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Returns once every primitive issued so far has finished (for timing: a GPU backend
    /// queues its work). Downloads wait by themselves; backends that compute before
    /// returning keep the default.
    fn synchronize(&self) {}

    /// How many passes through one forward (see [`Executor::backward_each`]) run faster side
    /// by side than one after another: 1 (the default) where they would queue on one device
    /// stream.
    fn parallel_passes(&self) -> usize {
        1
    }

    /// How many of those passes one lane runs in lockstep, layer by layer, so that
    /// [`Backend::conv_backward_weight_many`] can share work between them: 1 (the
    /// default) where nothing is shared.
    fn lockstep_passes(&self) -> usize {
        1
    }

    /// A zeroed buffer.
    fn alloc(&self, len: usize) -> Self::Buf;
    /// A buffer of `len` for an operation that overwrites all of it: its contents are
    /// unspecified (the default zeroes it; a pooling backend may hand back stale values).
    fn alloc_output(&self, len: usize) -> Self::Buf {
        self.alloc(len)
    }
    /// Takes back a buffer no longer needed, for a later `alloc` of its length (the
    /// default just frees it).
    fn release(&self, buf: Self::Buf) {
        drop(buf);
    }
    fn upload(&self, host: &[Self::Real]) -> Self::Buf;
    /// Parameters' initial values: buffer i holds `params[i].1` values of rule
    /// `params[i].0` under `seed`, each rounded to `Real` (what uploading
    /// [`InitRule::values`] gives, which the default does, drawing them in parallel; a
    /// device backend draws them where they live).
    fn draw_params(&self, seed: u64, params: &[(InitRule, usize)]) -> Vec<Self::Buf> {
        params
            .par_iter()
            .map(|(rule, len)| self.upload(&executor::to_real(&rule.values(seed, *len))))
            .collect()
    }
    fn download(&self, buf: &Self::Buf) -> Vec<Self::Real>;
    fn buf_len(&self, buf: &Self::Buf) -> usize;
    fn fill_zero(&self, buf: &mut Self::Buf);
    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf);
    /// `dst += src`.
    fn add_assign(&self, dst: &mut Self::Buf, src: &Self::Buf);
    /// Copies `src` into `dst[offset..offset + len(src)]`.
    fn copy_into(&self, src: &Self::Buf, dst: &mut Self::Buf, offset: usize);
    /// [`Backend::copy_into`] for each `(src, dst, offset)` of `copies` (the default does
    /// them one by one; a device backend in one launch).
    fn copy_into_many(&self, copies: &mut [(&Self::Buf, &mut Self::Buf, usize)]) {
        for (src, dst, offset) in copies.iter_mut() {
            self.copy_into(src, dst, *offset);
        }
    }

    /// Zeroed words.
    fn alloc_words(&self, len: usize) -> Self::Words;
    fn download_words(&self, words: &Self::Words) -> Vec<u64>;
    fn buf_len_words(&self, words: &Self::Words) -> usize;
    /// Zeroed f64 accumulator.
    fn alloc_acc(&self, len: usize) -> Self::Acc;
    fn download_acc(&self, acc: &Self::Acc) -> Vec<f64>;

    /// Sign codes of `n` images of `units` values: `[n][ceil(units/64)]` words, bit set
    /// where the value is > 0, padding bits zero.
    fn pack_signs(&self, x: &Self::Buf, n: usize, units: usize, codes: &mut Self::Words);
    /// `k[i][j] += weight * (units - hamming(code_i, code_j))` (`k` is `[n][n]`).
    fn hamming_gram_accumulate(
        &self,
        codes: &Self::Words,
        n: usize,
        units: usize,
        weight: u64,
        k: &mut Self::Words,
    );
    /// `g += a a^T` for `a = [n][len]` (`g` is `[n][n]`), products in `Real`, sums in f64.
    fn gram_accumulate(&self, a: &Self::Buf, n: usize, len: usize, g: &mut Self::Acc);
    /// Statistics of each column j of `a = [n][len]` over its n rows, in f64 (two passes),
    /// written at `at` of `out` (which holds at least `at + 2 * len`; the rest is kept):
    /// `out[at + j]` = mean |a[i][j]|, `out[at + len + j]` = the population variance of
    /// a[i][j].
    fn column_moments(&self, a: &Self::Buf, n: usize, len: usize, out: &mut Self::Acc, at: usize);
    /// `out = x + alpha * y` elementwise (parameters), computed in f64 from the widened values
    /// (the product and the sum each rounded) and rounded to `Real`.
    fn add_scaled(&self, x: &Self::Buf, alpha: f64, y: &Self::Buf, out: &mut Self::Buf);
    /// `out[at] += sum_i x[i] * (a[i] - b[i])` over equally long buffers (parameters or their
    /// gradients), in f64.
    fn difference_dot(
        &self,
        x: &Self::Buf,
        a: &Self::Buf,
        b: &Self::Buf,
        out: &mut Self::Acc,
        at: usize,
    );
    /// Sums over two equally long buffers (parameters or their gradients), in f64:
    /// `out[at] += sum_i |a[i] * b[i]|` and `out[at + 1] += sum_i b[i]^2`.
    fn abs_products_and_squares(
        &self,
        a: &Self::Buf,
        b: &Self::Buf,
        out: &mut Self::Acc,
        at: usize,
    );
    /// `out[at] += sum_r (sum_p a[r][p] * b[r][p])^2` for `a, b = [rows][len]` (activations
    /// or their gradients), in f64.
    fn row_dot_squares(
        &self,
        a: &Self::Buf,
        b: &Self::Buf,
        rows: usize,
        len: usize,
        out: &mut Self::Acc,
        at: usize,
    );

    /// `out[at] += ` the number of positions `i` where `a[i] != b[i]` (activations of equal
    /// length; a NaN differs from everything), exact in f64 up to 2^53: whether two
    /// activation buffers hold the same values, without downloading them.
    fn count_unequal(&self, a: &Self::Buf, b: &Self::Buf, out: &mut Self::Acc, at: usize);
    /// Per-channel sums over the first `n` images of activation map `a` (holding at least
    /// `n` images) read through `view`, in f64, written at `at` of `out` (which holds at
    /// least `at + 2 * view.channels()`; the rest is kept), with `C = view.channels()`:
    /// - `out[at + i]`: the sum of channel i's values over the images and positions (each
    ///   image's positions summed, then the images in order);
    /// - `out[at + C + i]`: how many (image, position) of channel i hold a value that
    ///   differs (`!=`) from the channel's value at position 0 of the same image: 0 exactly
    ///   when channel i is constant over the positions of each image.
    fn channel_sums(
        &self,
        a: &Self::Buf,
        view: ChannelView,
        n: usize,
        out: &mut Self::Acc,
        at: usize,
    );
    /// The channel Gram of the first `n` images of activation maps `a` (read through
    /// `va`) and `b` (through `vb`, of as many positions), in f64, written at `at` of `out`
    /// (`[Ca][Cb]` row-major, `Ca = va.channels()`, `Cb = vb.channels()`; the rest of
    /// `out` is kept):
    /// `out[at + i Cb + j] = sum over images and positions of (a_i - μa_i) (b_j - μb_j)`,
    /// where `μ` is each channel's mean over the `n` images and positions (its
    /// [`Backend::channel_sums`] sum over `n` times the positions) if `centred`, else 0.
    #[allow(clippy::too_many_arguments)]
    fn channel_gram(
        &self,
        a: &Self::Buf,
        va: ChannelView,
        b: &Self::Buf,
        vb: ChannelView,
        n: usize,
        centred: bool,
        out: &mut Self::Acc,
        at: usize,
    );

    /// Several [`Backend::channel_sums`] and [`Backend::channel_gram`] of the first `n`
    /// images, each written at its own `at` of `out` (the ranges must not overlap): the
    /// values each call alone gives. The default makes the calls in order; the CPU runs
    /// them side by side, as each one's sums are sequential (their order fixes the bits).
    fn channel_stats(&self, stats: &[ChannelStat<'_, Self>], n: usize, out: &mut Self::Acc)
    where
        Self: Sized,
    {
        for stat in stats {
            match *stat {
                ChannelStat::Sums { a, view, at } => self.channel_sums(a, view, n, out, at),
                ChannelStat::Gram {
                    a,
                    va,
                    b,
                    vb,
                    centred,
                    at,
                } => self.channel_gram(a, va, b, vb, n, centred, out, at),
            }
        }
    }

    fn conv_forward(&self, g: &ConvGeom, n: usize, x: &Self::Buf, w: &Self::Buf, y: &mut Self::Buf);
    fn conv_backward_data(
        &self,
        g: &ConvGeom,
        n: usize,
        dy: &Self::Buf,
        w: &Self::Buf,
        dx: &mut Self::Buf,
    );
    fn conv_backward_weight(
        &self,
        g: &ConvGeom,
        n: usize,
        x: &Self::Buf,
        dy: &Self::Buf,
        dw: &mut Self::Buf,
    );
    /// [`Backend::conv_backward_data`] for several output gradients through the same
    /// filters (the passes of one lockstep group, [`Executor::backward_each`]), adding to
    /// `dxs` or, without `accumulate`, overwriting them (their contents unspecified: the
    /// first gradient into a slot needs no zero fill). A backend may share work between
    /// the gradients (the default does them one by one).
    fn conv_backward_data_many(
        &self,
        g: &ConvGeom,
        n: usize,
        dys: &[&Self::Buf],
        w: &Self::Buf,
        dxs: &mut [&mut Self::Buf],
        accumulate: bool,
    ) {
        assert_eq!(
            dys.len(),
            dxs.len(),
            "conv_backward_data_many: one dx per dy"
        );
        for (dy, dx) in dys.iter().zip(dxs.iter_mut()) {
            if !accumulate {
                self.fill_zero(dx);
            }
            self.conv_backward_data(g, n, dy, w, dx);
        }
    }
    /// [`Backend::conv_backward_weight`] for several output gradients of the same input;
    /// a backend may share the work on `x` between them (the default does them one by one).
    fn conv_backward_weight_many(
        &self,
        g: &ConvGeom,
        n: usize,
        x: &Self::Buf,
        dys: &[&Self::Buf],
        dws: &mut [&mut Self::Buf],
    ) {
        assert_eq!(
            dys.len(),
            dws.len(),
            "conv_backward_weight_many: one dw per dy"
        );
        for (dy, dw) in dys.iter().zip(dws.iter_mut()) {
            self.conv_backward_weight(g, n, x, dy, dw);
        }
    }
    fn conv_weight_grad_per_sample(
        &self,
        g: &ConvGeom,
        n: usize,
        x: &Self::Buf,
        dy: &Self::Buf,
        out: &mut Self::Buf,
    );

    /// Training-mode batch norm; writes the group statistics (`[groups][c]`).
    #[allow(clippy::too_many_arguments)]
    fn bn_forward(
        &self,
        g: &BnGeom,
        eps: f64,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        y: &mut Self::Buf,
        mean: &mut Self::Buf,
        inv_std: &mut Self::Buf,
    );
    #[allow(clippy::too_many_arguments)]
    fn bn_backward(
        &self,
        g: &BnGeom,
        mode: BnGrad,
        x: &Self::Buf,
        gamma: &Self::Buf,
        mean: &Self::Buf,
        inv_std: &Self::Buf,
        dy: &Self::Buf,
        dx: Option<&mut Self::Buf>,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
    );
    /// The `dx` of [`Backend::bn_backward`] alone (accumulated), for backward passes that
    /// take the parameter gradients elsewhere or not at all. The default runs
    /// `bn_backward` into throw-away parameter gradients; a backend overrides it where
    /// `FrozenStats` then needs no reduction over `dy`.
    #[allow(clippy::too_many_arguments)]
    fn bn_backward_data(
        &self,
        g: &BnGeom,
        mode: BnGrad,
        x: &Self::Buf,
        gamma: &Self::Buf,
        mean: &Self::Buf,
        inv_std: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    ) {
        let mut dgamma = self.alloc(g.c);
        let mut dbeta = self.alloc(g.c);
        self.bn_backward(
            g,
            mode,
            x,
            gamma,
            mean,
            inv_std,
            dy,
            Some(dx),
            &mut dgamma,
            &mut dbeta,
        );
    }
    /// [`Backend::bn_backward_data`] as the first gradient into `dx`, whatever `dx` holds
    /// (as [`Backend::relu_backward_first`]).
    #[allow(clippy::too_many_arguments)]
    fn bn_backward_data_first(
        &self,
        g: &BnGeom,
        mode: BnGrad,
        x: &Self::Buf,
        gamma: &Self::Buf,
        mean: &Self::Buf,
        inv_std: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    ) {
        self.fill_zero(dx);
        self.bn_backward_data(g, mode, x, gamma, mean, inv_std, dy, dx);
    }
    #[allow(clippy::too_many_arguments)]
    fn bn_param_grad_per_sample(
        &self,
        g: &BnGeom,
        x: &Self::Buf,
        mean: &Self::Buf,
        inv_std: &Self::Buf,
        dy: &Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
    );

    fn relu_forward(&self, x: &Self::Buf, y: &mut Self::Buf);
    fn relu_backward(&self, x: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf);
    /// [`Backend::relu_backward`] as the first gradient into `dx`, whatever `dx` holds:
    /// exactly what it adds to a zeroed `dx`. The default zeroes first (free where a
    /// backend zeroes lazily, as the CUDA one does); the CPU writes without the fill.
    fn relu_backward_first(&self, x: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf) {
        self.fill_zero(dx);
        self.relu_backward(x, dy, dx);
    }

    #[allow(clippy::too_many_arguments)]
    fn avgpool3x3_forward(
        &self,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        x: &Self::Buf,
        y: &mut Self::Buf,
    );
    #[allow(clippy::too_many_arguments)]
    fn avgpool3x3_backward(
        &self,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    );
    #[allow(clippy::too_many_arguments)]
    fn avgpool2x2_forward(
        &self,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        x: &Self::Buf,
        y: &mut Self::Buf,
    );
    #[allow(clippy::too_many_arguments)]
    fn avgpool2x2_backward(
        &self,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    );
    fn global_avgpool_forward(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        x: &Self::Buf,
        y: &mut Self::Buf,
    );
    fn global_avgpool_backward(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    );

    #[allow(clippy::too_many_arguments)]
    fn linear_forward(
        &self,
        n: usize,
        fin: usize,
        fout: usize,
        x: &Self::Buf,
        w: &Self::Buf,
        b: &Self::Buf,
        y: &mut Self::Buf,
    );
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        &self,
        n: usize,
        fin: usize,
        fout: usize,
        x: &Self::Buf,
        w: &Self::Buf,
        dy: &Self::Buf,
        dx: Option<&mut Self::Buf>,
        dw: &mut Self::Buf,
        db: &mut Self::Buf,
    );
    #[allow(clippy::too_many_arguments)]
    fn linear_grad_per_sample(
        &self,
        n: usize,
        fin: usize,
        fout: usize,
        x: &Self::Buf,
        dy: &Self::Buf,
        dw: &mut Self::Buf,
        db: &mut Self::Buf,
    );

    /// Softmax cross-entropy of `logits` (`[n][classes]`); returns the loss and overwrites
    /// `dlogits` with its gradient.
    fn softmax_cross_entropy(
        &self,
        n: usize,
        classes: usize,
        logits: &Self::Buf,
        labels: &[usize],
        reduction: Reduction,
        dlogits: &mut Self::Buf,
    ) -> Self::Real;
}
