//! KNAS: the mean of the gradient Gram matrix (Xu et al., ICML 2021), the paper's quantity.
//!
//! Definition: `g_i` is the gradient of image `i`'s own cross-entropy loss with respect to
//! every parameter (biases and BN shifts included), at initialisation, each image
//! forwarded as a batch of one with BN in training mode (the executor's
//! [`BnStatistics::PerSample`]: all `n` images in one pass, each normalised by its own
//! statistics, true BN gradient within each image). `G[i][j] = <g_i, g_j>` (f64), built
//! by folding each parameter tensor's `[n][len]` per-sample block as it arrives; the
//! gradients are never all held at once. Higher is better.
//!
//! From one `G` ([`KnasStats`]), each normalised to be a moment of the gradient
//! distribution (independent of `n` in expectation):
//! - `mgm = mean_ij G[i][j] = ||(1/n) sum_i g_i||^2` (the paper's MGM);
//! - `trace = trace(G) / n`, the mean squared per-image gradient norm;
//! - `top_eigenvalue = lambda_max(G) / n`, the largest eigenvalue of the uncentred
//!   second-moment matrix `(1/n) sum_i g_i g_i^T`.
//!
//! `mgm` alone needs no Gram ([`mgm`]): with each image normalised by its own statistics,
//! the images are independent, so `sum_i g_i` is the ordinary batched gradient of the
//! summed losses, and `mean(G) = ||sum_i g_i||^2 / n^2` costs one backward pass with
//! batched weight gradients instead of per-image ones and an `n x n` Gram. `G` is still
//! built for `trace` and `top_eigenvalue`.
//!
//! Deviations from the released code (which uses 50 samples, the first 50 entries of the
//! first 11 weight tensors, and a cross-covariance of two halves of the samples): none from
//! the paper's definition; the batch size is the caller's.
//!
//! Known gap from the reference model: the plan prunes the conv and BN of an edge whose
//! input node is identically zero. Their weights have zero gradients, but such a BN's
//! output is its shift `beta` (zero at initialisation), summed into a live node, so in
//! PyTorch `beta` gets a gradient (the sum over positions of the node's gradient) that is
//! missing from `G` here. Only archs with a zero node feeding a conv edge are affected
//! (tests/golden/scores_gram: MGM 0.2 % lower on such an arch).

use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use super::{forward_loss_gradient, linalg};
use crate::backend::{
    Backend, BackwardOptions, BnGrad, BnStatistics, Executor, Gradients, ParamGrads, Reduction,
};
use crate::data::Batch;
use crate::space::ClassKey;

/// Summaries of one gradient Gram matrix (see the module docs for the normalisation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnasStats {
    /// Mean of all entries of `G`: `||mean_i g_i||^2`.
    pub mgm: f64,
    /// `trace(G) / n`.
    pub trace: f64,
    /// `lambda_max(G) / n`.
    pub top_eigenvalue: f64,
}

impl KnasStats {
    /// The summaries of `g` (`[n][n]` row-major).
    pub fn from_gram(g: &[f64], n: usize) -> KnasStats {
        assert_eq!(g.len(), n * n);
        let nf = n as f64;
        let top_eigenvalue = if g.iter().all(|v| v.is_finite()) {
            linalg::symmetric_eigenvalues(g, n)[n - 1] / nf
        } else {
            f64::NAN
        };
        KnasStats {
            mgm: g.iter().sum::<f64>() / (nf * nf),
            trace: (0..n).map(|i| g[i * n + i]).sum::<f64>() / nf,
            top_eigenvalue,
        }
    }
}

/// The KNAS setting, in one place: the first `n` images forwarded each normalised alone,
/// the summed cross-entropy, the full batch-norm gradient within each image; the
/// parameter gradients go where `param_grads` says.
fn knas_backward<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    param_grads: ParamGrads<'_, B>,
) -> Gradients<B> {
    let dlogits = forward_loss_gradient(exec, batch, n, BnStatistics::PerSample, Reduction::Sum);
    let options = BackwardOptions {
        bn_grad: BnGrad::Full,
        input_grad: false,
    };
    exec.backward(dlogits, &options, param_grads)
}

