//! TE-NAS's pruning search (Chen et al., ICLR 2021), generic over the two measurements.
//!
//! Protocol (proxies.md, "TE-NAS pruning search", and the released `prune_tenas.py`):
//! - Start from [`Cell::full_supernet`]: every edge carries all ops but `none`, an edge's
//!   output being the sum of its ops.
//! - Each round, for every op `o` still alive on an edge with more than one op, measure the
//!   relative change of kappa (NTK condition number) and of R (linear regions) when `o`
//!   alone is removed from the current supernet `N`: `(s(N) - s(N without o)) / s(N)`,
//!   rounded to 3 decimals, for each of `repeats` weight draws (`N` and `N without o` share
//!   the weights of their common parameters within a draw), then averaged.
//! - Rank all candidates of the round together (not per edge): kappa changes descending,
//!   R changes ascending; ties share a rank, and the next distinct value takes the next
//!   rank (dense ranking, 0-based, as the released code assigns them).
//! - On each edge with more than one op, prune the candidate with the smallest rank sum.
//!   Ties in the sum go to the smaller kappa rank, then to the op earlier in list order:
//!   the order the released code's stable sorts give.
//! - Repeat until one op per edge: 3 rounds from 4 ops per edge.
//!
//! Interpretations:
//! - The rounded changes are kept as integers (thousandths) and summed over repeats; the
//!   sum orders and ties exactly as the mean, without floating-point summation order
//!   deciding a tie.
//! - A change that is not finite (NaN, or an infinite kappa making the ratio infinite or
//!   undefined) ranks last in both orders, sharing the last rank: it is the least
//!   informative, so the least reason to prune that op.
//! - `s(N)` is measured once per round and repeat and reused for every candidate.

use crate::space::{Cell, Op, EDGES};

/// One candidate removal of a round, with its measured changes and ranks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub edge: usize,
    pub op: Op,
    /// Mean over repeats of the rounded relative change of kappa (NaN when not finite).
    pub kappa_change: f64,
    /// Mean over repeats of the rounded relative change of R (NaN when not finite).
    pub regions_change: f64,
    pub kappa_rank: usize,
    pub regions_rank: usize,
}

impl Candidate {
    pub fn rank_sum(&self) -> usize {
        self.kappa_rank + self.regions_rank
    }
}

/// One round: the supernet it started from, every candidate, and the ops pruned.
#[derive(Clone, Debug, PartialEq)]
pub struct Round {
    pub cell: Cell,
    pub candidates: Vec<Candidate>,
    /// `(edge, op)` pruned, one per edge that had more than one op, by edge.
    pub pruned: Vec<(usize, Op)>,
}

/// `(full - without) / full` rounded to 3 decimals, in thousandths; `None` when not finite.
pub fn relative_change_thousandths(full: f64, without: f64) -> Option<i64> {
    let change = (full - without) / full;
    change.is_finite().then(|| (change * 1000.0).round() as i64)
}

/// Dense 0-based ranks of `keys`: sorted descending (or ascending), equal keys share a
/// rank, the next distinct key takes the next rank; `None` ranks after every value.
pub fn dense_ranks(keys: &[Option<i64>], descending: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    let sort_key = |k: Option<i64>| match k {
        Some(v) => (0, if descending { -v } else { v }),
        None => (1, 0),
    };
    order.sort_by_key(|&i| sort_key(keys[i]));
    let mut ranks = vec![0; keys.len()];
    for w in 1..order.len() {
        let (prev, cur) = (order[w - 1], order[w]);
        ranks[cur] = ranks[prev] + usize::from(keys[cur] != keys[prev]);
    }
    ranks
}

/// Measures every candidate of `cell`, ranks them and prunes one op on each edge with
/// more than one. `kappa(cell, repeat)` and `regions(cell, repeat)` measure a supernet
/// with the weights of draw `repeat` (0..repeats).
///
/// # Panics
/// If `repeats` is 0.
pub fn prune_round(
    cell: &Cell,
    repeats: usize,
    kappa: &mut impl FnMut(&Cell, usize) -> f64,
    regions: &mut impl FnMut(&Cell, usize) -> f64,
) -> Round {
    assert!(repeats > 0, "at least one repeat");
    let base_kappa: Vec<f64> = (0..repeats).map(|r| kappa(cell, r)).collect();
    let base_regions: Vec<f64> = (0..repeats).map(|r| regions(cell, r)).collect();
    let mut removals: Vec<(usize, Op)> = Vec::new();
    for (edge, set) in cell.edges.iter().enumerate() {
        if set.len() > 1 {
            removals.extend(set.iter().map(|op| (edge, op)));
        }
    }
    // Summed thousandths over the repeats; None once any repeat is not finite.
    let mut kappa_keys = Vec::with_capacity(removals.len());
    let mut regions_keys = Vec::with_capacity(removals.len());
    for &(edge, op) in &removals {
        let mut without = *cell;
        without.edges[edge].remove(op);
        let (mut k, mut r) = (Some(0i64), Some(0i64));
        for rep in 0..repeats {
            let dk = relative_change_thousandths(base_kappa[rep], kappa(&without, rep));
            let dr = relative_change_thousandths(base_regions[rep], regions(&without, rep));
            k = k.zip(dk).map(|(a, b)| a + b);
            r = r.zip(dr).map(|(a, b)| a + b);
        }
        kappa_keys.push(k);
        regions_keys.push(r);
    }
    let kappa_ranks = dense_ranks(&kappa_keys, true);
    let regions_ranks = dense_ranks(&regions_keys, false);
    let mean = |k: Option<i64>| k.map_or(f64::NAN, |v| v as f64 / 1000.0 / repeats as f64);
    let candidates: Vec<Candidate> = removals
        .iter()
        .enumerate()
        .map(|(i, &(edge, op))| Candidate {
            edge,
            op,
            kappa_change: mean(kappa_keys[i]),
            regions_change: mean(regions_keys[i]),
            kappa_rank: kappa_ranks[i],
            regions_rank: regions_ranks[i],
        })
        .collect();
    let mut pruned = Vec::new();
    for edge in 0..EDGES.len() {
        // Candidates are in op list order within an edge, so min_by_key keeps the first.
        if let Some(c) = candidates
            .iter()
            .filter(|c| c.edge == edge)
            .min_by_key(|c| (c.rank_sum(), c.kappa_rank))
        {
            pruned.push((edge, c.op));
        }
    }
    Round {
        cell: *cell,
        candidates,
        pruned,
    }
}

/// Prunes `start` round by round until every edge carries one op; returns the rounds
/// (the final cell is the last round's cell with its pruned ops removed).
pub fn prune_search(
    start: Cell,
    repeats: usize,
    mut kappa: impl FnMut(&Cell, usize) -> f64,
    mut regions: impl FnMut(&Cell, usize) -> f64,
) -> (Cell, Vec<Round>) {
    let mut cell = start;
    let mut rounds = Vec::new();
    while cell.edges.iter().any(|s| s.len() > 1) {
        let round = prune_round(&cell, repeats, &mut kappa, &mut regions);
        for &(edge, op) in &round.pruned {
            cell.edges[edge].remove(op);
        }
        rounds.push(round);
    }
    (cell, rounds)
}
