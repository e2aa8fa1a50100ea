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
//! - The ratio is computed on the host in f64 from the downloaded `[n][len]` block of each
//!   tensor, which is folded and dropped before the next tensor arrives.

use super::forward_loss_gradient;
use crate::backend::{
    Backend, BackwardOptions, BnGrad, BnStatistics, Executor, ParamGrads, Real, Reduction,
};
use crate::data::Batch;
use crate::net::ParamKind;

/// `sum_e mean_i |g_i[e]| / std_i g_i[e]` over entries with nonzero std, for one tensor's
/// per-sample gradients `grads` (`[n][len]`).
pub fn zico_tensor_sum<T: Real>(grads: &[T], n: usize, len: usize) -> f64 {
    assert_eq!(grads.len(), n * len);
    let nf = n as f64;
    // Row by row (contiguous), two passes: sums, then squared deviations.
    let mut sum = vec![0.0f64; len];
    let mut sum_abs = vec![0.0f64; len];
    for row in grads.chunks_exact(len) {
        for ((s, a), v) in sum.iter_mut().zip(&mut sum_abs).zip(row) {
            let v = v.to_f64_lossless();
            *s += v;
            *a += v.abs();
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / nf).collect();
    let mut sq_dev = vec![0.0f64; len];
    for row in grads.chunks_exact(len) {
        for ((d, m), v) in sq_dev.iter_mut().zip(&mean).zip(row) {
            let dev = v.to_f64_lossless() - m;
            *d += dev * dev;
        }
    }
    let mut total = 0.0;
    for (a, d) in sum_abs.iter().zip(&sq_dev) {
        let var = d / nf;
        if var > 0.0 {
            total += a / nf / var.sqrt();
        }
    }
    total
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
    let mut score = 0.0;
    let mut fold = |p: usize, rows: &B::Buf| {
        let spec = &plan.params[p];
        if matches!(spec.kind, ParamKind::ConvWeight | ParamKind::LinearWeight) {
            let sum = zico_tensor_sum(&be.download(rows), n, spec.len());
            if sum != 0.0 {
                score += sum.ln();
            }
        }
    };
    let options = BackwardOptions {
        bn_grad: BnGrad::FrozenStats,
        input_grad: false,
    };
    exec.backward(dlogits, &options, ParamGrads::PerSample(&mut fold));
    score
}
