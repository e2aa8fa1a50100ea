//! ZiCo (Li et al., ICLR 2023): inverse coefficient of variation of per-sample gradients.
//!
//! Definition as implemented: for each conv weight and the classifier weight (the
//! `nn.Conv2d` / `nn.Linear` weights of the reference model; not BN parameters, not
//! biases), with `g_i[e]` the gradient of image `i`'s cross-entropy loss at entry `e`,
//! `score = sum over tensors of log( sum over entries e of mean_i |g_i[e]| / std_i g_i[e] )`,
//! `std` the population standard deviation (divisor `n`, numpy's default). Higher is better.
//!
//! Settings and deviations:
//! - Samples: per-image gradients on one batch, forward in training mode with batch
//!   statistics, statistics held constant in the backward pass ([`BnGrad::FrozenStats`]),
//!   so the images decouple and one backward pass gives them all (they sum to the batch
//!   gradient with frozen statistics). The paper's analysis is about per-sample gradients;
//!   the released code instead treats the mean-loss gradient of each of a few minibatches
//!   as one sample.
//! - Entries whose gradient has zero standard deviation over the batch are skipped (the
//!   released code keeps only `np.nonzero(std)` entries); a tensor whose remaining sum is
//!   0 (all entries skipped: a conv on a path that never reaches the output) adds nothing,
//!   as in the released code. Parameters pruned from the plan (identically zero input)
//!   would be all-zero, hence skipped, in the reference model too.
//! - Each tensor's `[n][len]` per-sample block is reduced on the backend to per-entry mean
//!   |g| and variance in f64 (`Backend::column_moments`) as it arrives, into one
//!   accumulator read once after the pass; the ratio is summed on the host in f64, tensor
//!   by tensor in the order they arrived.

use super::forward_loss_gradient;
use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use crate::backend::{
    Backend, BackwardOptions, BnGrad, BnStatistics, Executor, ParamGrads, Reduction,
};
use crate::data::Batch;
use crate::net::ParamKind;
use crate::space::ClassKey;

/// `sum_e mean_i |g_i[e]| / std_i g_i[e]` over entries with nonzero std, from one tensor's
/// column moments (`[mean |g|; variance]`, [`Backend::column_moments`] of its `[n][len]`
/// per-sample gradients).
pub fn zico_tensor_sum(moments: &[f64]) -> f64 {
    let (mean_abs, var) = moments.split_at(moments.len() / 2);
    mean_abs
        .iter()
        .zip(var)
        .filter(|(_, &v)| v > 0.0)
        .map(|(a, v)| a / v.sqrt())
        .sum()
}

/// The ZiCo score of the first `n` images of `batch` (`n >= 2`).
pub fn zico<B: Backend>(exec: &mut Executor<'_, B>, batch: &Batch, n: usize) -> f64 {
    assert!(
        n >= 2,
        "ZiCo needs at least two images for a standard deviation"
    );
    let be = exec.backend();
    let plan = exec.plan();
    let dlogits = forward_loss_gradient(exec, batch, n, BnStatistics::Batch, Reduction::Sum);
    // Each scored tensor's moments have their place in one accumulator, filled on the
    // backend as the tensor's rows arrive (a GPU sends 2 x len doubles, not n x len floats)
    // and read once after the pass, so that the pass never waits on a download.
    let scored = |p: usize| {
        matches!(
            plan.params[p].kind,
            ParamKind::ConvWeight | ParamKind::LinearWeight
        )
    };
    let mut place = vec![0; plan.params.len()];
    let mut total = 0;
    for p in (0..plan.params.len()).filter(|&p| scored(p)) {
        place[p] = total;
        total += 2 * plan.params[p].len();
    }
    let mut moments = be.alloc_acc(total);
    let mut arrived = Vec::new();
    let mut fold = |p: usize, rows: &B::Buf| {
        if scored(p) {
            be.column_moments(rows, n, plan.params[p].len(), &mut moments, place[p]);
            arrived.push(p);
        }
    };
    let options = BackwardOptions {
        bn_grad: BnGrad::FrozenStats,
        input_grad: false,
    };
    exec.backward(dlogits, &options, ParamGrads::PerSample(&mut fold));
    let moments = be.download_acc(&moments);
    let mut score = 0.0;
    for p in arrived {
        let sum = zico_tensor_sum(&moments[place[p]..place[p] + 2 * plan.params[p].len()]);
        if sum != 0.0 {
            score += sum.ln();
        }
    }
    score
}

/// ZiCo. Dead value 0: every weight tensor's gradients are zero (no entry with non-zero
/// spread), each tensor is skipped and the sum of no logarithms is 0.
pub struct Zico;

impl ScoreDef for Zico {
    const INFO: ScoreInfo = ScoreInfo {
        name: "zico",
        higher_is_better: true,
        class_key: ClassKey::Function,
        dead_value: Some(0.0),
        minibatch: Minibatch::Gradient,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        let (data, n) = (arch.data, arch.settings.batch_of(Self::INFO.minibatch));
        Ok(zico(arch.exec(), data, n))
    }
}
