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

use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use super::saliency::{ce_gradients, is_scored_weight};
use crate::backend::{Backend, Executor, Real};
use crate::data::Batch;
use crate::space::ClassKey;

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
///
/// Everything stays on the backend: the gradients, the moved weights (`W +- eps g` in f64,
/// rounded once, as on the host) and the sums (`||W||^2`, `||g||^2`, then
/// `W . (grad(W + eps g) - grad(W - eps g))` per tensor), read twice.
pub fn grasp_with_step<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    h: f64,
) -> f64 {
    let plan = exec.plan();
    let be = exec.backend();
    let scored: Vec<usize> = (0..plan.params.len())
        .filter(|&p| is_scored_weight(plan.params[p].kind))
        .collect();
    let g = ce_gradients(exec, batch, n);
    // Per tensor [_, ||W||^2, _, ||g||^2]: the second sum of each pair.
    let mut squares = be.alloc_acc(4 * scored.len());
    for (k, &p) in scored.iter().enumerate() {
        let w = &exec.params()[p];
        be.abs_products_and_squares(w, w, &mut squares, 4 * k);
        be.abs_products_and_squares(&g[p], &g[p], &mut squares, 4 * k + 2);
    }
    let squares = be.download_acc(&squares);
    let norm = |slot: usize| squares.chunks_exact(4).map(|s| s[slot]).sum::<f64>().sqrt();
    let (w_norm, g_norm) = (norm(1), norm(3));
    if g_norm == 0.0 {
        return 0.0; // no gradient: H g along it is zero, and so is the score
    }
    let eps = h * w_norm / g_norm;
    // Gradients at the weights moved along g, the executor's own weights kept aside.
    let grad_at = |exec: &mut Executor<'_, B>, sign: f64| {
        let moved: Vec<B::Buf> = scored
            .iter()
            .map(|&p| {
                let w = &exec.params()[p];
                let mut moved = be.alloc_output(be.buf_len(w));
                be.add_scaled(w, sign * eps, &g[p], &mut moved);
                moved
            })
            .collect();
        exec.with_params_replaced(&scored, moved, |exec| ce_gradients(exec, batch, n))
    };
    exec.freeze_relu_masks();
    let plus = grad_at(exec, 1.0);
    let minus = grad_at(exec, -1.0);
    exec.unfreeze_relu_masks();
    // -W . H g with H g = (plus - minus) / (2 eps).
    let mut dots = be.alloc_acc(scored.len());
    for (k, &p) in scored.iter().enumerate() {
        be.difference_dot(&exec.params()[p], &plus[p], &minus[p], &mut dots, k);
    }
    -be.download_acc(&dots).iter().sum::<f64>() / (2.0 * eps)
}

/// GraSP. Dead value -0: `g` = 0 on the weights, so `H g` = 0 and `-sum W * H g` = -0.
pub struct Grasp;

impl ScoreDef for Grasp {
    const INFO: ScoreInfo = ScoreInfo {
        name: "grasp",
        higher_is_better: true,
        class_key: ClassKey::Function,
        dead_value: Some(-0.0),
        minibatch: Minibatch::Gradient,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        let (data, n) = (arch.data, arch.settings.batch_of(Self::INFO.minibatch));
        Ok(grasp(arch.exec(), data, n))
    }
}
