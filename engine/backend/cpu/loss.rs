//! Softmax cross-entropy on logits `[n][classes]` with integer labels:
//! `loss_i = logsumexp(z_i) - z_i[y_i]`, reduced by mean or sum; the gradient is
//! `softmax(z_i) - onehot(y_i)` (divided by `n` for the mean). Log-sum-exp subtracts the row
//! maximum and runs in f64, so logits in the thousands neither overflow nor lose the loss.

use crate::backend::{Real, Reduction};

/// Returns the reduced loss and overwrites `dlogits` with its gradient.
pub fn softmax_cross_entropy<T: Real>(
    n: usize,
    classes: usize,
    logits: &[T],
    labels: &[usize],
    reduction: Reduction,
    dlogits: &mut [T],
) -> T {
    assert!(
        logits.len() == n * classes && dlogits.len() == n * classes && labels.len() == n,
        "softmax_cross_entropy: length"
    );
    if n == 0 {
        return T::zero();
    }
    let scale = match reduction {
        Reduction::Mean => 1.0 / n as f64,
        Reduction::Sum => 1.0,
    };
    let mut total = 0.0f64;
    for ((z, d), &label) in logits
        .chunks_exact(classes)
        .zip(dlogits.chunks_exact_mut(classes))
        .zip(labels)
    {
        assert!(
            label < classes,
            "softmax_cross_entropy: label {label} >= {classes}"
        );
        let max = z
            .iter()
            .map(|v| v.to_f64_lossless())
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v.to_f64_lossless() - max).exp()).sum();
        total += max + sum.ln() - z[label].to_f64_lossless();
        for (j, (d, v)) in d.iter_mut().zip(z).enumerate() {
            let p = (v.to_f64_lossless() - max).exp() / sum;
            let onehot = if j == label { 1.0 } else { 0.0 };
            *d = T::from_f64_rounded((p - onehot) * scale);
        }
    }
    T::from_f64_rounded(total * scale)
}
