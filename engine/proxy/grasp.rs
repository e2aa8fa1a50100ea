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
//! ReLU sign patterns are frozen at those of `W` during the two perturbed passes
//! ([`Executor::freeze_relu_masks`]). Without that, a unit whose input changes sign between
//! `W - eps g` and `W + eps g` adds its whole gradient jump divided by `2 eps`: with
//! thousands of units near zero the difference jumps around by O(1) relative (measured: an
//! 8-channel network gave 12.8, 6.5, -12.2, 5.86 at steps 1e-4 .. 1e-7 in f64). With the
//! pattern fixed the loss is smooth in the weights and its Hessian is the one autograd
//! differentiates (ReLU'' = 0, pattern fixed), so the released code's quantity.
//!
//! Step: `eps ||g|| = h ||W||` (norms over the scored weights), `h = FD_STEP_F32` in f32 and
//! `FD_STEP_F64` in f64, chosen by measurement: the truncation error is far larger than
//! `h^2` suggests (the loss curves fast along `g`): on the all-3x3-conv arch at C=16, N=5,
//! batch 64, f64 gives 1192.18 at h = 1e-8, 1191.91 at 1e-6; f32 gives -290 at 1e-4, 961 at
//! 3e-5 and 1189.9 at 3e-6, below which rounding takes over. So the f32 score is good to
//! a few 1e-3 relative (the median arch: 1e-4; the tiny networks of the tests: 3e-3),
//! enough for ranking; tests/scores_zero_cost.rs checks f64 and f32 against PyTorch's exact
//! Hessian-vector product. Where more is needed, run GraSP on a `CpuBackend<f64>` executor
//! (about 3x the f32 time).
//!
//! Deviation: the released code uses the loss divided by a temperature `T = 1` (no change)
//! and splits the batch into `split_data` chunks for memory (no change in exact arithmetic).

use super::saliency::{ce_gradients, is_scored_weight};
use crate::backend::{Backend, Executor, Real};
use crate::data::Batch;

/// Relative weight step of the finite difference in f32.
pub const FD_STEP_F32: f64 = 3e-6;
/// Relative weight step of the finite difference in f64.
pub const FD_STEP_F64: f64 = 1e-8;

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
    let scored: Vec<bool> = plan
        .params
        .iter()
        .map(|p| is_scored_weight(p.kind))
        .collect();
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
    let grad_at = |exec: &mut Executor<'_, B>, sign: f64| {
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
    exec.freeze_relu_masks();
    let plus = grad_at(exec, 1.0);
    let minus = grad_at(exec, -1.0);
    exec.unfreeze_relu_masks();
    for (p, w) in originals.into_iter().enumerate() {
        exec.params_mut()[p] = w;
    }
    let hg = plus
        .iter()
        .zip(&minus)
        .zip(&scored)
        .map(|((a, b), &s)| {
            if s {
                a.iter()
                    .zip(b)
                    .map(|(a, b)| (a - b) / (2.0 * eps))
                    .collect()
            } else {
                Vec::new()
            }
        })
        .collect();
    (hg, weights)
}