/// `G` (`[n][n]`, f64) of the per-image cross-entropy gradients of the first `n` images.
pub fn knas_gram<B: Backend>(exec: &mut Executor<'_, B>, batch: &Batch, n: usize) -> Vec<f64> {
    let be = exec.backend();
    let plan = exec.plan();
    let mut acc = be.alloc_acc(n * n);
    let mut fold = |p: usize, rows: &B::Buf| {
        be.gram_accumulate(rows, n, plan.params[p].len(), &mut acc);
    };
    knas_backward(exec, batch, n, ParamGrads::PerSample(&mut fold));
    be.download_acc(&acc)
}

/// MGM of the first `n` images without the Gram: `||sum_i g_i||^2 / n^2` from the
/// batched gradient of `sum_i loss_i` (each image normalised alone), squares summed in f64.
/// Equal to [`KnasStats::mgm`] of [`knas_gram`] up to f32 rounding of the batch sums.
pub fn mgm<B: Backend>(exec: &mut Executor<'_, B>, batch: &Batch, n: usize) -> f64 {
    let be = exec.backend();
    let grads = knas_backward(exec, batch, n, ParamGrads::Batched)
        .params
        .expect("batched gradients");
    // `||g||^2` of each tensor as a 1 x 1 Gram, on the backend, in f64.
    let mut norm2 = be.alloc_acc(1);
    for g in &grads {
        be.gram_accumulate(g, 1, be.buf_len(g), &mut norm2);
    }
    let nf = n as f64;
    be.download_acc(&norm2)[0] / (nf * nf)
}

/// MGM, trace and top eigenvalue of the first `n` images' gradient Gram.
pub fn knas<B: Backend>(exec: &mut Executor<'_, B>, batch: &Batch, n: usize) -> KnasStats {
    KnasStats::from_gram(&knas_gram(exec, batch, n), n)
}

/// KNAS's mean gradient magnitude, from the batched gradient. Dead value: none (the
/// classifier bias still has the gradient `softmax(b) - onehot(y)`: the same for every dead
/// arch, but a function of the seed's bias draw and the labels; likewise mgm_trace, mgm_eig).
pub struct Mgm;

impl ScoreDef for Mgm {
    const INFO: ScoreInfo = ScoreInfo {
        name: "mgm",
        higher_is_better: true,
        class_key: ClassKey::Function,
        dead_value: None,
        minibatch: Minibatch::Gradient,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        let (data, n) = (arch.data, arch.settings.batch_of(Self::INFO.minibatch));
        Ok(mgm(arch.exec(), data, n))
    }
}

/// The trace summary of KNAS's gradient Gram (one Gram shared with mgm_eig).
pub struct MgmTrace;

impl ScoreDef for MgmTrace {
    const INFO: ScoreInfo = ScoreInfo {
        name: "mgm_trace",
        higher_is_better: true,
        class_key: ClassKey::Function,
        dead_value: None,
        minibatch: Minibatch::Gradient,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        Ok(shared_knas(arch, Self::INFO.minibatch).trace)
    }
}

/// The top eigenvalue of KNAS's gradient Gram (one Gram shared with mgm_trace).
pub struct MgmEig;

impl ScoreDef for MgmEig {
    const INFO: ScoreInfo = ScoreInfo {
        name: "mgm_eig",
        higher_is_better: true,
        class_key: ClassKey::Function,
        dead_value: None,
        minibatch: Minibatch::Gradient,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        Ok(shared_knas(arch, Self::INFO.minibatch).top_eigenvalue)
    }
}

/// The Gram summaries on `minibatch`'s images, computed once per arch for mgm_trace and mgm_eig.
fn shared_knas<B: Backend>(arch: &mut ArchScoring<'_, B>, minibatch: Minibatch) -> KnasStats {
    arch.shared(|arch| {
        let (data, n) = (arch.data, arch.settings.batch_of(minibatch));
        knas(arch.exec(), data, n)
    })
}
