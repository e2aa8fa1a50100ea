//! Search strategies driven by a training-free score, over the NAS-Bench-201 / NATS-Bench
//! topology space (TSS) and, except pruning, the NATS-Bench size space (SSS).
//!
//! Every algorithm here is generic over its fitness (a closure from a benchmark index, an
//! arch or a supernet [`crate::space::Cell`] to an `f64`), so it can be tested on
//! synthetic fitness functions without building a network; the `nasrank search` command
//! wires them to [`crate::proxy::scorer::score_arch`] and caches values by benchmark index.
//! The space enters only where an algorithm makes archs itself: random and top-k sample
//! benchmark indices from a pool (the run layer's pool is the space's indices), and
//! evolution draws and mutates archs through [`SearchArch`] (edge ops for [`Arch`],
//! widths for [`SizeArch`]).
//!
//! - [`random`]: NASWOT's protocol (sample N archs, keep the best score);
//! - [`evolution`]: regularized evolution (Real et al., AAAI 2019);
//! - [`topk`]: KNAS's protocol (keep the k best by score, pick the best of those by a
//!   benchmark lookup);
//! - [`prune`]: TE-NAS's pruning of the supernet by kappa and linear-region rank sums
//!   (the topology space's supernet only: the size space has one fixed cell).
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
use crate::space::{index_of_arch, AnyArch, Arch, Op, SizeArch, SSS_WIDTHS};
use std::fmt::Debug;

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

/// A uniformly random arch of the whole topology space (each edge's op drawn
/// independently).
pub fn random_arch(rng: &mut SplitMix64) -> Arch {
    Arch {
        ops: std::array::from_fn(|_| Op::ALL[rng.below(Op::ALL.len() as u64) as usize]),
    }
}

/// A uniformly random arch of the whole size space (each position's width drawn
/// independently).
pub fn random_size_arch(rng: &mut SplitMix64) -> SizeArch {
    let widths = std::array::from_fn(|_| SSS_WIDTHS[rng.below(SSS_WIDTHS.len() as u64) as usize]);
    SizeArch::new(widths).expect("widths drawn from SSS_WIDTHS")
}

/// An arch of a space that a search draws and changes itself (regularized evolution):
/// what differs between the spaces is how an arch is drawn and mutated.
pub trait SearchArch: Copy + Debug + PartialEq + Into<AnyArch> {
    /// A uniformly random arch of the whole space.
    fn random(rng: &mut SplitMix64) -> Self;
    /// One mutation step: a neighbour that differs in exactly one choice.
    fn mutate(&self, rng: &mut SplitMix64) -> Self;
    /// The arch's benchmark index in its space.
    fn benchmark_index(&self) -> usize;
}

/// The topology space: one op per edge; a mutation changes one edge's op
/// ([`evolution::mutate`]).
impl SearchArch for Arch {
    fn random(rng: &mut SplitMix64) -> Arch {
        random_arch(rng)
    }

    fn mutate(&self, rng: &mut SplitMix64) -> Arch {
        evolution::mutate(self, rng)
    }

    fn benchmark_index(&self) -> usize {
        index_of_arch(self)
    }
}

/// The size space: five widths; a mutation changes one position's width
/// ([`evolution::mutate_width`]).
impl SearchArch for SizeArch {
    fn random(rng: &mut SplitMix64) -> SizeArch {
        random_size_arch(rng)
    }

    fn mutate(&self, rng: &mut SplitMix64) -> SizeArch {
        evolution::mutate_width(self, rng)
    }

    fn benchmark_index(&self) -> usize {
        self.index()
    }
}
