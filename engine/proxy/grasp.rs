//! GraSP (Wang et al., ICLR 2020) as a zero-cost proxy (Abdelfattah et al., ICLR 2021):
//! score = `- sum over conv and linear weights of W * (H g)`, `g = dL/dW` and `H` the
//! Hessian of the mean cross-entropy `L` with respect to those weights.
//!
//! Settings: the executor's weights and backend, the first `n` images, batch statistics,
//! the full batch-norm gradient. `g` covers the conv and linear weights only (the released
//! code's `weights` list); BN parameters and the classifier bias are neither perturbed nor
//! scored. The released code detaches `g` and differentiates `g . dL/dW` again, i.e. `H g`
//! with `g` held constant; here `H g` is a central finite difference of gradients along `g`:
//! `H g ~ (grad L(W + eps g) - grad L(W - eps g)) / (2 eps)`, three forward/backward passes
//! in all and no second-order autodiff.
//!
//! Step: `eps ||g|| = h ||W||` (norms over the scored weights), a relative weight change of
//! `h = FD_STEP_F32` in f32 and `FD_STEP_F64` in f64: large enough that rounding of
//! the gradients (relative `u / h`) stays small, small enough that the truncation error
//! (`h^2`) and the ReLU sign flips the step causes stay small. tests/scores_zero_cost.rs
//! checks the f32 score against an f64 one with a much smaller step.
//!
//! Deviation: the released code uses the loss divided by a temperature `T = 1` (no change)
//! and splits the batch into `split_data` chunks for memory (no change in exact arithmetic).

use super::saliency::{ce_gradients, is_scored_weight};
use crate::backend::{Backend, Executor, Real};
use crate::data::Batch;

/// Relative weight step of the finite difference in f32.
pub const FD_STEP_F32: f64 = 1e-3;
/// Relative weight step of the finite difference in f64.
pub const FD_STEP_F64: f64 = 1e-6;

/// GraSP on the first `n` images of `batch`; the executor's weights are restored.
pub fn grasp<B: Backend>(exec: &mut Executor<'_, B>, batch: &Batch, n: usize) -> f64 {
    let step = if <B::Real as num_traits::Float>::epsilon().to_f64_lossless() > 1e-10 {
        FD_STEP_F32
    } else {
        FD_STEP_F64
    };
    grasp_with_step(exec, batch, n, step)
}

/// GraSP with a given relative step `h` (`eps ||g|| = h ||W||`).
pub fn grasp_with_step<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    h: f64,
) -> f64 {
    let (hg, weights) = hessian_gradient_product(exec, batch, n, h);
    -weights
        .iter()
        .zip(&hg)
        .map(|(w, hg)| w.iter().zip(hg).map(|(w, x)| w * x).sum::<f64>())
        .sum::<f64>()
}

/// `H g` over every plan parameter (empty for those not scored) by the central difference,
/// and the weights (empty likewise), in f64.
pub fn hessian_gradient_product<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    h: f64,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let plan = exec.plan();
    let be = exec.backend();
    let scored: Vec<bool> = plan.params.iter().map(|p| is_scored_weight(p.kind)).collect();
    let originals: Vec<B::Buf> = exec
        .params()
        .iter()
        .map(|w| be.upload(&be.download(w)))
        .collect();
    let weights: Vec<Vec<f64>> = exec
        .params()
        .iter()
        .zip(&scored)
        .map(|(w, &s)| {
            if s {
                be.download(w).iter().map(|v| v.to_f64_lossless()).collect()
            } else {
                Vec::new()
            }
        })
        .collect();
    let g: Vec<Vec<f64>> = ce_gradients(exec, batch, n)
        .into_iter()
        .zip(&scored)
        .map(|(g, &s)| if s { g } else { Vec::new() })
        .collect();
    let norm = |v: &[Vec<f64>]| v.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
    let (w_norm, g_norm) = (norm(&weights), norm(&g));
    if g_norm == 0.0 {
        return (g.clone(), weights);
    }
    let eps = h * w_norm / g_norm;
    let mut grad_at = |sign: f64| {
        for (p, (w, g)) in weights.iter().zip(&g).enumerate() {
            if !w.is_empty() {
                let moved: Vec<B::Real> = w
                    .iter()
                    .zip(g)
                    .map(|(w, g)| B::Real::from_f64_rounded(w + sign * eps * g))
                    .collect();
                exec.params_mut()[p] = be.upload(&moved);
            }
        }
        ce_gradients(exec, batch, n)
    };
    let plus = grad_at(1.0);
    let minus = grad_at(-1.0);
    for (p, w) in originals.into_iter().enumerate() {
        exec.params_mut()[p] = w;
    }
    let hg = plus
        .iter()
        .zip(&minus)
        .zip(&scored)
        .map(|((a, b), &s)| {
            if s {
                a.iter().zip(b).map(|(a, b)| (a - b) / (2.0 * eps)).collect()
            } else {
                Vec::new()
            }
        })
        .collect();
    (hg, weights)
}
