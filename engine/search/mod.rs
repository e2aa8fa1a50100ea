//! Search strategies over NAS-Bench-201 driven by a training-free score.
//!
//! Every algorithm here is generic over its fitness (a closure from a benchmark index, an
//! [`Arch`] or a supernet [`crate::space::Cell`] to an `f64`), so it can be tested on
//! synthetic fitness functions without building a network; the `nasrank search` command
//! wires them to [`crate::proxy::scorer::score_arch`] and caches values by benchmark index.
//!
//! - [`random`]: NASWOT's protocol (sample N archs, keep the best score);
//! - [`evolution`]: regularized evolution (Real et al., AAAI 2019);
//! - [`topk`]: KNAS's protocol (keep the k best by score, pick the best of those by a
//!   benchmark lookup);
//! - [`prune`]: TE-NAS's pruning of the supernet by kappa and linear-region rank sums.
//!
//! Conventions shared by all: a score's direction is a `higher_is_better` flag (from
//! [`crate::proxy::Score::higher_is_better`]); NaN is the worst value in either direction;
//! ties go to the arch seen first. All randomness comes from [`SplitMix64`], so a seed
//! fixes a search on every platform.

pub use crate::data::sample_without_replacement;

pub mod evolution;
pub mod prune;
pub mod random;
pub mod topk;

use crate::data::SplitMix64;
use crate::space::{Arch, Op};

/// A score value as a key where larger is better: negated when lower is better, NaN the
/// worst of all (so a failed score never wins).
pub fn oriented(value: f64, higher_is_better: bool) -> f64 {
    if value.is_nan() {
        f64::NEG_INFINITY
    } else if higher_is_better {
        value
    } else {
        -value
    }
}

/// Position of the best of `values` (the first one on ties); `None` when empty.
pub fn best_position(values: &[f64], higher_is_better: bool) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &v) in values.iter().enumerate() {
        let key = oriented(v, higher_is_better);
        if best.is_none_or(|(_, b)| key > b) {
            best = Some((i, key));
        }
    }
    best.map(|(i, _)| i)
}

/// A uniformly random arch of the whole space (each edge's op drawn independently).
pub fn random_arch(rng: &mut SplitMix64) -> Arch {
    Arch {
        ops: std::array::from_fn(|_| Op::ALL[rng.below(Op::ALL.len() as u64) as usize]),
    }
}
