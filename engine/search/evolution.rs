//! Regularized evolution (Real et al., AAAI 2019, Algorithm 1), with a training-free score
//! as the fitness.
//!
//! - The population (size P, default 64) starts as P uniformly random archs.
//! - Each cycle draws S members (default 16) uniformly *with* replacement from the
//!   population (Algorithm 1: "the element stays in the population"), takes the fittest
//!   as parent (first drawn on ties), and adds its mutation as the youngest member;
//!   aging then removes the oldest member, whatever its fitness.
//! - The budget C (default 500) counts every evaluation, the initial population included
//!   (NAS-Bench-201's REA counts time instead); the result is the fittest arch of the
//!   whole history (first seen on ties).
//! - Mutation in the topology space changes one edge, chosen uniformly among the 6, to
//!   one of the 4 other ops (`none` included), chosen uniformly. NAS-Bench-201's released
//!   REA picks a node and then one of its incoming edges, which favours the edge into
//!   node 1; uniform edges follow the paper's "change one op" without that bias.
//! - Mutation in the size space changes one position, chosen uniformly among the 5, to one
//!   of the 7 other widths, chosen uniformly ([`mutate_width`]; NATS-Bench's released REA
//!   for the size space mutates one channel choice in the same way).
//! - The space is the arch type's ([`SearchArch`]): `Evolution<Arch>` searches the topology
//!   space, `Evolution<SizeArch>` the size space.
//!
//! A cached fitness (as the CLI's) makes a re-visited arch free; it still uses a cycle.

use super::{oriented, SearchArch};
use crate::data::SplitMix64;
use crate::space::{Arch, Op, SizeArch, SSS_WIDTHS};
use std::collections::VecDeque;

/// Population size, tournament sample size and the evaluation budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvolutionSettings {
    pub population: usize,
    pub sample: usize,
    pub cycles: usize,
}

impl Default for EvolutionSettings {
    fn default() -> Self {
        EvolutionSettings {
            population: 64,
            sample: 16,
            cycles: 500,
        }
    }
}

/// An evaluated arch (of the topology space unless said otherwise).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Member<A = Arch> {
    pub arch: A,
    pub fitness: f64,
}

/// The state of a regularized evolution, advanced one evaluation at a time by
/// [`Evolution::step`] (so tests can watch aging happen).
#[derive(Clone, Debug)]
pub struct Evolution<A = Arch> {
    pub settings: EvolutionSettings,
    pub higher_is_better: bool,
    rng: SplitMix64,
    /// Oldest first.
    pub population: VecDeque<Member<A>>,
    /// Every evaluation in order.
    pub history: Vec<Member<A>>,
}

impl<A: SearchArch> Evolution<A> {
    /// # Panics
    /// If the population or the tournament sample is empty.
    pub fn new(settings: EvolutionSettings, higher_is_better: bool, seed: u64) -> Evolution<A> {
        assert!(
            settings.population > 0 && settings.sample > 0,
            "population and sample must be at least 1"
        );
        Evolution {
            settings,
            higher_is_better,
            rng: SplitMix64::new(seed),
            population: VecDeque::with_capacity(settings.population + 1),
            history: Vec::with_capacity(settings.cycles),
        }
    }

    /// Whether the evaluation budget is spent.
    pub fn done(&self) -> bool {
        self.history.len() >= self.settings.cycles
    }

    /// One evaluation: a random arch while the population fills, else one tournament,
    /// mutation and aging. Returns the new member.
    pub fn step(&mut self, fitness: &mut impl FnMut(&A) -> f64) -> Member<A> {
        let arch = if self.population.len() < self.settings.population {
            A::random(&mut self.rng)
        } else {
            let parent = self.tournament();
            parent.mutate(&mut self.rng)
        };
        let member = Member {
            arch,
            fitness: fitness(&arch),
        };
        self.population.push_back(member);
        if self.population.len() > self.settings.population {
            self.population.pop_front();
        }
        self.history.push(member);
        member
    }

    /// The fittest of `sample` members drawn with replacement (first drawn on ties).
    fn tournament(&mut self) -> A {
        let mut best: Option<(A, f64)> = None;
        for _ in 0..self.settings.sample {
            let m = self.population[self.rng.below(self.population.len() as u64) as usize];
            let key = oriented(m.fitness, self.higher_is_better);
            if best.is_none_or(|(_, b)| key > b) {
                best = Some((m.arch, key));
            }
        }
        best.expect("sample is at least 1").0
    }

    /// The fittest member of the history (first seen on ties).
    pub fn best(&self) -> Option<Member<A>> {
        let values: Vec<f64> = self.history.iter().map(|m| m.fitness).collect();
        super::best_position(&values, self.higher_is_better).map(|i| self.history[i])
    }
}

/// `arch` with one uniformly chosen edge changed to a different, uniformly chosen op.
pub fn mutate(arch: &Arch, rng: &mut SplitMix64) -> Arch {
    let edge = rng.below(arch.ops.len() as u64) as usize;
    let current = arch.ops[edge].index();
    // One of the other four ops: skip over the current one.
    let mut op = rng.below(Op::ALL.len() as u64 - 1) as usize;
    if op >= current {
        op += 1;
    }
    let mut child = *arch;
    child.ops[edge] = Op::ALL[op];
    child
}

/// `arch` with one uniformly chosen position changed to a different, uniformly chosen
/// width of [`SSS_WIDTHS`].
pub fn mutate_width(arch: &SizeArch, rng: &mut SplitMix64) -> SizeArch {
    let mut widths = arch.widths();
    let position = rng.below(widths.len() as u64) as usize;
    let current = SSS_WIDTHS
        .iter()
        .position(|&w| w == widths[position])
        .expect("a size arch holds allowed widths");
    // One of the other seven widths: skip over the current one.
    let mut choice = rng.below(SSS_WIDTHS.len() as u64 - 1) as usize;
    if choice >= current {
        choice += 1;
    }
    widths[position] = SSS_WIDTHS[choice];
    SizeArch::new(widths).expect("widths drawn from SSS_WIDTHS")
}

/// Runs a regularized evolution to the end of its budget, in the space of the arch type
/// `A` (the fitness's argument).
pub fn regularized_evolution<A: SearchArch>(
    settings: EvolutionSettings,
    higher_is_better: bool,
    seed: u64,
    mut fitness: impl FnMut(&A) -> f64,
) -> Evolution<A> {
    let mut evo = Evolution::new(settings, higher_is_better, seed);
    while !evo.done() {
        evo.step(&mut fitness);
    }
    evo
}
