//! Random search, NASWOT's protocol (Mellor et al., ICML 2021): sample N archs uniformly
//! without replacement from a pool (the whole space, or a list such as the archs of an
//! accuracy table), score each, keep the best. Every arch of a run sees the same minibatch
//! and weights seed; repeated runs differ only in the sample (NASWOT reports the mean and
//! standard deviation of the chosen archs' accuracies over runs).

use super::{best_position, sample_without_replacement};
use crate::data::SplitMix64;

/// One run: the sample in draw order with its scores, and the chosen arch.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomRun {
    /// `(pool item, score)` in draw order.
    pub sample: Vec<(usize, f64)>,
    /// Position in `sample` of the best score (first on ties).
    pub best: usize,
}

impl RandomRun {
    /// The chosen pool item and its score.
    pub fn chosen(&self) -> (usize, f64) {
        self.sample[self.best]
    }
}

/// The `n` distinct items of `pool` a search with `seed` draws, in draw order.
pub fn random_sample(pool: &[usize], n: usize, seed: u64) -> Vec<usize> {
    sample_without_replacement(pool.len(), n, &mut SplitMix64::new(seed))
        .into_iter()
        .map(|p| pool[p])
        .collect()
}

/// Samples `n` distinct items of `pool` with `SplitMix64::new(seed)`, scores each with
/// `fitness`, and keeps the best.
///
/// # Panics
/// If `n` is 0 or larger than the pool.
pub fn random_search(
    pool: &[usize],
    n: usize,
    seed: u64,
    higher_is_better: bool,
    mut fitness: impl FnMut(usize) -> f64,
) -> RandomRun {
    assert!(n > 0, "random search needs at least one sample");
    let sample: Vec<(usize, f64)> = random_sample(pool, n, seed)
        .into_iter()
        .map(|item| (item, fitness(item)))
        .collect();
    let values: Vec<f64> = sample.iter().map(|&(_, v)| v).collect();
    let best = best_position(&values, higher_is_better).expect("non-empty sample");
    RandomRun { sample, best }
}

/// Mean and population standard deviation (numpy's default `ddof=0`, as NASWOT's
/// reporting script uses) of `values`; NaN for an empty slice.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}
