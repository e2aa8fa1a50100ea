//! Zen-score (Lin et al., ICCV 2021).
//!
//! `x` is a batch of `n` standard normal images, `x' = x + alpha e` with `e` standard normal
//! and `alpha = 0.01`; both are drawn from [`SplitMix64`] seeded with `seed` (`x` first, then
//! `e`). Both go forward with batch statistics (each its own batch), and `f` is the last
//! feature map before global pooling ([`Plan::feature_slot`]: after the final BN and ReLU).
//! score = `ln(mean over images of ||f(x)_i - f(x')_i||_2)` + sum over every BN layer of
//! `ln(sqrt(mean over channels of sigma^2))`, `sigma^2` the (biased) batch variance that BN
//! layer normalised `x` with, recovered as `1 / inv_std^2 - eps`. A BN layer whose input is
//! identically zero (behind a conv fed by a zero node) is not in the plan and so not in the
//! sum: its variance is 0, and counting it would make every such arch -inf.
//!
//! Deviations, all deliberate:
//! - The paper's norm is Frobenius (used here); the released code sums absolute values (L1)
//!   per image. Both take the mean over the batch.
//! - Weights: as the released code, conv and linear weights are drawn from N(0, 1) (linear
//!   bias 0, BN gamma 1, beta 0; [`gaussian_params`], Philox with the run's seed), not the
//!   default uniform init the other scores use. This matters: each BN layer's correction
//!   `ln sqrt(mean sigma^2)` is in units of the weights' scale. With the default init
//!   (`Var(w) = 1/(3 fan_in)`) every conv shrinks the variance, every term is negative, and
//!   archs with more convs score lower: measured Spearman -0.64 against CIFAR-10 accuracy on
//!   120 dev archs before this choice.
//! - The released code reads BN `running_var` (unbiased, blended by the momentum after the
//!   two forward passes); here the batch variance of the clean pass, the variance the
//!   correction is meant to undo.
//! - A network whose features do not depend on the input gives `ln 0 = -inf`.

use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use crate::backend::{Backend, BnStatistics, Executor, Real};
use crate::data::{Seeds, SplitMix64};
use crate::net::init::gaussian_params;
use crate::net::plan::Plan;
use crate::net::BN_EPS;
use crate::space::ClassKey;

/// Scale of the input perturbation.
pub const ZEN_ALPHA: f64 = 0.01;

/// The Zen-score of the executor's network on `n` Gaussian images drawn from `seed`.
pub fn zen<B: Backend>(exec: &mut Executor<'_, B>, n: usize, seed: u64) -> f64 {
    let (plan, be) = (exec.plan(), exec.backend());
    // Zen's own N(0, 1) weights: the BN-variance correction is in units of the weights'
    // scale, so the default uniform init would flip its sign (see the module doc).
    let mut gaussian = Executor::with_values(be, plan, &gaussian_params(seed, plan));
    let (x, e) = zen_inputs(plan, n, seed);
    let perturbed: Vec<f64> = x.iter().zip(&e).map(|(x, e)| x + ZEN_ALPHA * e).collect();
    zen_from_inputs(&mut gaussian, n, &x, &perturbed)
}

/// The clean input and the perturbation direction of [`zen`], each `[n][c][h][w]`.
pub fn zen_inputs(plan: &Plan, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let len = n * plan.input_len();
    let mut rng = SplitMix64::new(seed);
    let mut draw = || {
        let mut v = Vec::with_capacity(len + 1);
        while v.len() < len {
            let (a, b) = rng.normal_pair();
            v.extend([a, b]);
        }
        v.truncate(len);
        v
    };
    let x = draw();
    let e = draw();
    (x, e)
}

/// The Zen-score from a clean and a perturbed input.
pub fn zen_from_inputs<B: Backend>(
    exec: &mut Executor<'_, B>,
    n: usize,
    x: &[f64],
    perturbed: &[f64],
) -> f64 {
    let be = exec.backend();
    let Some(feature) = exec.plan().feature_slot() else {
        return f64::NEG_INFINITY;
    };
    let upload = |v: &[f64]| {
        let host: Vec<B::Real> = v.iter().map(|&v| B::Real::from_f64_rounded(v)).collect();
        be.upload(&host)
    };
    exec.forward(upload(x), n, BnStatistics::Batch);
    let clean = be.download(exec.slot(feature));
    let correction: f64 = exec
        .bn_statistics()
        .map(|(_, _, inv_std)| {
            let inv_std = be.download(inv_std);
            let mean_var = inv_std
                .iter()
                .map(|s| 1.0 / s.to_f64_lossless().powi(2) - BN_EPS)
                .sum::<f64>()
                / inv_std.len() as f64;
            mean_var.sqrt().ln()
        })
        .sum();
    exec.forward(upload(perturbed), n, BnStatistics::Batch);
    let moved = be.download(exec.slot(feature));
    let d = clean.len() / n;
    let mean_norm = clean
        .chunks_exact(d)
        .zip(moved.chunks_exact(d))
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(a, b)| (a.to_f64_lossless() - b.to_f64_lossless()).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .sum::<f64>()
        / n as f64;
    mean_norm.ln() + correction
}

/// Zen-score. Dead value -inf: the last feature map is zero for both inputs, `ln 0` =
/// -inf, and the BN terms are finite or -inf.
pub struct Zen;

impl ScoreDef for Zen {
    const INFO: ScoreInfo = ScoreInfo {
        name: "zen",
        higher_is_better: true,
        class_key: ClassKey::Function,
        dead_value: Some(f64::NEG_INFINITY),
        minibatch: Minibatch::Gradient,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        let (n, seeds) = (
            arch.settings.batch_of(Self::INFO.minibatch),
            Seeds(arch.settings.seed),
        );
        Ok(zen(arch.exec(), n, seeds.zen_inputs()))
    }
}
