//! snip, grad_norm and fisher (Abdelfattah et al., ICLR 2021) from one forward and one
//! backward pass: a caller asking for several pays once.
//!
//! Setting: the executor's weights, the first `n` images of the batch (64 by default at the
//! caller), batch norm with batch statistics, softmax cross-entropy with the mean over the
//! batch, the full batch-norm gradient.
//!
//! - `snip` = sum over conv and linear weights of `|W * dL/dW|` (the released code's
//!   `|dL/dmask|` on conv and linear weights; the linear bias and BN parameters excluded).
//! - `grad_norm` = sum over conv and linear weight tensors of `||dL/dW||_2` (the released
//!   code's `weight.grad.norm()` per `Conv2d`/`Linear`).
//! - `fisher` = sum over channels `k` of `mean_n (sum_positions a * dL/da)^2 / 2`, where `a`
//!   is the OUTPUT of every conv and of the classifier (one channel per output unit there).
//!   That is where the released code hooks its activations (an identity inserted after
//!   `F.conv2d` / `F.linear`). spec/proxies.md paraphrases the sites as "ReLU-activated
//!   channels"; in NAS-Bench-201 every cell conv is ReLU -> conv -> BN, so the channels are
//!   those of convs fed by ReLUs, but `a` is the conv output (before BN), not a ReLU output.
//!   The ReLU outputs themselves could not be used faithfully anyway: a plan ReLU stands for
//!   several reference ReLU modules that share an input but not a gradient.
//!   The stem conv, the ResNet blocks' convs and shortcut convs count too (the released
//!   code hooks every `Conv2d`). Convs the plan prunes (identically zero input) and convs
//!   with no path to the logits contribute 0 in both.

use super::forward_loss_gradient;
use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use super::Score;
use crate::backend::{Backend, BackwardOptions, BnStatistics, Executor, ParamGrads, Reduction};
use crate::data::Batch;
use crate::net::plan::{ParamKind, Plan};
use crate::space::ClassKey;
use std::collections::HashMap;

/// The three saliency scores of one forward/backward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Saliency {
    pub snip: f64,
    pub grad_norm: f64,
    pub fisher: f64,
}

/// Conv and linear weights: the tensors the released code scores (`layer.weight` of every
/// `Conv2d` and `Linear`).
pub(crate) fn is_scored_weight(kind: ParamKind) -> bool {
    matches!(kind, ParamKind::ConvWeight | ParamKind::LinearWeight)
}

/// Batched gradients of the mean cross-entropy on the first `n` images, on the backend
/// (one buffer per plan parameter).
pub(crate) fn ce_gradients<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
) -> Vec<B::Buf> {
    let dlogits = forward_loss_gradient(exec, batch, n, BnStatistics::Batch, Reduction::Mean);
    let grads = exec.backward(dlogits, &BackwardOptions::default(), ParamGrads::Batched);
    grads.params.expect("batched gradients")
}

/// snip, grad_norm and fisher of the executor's network on the first `n` images of `batch`.
pub fn saliency<B: Backend>(exec: &mut Executor<'_, B>, batch: &Batch, n: usize) -> Saliency {
    saliency_with(exec, batch, n, true)
}

/// [`saliency`], with fisher only when `with_fisher` (else NaN): fisher reduces every
/// conv's activation and its gradient, as much work again as snip's.
///
/// The sums are taken by the backend into one f64 vector, read once: per scored weight
/// tensor `sum |W * dW|` and `sum dW^2`, then per conv or linear layer (with fisher)
/// `sum_{n,k} (sum_p a * da)^2`.
pub fn saliency_with<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    with_fisher: bool,
) -> Saliency {
    let plan: &Plan = exec.plan();
    let dlogits = forward_loss_gradient(exec, batch, n, BnStatistics::Batch, Reduction::Mean);
    let be = exec.backend();
    let scored: Vec<usize> = (0..plan.params.len())
        .filter(|&p| is_scored_weight(plan.params[p].kind))
        .collect();
    // The fisher sites, each with its place in `sums` after the weight tensors' pairs.
    // Per layer: where its fisher sum goes in `sums`, and its output's shape.
    let mut fisher_at = HashMap::new();
    if with_fisher {
        for (k, (layer, shape)) in plan.weighted_layers().into_iter().enumerate() {
            fisher_at.insert(layer, (2 * scored.len() + k, shape));
        }
    }
    let mut sums = be.alloc_acc(2 * scored.len() + fisher_at.len());
    let mut observe = |index: usize, y: &B::Buf, dy: &B::Buf| {
        if let Some(&(at, shape)) = fisher_at.get(&index) {
            be.row_dot_squares(y, dy, n * shape.c, shape.hw(), &mut sums, at);
        }
    };
    let grads = exec.backward_observed(
        dlogits,
        &BackwardOptions::default(),
        ParamGrads::Batched,
        Some(&mut observe),
    );
    let grads = grads.params.expect("batched gradients");
    for (k, &p) in scored.iter().enumerate() {
        be.abs_products_and_squares(&exec.params()[p], &grads[p], &mut sums, 2 * k);
    }
    let sums = be.download_acc(&sums);
    let (weights, fisher_sums) = sums.split_at(2 * scored.len());
    let snip = weights.chunks_exact(2).map(|s| s[0]).sum();
    let grad_norm = weights.chunks_exact(2).map(|s| s[1].sqrt()).sum();
    // Each site's sum over images and channels, as the mean over images / 2, added in the
    // order the backward pass reaches the sites.
    let fisher = if with_fisher {
        fisher_sums.iter().rev().map(|s| s / (2.0 * n as f64)).sum()
    } else {
        f64::NAN
    };
    Saliency {
        snip,
        grad_norm,
        fisher,
    }
}

/// snip. Dead value 0: conv and linear weight gradients are zero, so the sum of `|W * g|`
/// is 0 (likewise grad_norm's `||g||`).
pub struct Snip;

impl ScoreDef for Snip {
    const INFO: ScoreInfo = ScoreInfo {
        name: "snip",
        higher_is_better: true,
        class_key: ClassKey::Function,
        dead_value: Some(0.0),
        minibatch: Minibatch::Gradient,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        Ok(shared_saliency(arch, Self::INFO.minibatch).snip)
    }
}

/// grad_norm. Dead value 0, as [`Snip`].
pub struct GradNorm;

impl ScoreDef for GradNorm {
    const INFO: ScoreInfo = ScoreInfo {
        name: "grad_norm",
        higher_is_better: true,
        class_key: ClassKey::Function,
        dead_value: Some(0.0),
        minibatch: Minibatch::Gradient,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        Ok(shared_saliency(arch, Self::INFO.minibatch).grad_norm)
    }
}

/// fisher. Dead value: none (the classifier bias's gradient depends on the seed and labels).
pub struct Fisher;

impl ScoreDef for Fisher {
    const INFO: ScoreInfo = ScoreInfo {
        name: "fisher",
        higher_is_better: true,
        class_key: ClassKey::Function,
        dead_value: None,
        minibatch: Minibatch::Gradient,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        Ok(shared_saliency(arch, Self::INFO.minibatch).fisher)
    }
}

/// The saliency pass, computed once per arch for snip, grad_norm and fisher (fisher's
/// per-layer activations only when fisher is asked).
fn shared_saliency<B: Backend>(arch: &mut ArchScoring<'_, B>, minibatch: Minibatch) -> Saliency {
    let with_fisher = arch.asked.contains(&Score::Fisher);
    arch.shared(|arch| {
        let (data, n) = (arch.data, arch.settings.batch_of(minibatch));
        saliency_with(arch.exec(), data, n, with_fisher)
    })
}
