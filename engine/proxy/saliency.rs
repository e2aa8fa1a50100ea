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
use crate::backend::{
    Backend, BackwardOptions, BnStatistics, Executor, ParamGrads, Real, Reduction,
};
use crate::data::Batch;
use crate::net::plan::{Layer, ParamKind, Plan};

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

pub(crate) fn to_f64<R: Real>(values: &[R]) -> Vec<f64> {
    values.iter().map(|v| v.to_f64_lossless()).collect()
}

/// Batched gradients of the mean cross-entropy, in f64 on the host.
pub(crate) fn ce_gradients<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
) -> Vec<Vec<f64>> {
    let dlogits = forward_loss_gradient(exec, batch, n, BnStatistics::Batch, Reduction::Mean);
    let grads = exec.backward(dlogits, &BackwardOptions::default(), ParamGrads::Batched);
    let be = exec.backend();
    grads
        .params
        .expect("batched gradients")
        .iter()
        .map(|g| to_f64(&be.download(g)))
        .collect()
}

/// snip, grad_norm and fisher of the executor's network on the first `n` images of `batch`.
pub fn saliency<B: Backend>(exec: &mut Executor<'_, B>, batch: &Batch, n: usize) -> Saliency {
    saliency_with(exec, batch, n, true)
}

/// [`saliency`], with fisher only when `with_fisher` (else NaN): fisher reads every conv's
/// activation and its gradient on the host, which dominates snip's time on a GPU.
pub fn saliency_with<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    with_fisher: bool,
) -> Saliency {
    let plan: &Plan = exec.plan();
    let dlogits = forward_loss_gradient(exec, batch, n, BnStatistics::Batch, Reduction::Mean);
    let be = exec.backend();
    let mut fisher = if with_fisher { 0.0 } else { f64::NAN };
    let mut observe = |index: usize, y: &B::Buf, dy: &B::Buf| {
        let out = plan.layers[index].output();
        if with_fisher
            && matches!(
                plan.layers[index],
                Layer::Conv { .. } | Layer::Linear { .. }
            )
        {
            let shape = plan.slots[out];
            fisher += channel_fisher(&be.download(y), &be.download(dy), n, shape.c, shape.hw());
        }
    };
    let grads = exec.backward_observed(
        dlogits,
        &BackwardOptions::default(),
        ParamGrads::Batched,
        Some(&mut observe),
    );
    let grads = grads.params.expect("batched gradients");
    let (mut snip, mut grad_norm) = (0.0, 0.0);
    for ((spec, w), g) in plan.params.iter().zip(exec.params()).zip(&grads) {
        if !is_scored_weight(spec.kind) {
            continue;
        }
        let (w, g) = (be.download(w), be.download(g));
        snip += w
            .iter()
            .zip(&g)
            .map(|(w, g)| (w.to_f64_lossless() * g.to_f64_lossless()).abs())
            .sum::<f64>();
        grad_norm += g
            .iter()
            .map(|g| g.to_f64_lossless().powi(2))
            .sum::<f64>()
            .sqrt();
    }
    Saliency {
        snip,
        grad_norm,
        fisher,
    }
}

/// `sum_k mean_n (sum_p a[n][k][p] * da[n][k][p])^2 / 2` over `[n][c][hw]` tensors.
fn channel_fisher<R: Real>(a: &[R], da: &[R], n: usize, c: usize, hw: usize) -> f64 {
    let mut total = 0.0;
    for (a, da) in a.chunks_exact(hw).zip(da.chunks_exact(hw)) {
        let s: f64 = a
            .iter()
            .zip(da)
            .map(|(a, d)| a.to_f64_lossless() * d.to_f64_lossless())
            .sum();
        total += s * s;
    }
    debug_assert_eq!(a.len(), n * c * hw);
    total / (2.0 * n as f64)
}
