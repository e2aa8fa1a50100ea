//! NTK condition number (TE-NAS, Chen et al., ICLR 2021).
//!
//! Definition: on a minibatch of `B` images, row `b` of `J` is the gradient of
//! `sum_k logits[b][k]` with respect to every TE-NAS "weight" ([`ParamKind::is_weight`]:
//! conv weights, BN gamma, the classifier weight; not biases, not BN beta);
//! `Theta = J J^T` (`B x B`, accumulated in f64) and `kappa = lambda_max / lambda_min`
//! from f64 symmetric eigenvalues. Lower is better. Forward in training mode (batch
//! statistics), default initialisation, the caller's batch (the paper uses 32, the released
//! code 72 for NB-201).
//!
//! Two modes ([`NtkMode`]):
//! - `Exact`: the true Jacobian of the batched forward, BN coupling included: `B`
//!   backward passes (the released code's `B` separate `backward` calls), each seeding
//!   ones on row `b` of the logits only. Holds `J` (`B` times the weight count) on the
//!   backend while it is assembled, and costs `B` batched backward passes, run side by
//!   side where the backend gains by it ([`Executor::backward_each`]).
//! - `FrozenStats`: batch statistics in the forward, held constant in the backward, so the
//!   rows decouple and one backward pass with all-ones seeds yields every row; each weight
//!   tensor's `[B][len]` block is folded into `Theta` as it arrives.
//!
//! Deviations from the released code: eigenvalues in f64 (it uses float32 `symeig`); a
//! NaN kappa stays NaN (it substitutes 100000); a numerically singular `Theta`
//! (`lambda_min <= 0` with `lambda_max > 0`) gives `+inf`, the condition number of a
//! singular matrix, where the released code would return the raw, possibly negative,
//! ratio. Parameters whose module only ever sees an identically zero input are not in the
//! plan; their rows are zero in the reference model, so `Theta` is unchanged.

use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use crate::space::ClassKey;
use std::sync::Mutex;

use super::{linalg, upload_images};
use crate::backend::{Backend, BackwardOptions, BnGrad, BnStatistics, Executor, ParamGrads, Real};
use crate::data::Batch;
use crate::net::ParamId;

/// How the Jacobian treats the coupling of images through batch statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NtkMode {
    /// True Jacobian of the batched forward (`B` backward passes).
    Exact,
    /// Batch statistics held constant in the backward pass (one backward pass).
    FrozenStats,
}

/// Streams the Jacobian `J` of `sum_k logits[b][k]` over the first `n` images of `batch`,
/// one weight tensor at a time: `visit(param, rows)` with `rows` its `[n][len]` block
/// (scratch in `FrozenStats` mode: use it before returning). Only TE-NAS weights are shown.
pub fn ntk_jacobian<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    mode: NtkMode,
    visit: &mut dyn FnMut(ParamId, &B::Buf),
) {
    let be = exec.backend();
    let plan = exec.plan();
    exec.forward(upload_images(be, batch, n), n, BnStatistics::Batch);
    let classes = plan.output_len();
    let (zero, one) = (
        B::Real::from_f64_rounded(0.0),
        B::Real::from_f64_rounded(1.0),
    );
    match mode {
        NtkMode::FrozenStats => {
            let seed = be.upload(&vec![one; n * classes]);
            let options = BackwardOptions {
                bn_grad: BnGrad::FrozenStats,
                input_grad: false,
            };
            let mut weights_only = |p: ParamId, rows: &B::Buf| {
                if plan.params[p].kind.is_weight() {
                    visit(p, rows);
                }
            };
            exec.backward(seed, &options, ParamGrads::PerSample(&mut weights_only));
        }
        NtkMode::Exact => {
            let weights: Vec<ParamId> = (0..plan.params.len())
                .filter(|&p| plan.params[p].kind.is_weight())
                .collect();
            let rows: Mutex<Vec<B::Buf>> = Mutex::new(
                weights
                    .iter()
                    .map(|&p| be.alloc(n * plan.params[p].len()))
                    .collect(),
            );
            let seeds = (0..n)
                .map(|b| {
                    let mut seed = vec![zero; n * classes];
                    seed[b * classes..(b + 1) * classes].fill(one);
                    be.upload(&seed)
                })
                .collect();
            exec.backward_each(seeds, &BackwardOptions::default(), &|b, grads| {
                let mut rows = rows.lock().unwrap_or_else(|e| e.into_inner());
                let mut copies: Vec<_> = rows
                    .iter_mut()
                    .zip(&weights)
                    .map(|(buf, &p)| (&grads[p], buf, b * plan.params[p].len()))
                    .collect();
                be.copy_into_many(&mut copies);
            });
            let rows = rows.into_inner().unwrap_or_else(|e| e.into_inner());
            for (buf, &p) in rows.iter().zip(&weights) {
                visit(p, buf);
            }
        }
    }
}

/// `Theta = J J^T` (`[n][n]` row-major, f64) over the first `n` images of `batch`.
pub fn ntk_gram<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    mode: NtkMode,
) -> Vec<f64> {
    let be = exec.backend();
    let plan = exec.plan();
    let mut acc = be.alloc_acc(n * n);
    ntk_jacobian(exec, batch, n, mode, &mut |p, rows| {
        be.gram_accumulate(rows, n, plan.params[p].len(), &mut acc)
    });
    be.download_acc(&acc)
}

/// The TE-NAS score `kappa` over the first `n` images of `batch` (lower is better).
pub fn ntk_condition<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    mode: NtkMode,
) -> f64 {
    condition_number(&ntk_gram(exec, batch, n, mode), n)
}

/// `lambda_max / lambda_min` of a symmetric positive semi-definite matrix (`[n][n]`):
/// NaN for a non-finite or all-zero matrix, `+inf` when it is singular to rounding
/// (`lambda_min <= 0`).
pub fn condition_number(theta: &[f64], n: usize) -> f64 {
    if theta.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let values = linalg::symmetric_eigenvalues(theta, n);
    let (min, max) = (values[0], values[n - 1]);
    if max <= 0.0 {
        f64::NAN
    } else if min <= 0.0 {
        f64::INFINITY
    } else {
        max / min
    }
}

/// TE-NAS's NTK condition number with batch statistics held constant in the backward pass
/// (lower is better). Dead value NaN: the rows of `J` (gradients w.r.t. conv weights, BN
/// gammas and the classifier weight, never its bias) are zero, `Theta = 0`, `0 / 0`.
pub struct Ntk;

impl ScoreDef for Ntk {
    const INFO: ScoreInfo = ScoreInfo {
        name: "ntk",
        higher_is_better: false,
        class_key: ClassKey::Function,
        dead_value: Some(f64::NAN),
        minibatch: Minibatch::Ntk,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        let (data, n) = (arch.data, arch.settings.batch_of(Self::INFO.minibatch));
        Ok(ntk_condition(arch.exec(), data, n, NtkMode::FrozenStats))
    }
}

/// TE-NAS's NTK condition number with one backward pass per image and output, as the
/// released code (lower is better). Dead value NaN, as [`Ntk`].
pub struct NtkExact;

impl ScoreDef for NtkExact {
    const INFO: ScoreInfo = ScoreInfo {
        name: "ntk_exact",
        higher_is_better: false,
        class_key: ClassKey::Function,
        dead_value: Some(f64::NAN),
        minibatch: Minibatch::Ntk,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        let (data, n) = (arch.data, arch.settings.batch_of(Self::INFO.minibatch));
        Ok(ntk_condition(arch.exec(), data, n, NtkMode::Exact))
    }
}
