//! synflow (Tanaka et al., NeurIPS 2020), as the zero-cost proxies of Abdelfattah et al.
//! (ICLR 2021) compute it.
//!
//! Every parameter is replaced by its absolute value, batch norm is bypassed (the released
//! code builds the network with `bn=False`), the input is ONE all-ones image, and
//! `R = sum of the logits`; score = sum over conv and linear weights of `W * dR/dW`
//! (the released code's `|W * grad|` on `Conv2d`/`Linear` weights: the same, every factor
//! being non-negative). The classifier bias enters `R` as `|b|` but, being additive at the
//! output, changes no weight gradient; it is not scored (the released code scores
//! `layer.weight` only). BN gamma and beta are unused (bypassed), as in the released code.
//!
//! Always in f64 on the CPU: `R` is a product over about 20 layers of sums of absolute
//! weights and overflows, or loses the small terms, in f32.

use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use super::saliency::is_scored_weight;
use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::backend::{BackwardOptions, BnStatistics, Executor, ParamGrads};
use crate::data::Seeds;
use crate::net::init::init_params;
use crate::net::plan::Plan;
use crate::space::ClassKey;

/// synflow of `plan` with the deterministic initial weights of `seed`.
pub fn synflow(plan: &Plan, seed: u64) -> f64 {
    synflow_with_params(plan, init_params(seed, plan))
}

/// synflow with given weights (one vector per plan parameter; absolute values are taken here).
pub fn synflow_with_params(plan: &Plan, params: Vec<Vec<f64>>) -> f64 {
    let be = CpuBackend::<f64>::new();
    let params: Vec<Vec<f64>> = params
        .into_iter()
        .map(|p| p.into_iter().map(f64::abs).collect())
        .collect();
    let mut exec = Executor::new(&be, plan, params);
    exec.forward(vec![1.0; plan.input_len()], 1, BnStatistics::Bypass);
    let dlogits = vec![1.0; plan.output_len()];
    let grads = exec
        .backward(dlogits, &BackwardOptions::default(), ParamGrads::Batched)
        .params
        .expect("batched gradients");
    plan.params
        .iter()
        .zip(exec.params())
        .zip(&grads)
        .filter(|((spec, _), _)| is_scored_weight(spec.kind))
        .map(|((_, w), g)| w.iter().zip(g).map(|(w, g)| w * g).sum::<f64>())
        .sum()
}

/// synflow, in f64 on the host. Dead value 0: conv and linear weight gradients are zero,
/// so the sum of `W * g` is 0.
pub struct Synflow;

impl ScoreDef for Synflow {
    const INFO: ScoreInfo = ScoreInfo {
        name: "synflow",
        higher_is_better: true,
        class_key: ClassKey::Function,
        dead_value: Some(0.0),
        minibatch: Minibatch::None,
        runs: Runs::Host,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        Ok(synflow(arch.plan, Seeds(arch.settings.seed).weights()))
    }
}
