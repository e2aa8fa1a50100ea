//! KNAS's search protocol (Xu et al., ICML 2021): sample N archs (paper: 300), keep the k
//! (paper: 40) best by the training-free score, then pick the best of those by the
//! benchmark's accuracy (a cheap lookup standing in for a short training).
//!
//! Interpretations: ties in the score keep draw order; kept archs without an accuracy in
//! the table are passed over by the final pick (which is `None` when none has one).

use super::{oriented, random::random_search};

/// The sample, the k kept and the final pick of one search.
#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    /// `(pool item, score)` in draw order.
    pub sample: Vec<(usize, f64)>,
    /// The k best of the sample, best first.
    pub kept: Vec<(usize, f64)>,
}

/// The `k` best of `scored` by score, best first; ties keep their order in `scored`.
pub fn top_k(scored: &[(usize, f64)], k: usize, higher_is_better: bool) -> Vec<(usize, f64)> {
    let mut order: Vec<(usize, f64)> = scored.to_vec();
    // A stable sort: equal scores stay in draw order.
    order.sort_by(|a, b| {
        oriented(b.1, higher_is_better).total_cmp(&oriented(a.1, higher_is_better))
    });
    order.truncate(k);
    order
}

/// The item of `kept` with the highest accuracy (first on ties), with that accuracy;
/// items whose accuracy is unknown or NaN are passed over.
pub fn pick_by_accuracy(
    kept: &[(usize, f64)],
    accuracy: impl Fn(usize) -> Option<f64>,
) -> Option<(usize, f64)> {
    let mut best: Option<(usize, f64)> = None;
    for &(item, _) in kept {
        if let Some(acc) = accuracy(item).filter(|a| !a.is_nan()) {
            if best.is_none_or(|(_, b)| acc > b) {
                best = Some((item, acc));
            }
        }
    }
    best
}

/// Samples `n` distinct items of `pool` (as [`random_search`] does with this seed) and
/// keeps the `k` best by `fitness`.
pub fn topk_search(
    pool: &[usize],
    n: usize,
    k: usize,
    seed: u64,
    higher_is_better: bool,
    fitness: impl FnMut(usize) -> f64,
) -> TopK {
    let run = random_search(pool, n, seed, higher_is_better, fitness);
    let kept = top_k(&run.sample, k, higher_is_better);
    TopK {
        sample: run.sample,
        kept,
    }
}
