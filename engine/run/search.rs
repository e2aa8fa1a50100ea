//! Searching with a training-free score: the four strategies of engine/search run on a
//! backend, with the fitness cache (by benchmark index, and by class of archs known to
//! score equal) and TE-NAS's supernet measurements (kappa, linear regions).
//!
//! A job searches one space ([`SearchJob::space`]): random and top-k sample benchmark
//! indices of it, evolution draws and mutates its archs (edge ops in the topology space,
//! widths in the size space), the fitness scores the space's arch at an index. Pruning
//! works on the topology space's supernet only.
//!
//! The algorithms live in engine/search; this file runs them on the scores: one
//! minibatch (drawn with `--seed`) and one weights seed for every arch, values cached by
//! benchmark index so no arch is scored twice within a search, and the accuracy table of
//! `--truth` to report (or, for `topk`, to make) the final pick.
//!
//! Seeds: the minibatch and the weights use `--seed` (as `score` does, so a search's
//! values equal `score`'s); run r of `random` samples with `Seeds::search(r)`, and
//! `topk` and `evolution` draw with `Seeds::search(0)` (so `topk` samples the archs of
//! `random`'s first run).
//!
//! How `prune` measures (interpretations of TE-NAS's released code):
//! - kappa: [`ntk_condition`] on the whole TinyNetwork of the supernet cell (default C=3,
//!   N=1, as released), `FrozenStats` mode (`--score ntk_exact` for the exact Jacobian), on
//!   the first `ntk_batch` images (the paper's 32 unless `--batch`);
//! - R: the released linear-region setting (1-channel single cell plus `lastact`, 3x3
//!   crops; `--lr-batches` x `--lr-batch-size`, default 3 x 1000) on the supernet cell.
//!   The crops are drawn once with `--seed` and reused for every measurement, as the
//!   released code reseeds its sampler identically each time;
//! - repeat r draws weights with seed `--seed + r`; a supernet and its copy without one op
//!   get identical weights for their common parameters, since initial values are keyed by
//!   parameter name (the released code copies them).

use super::device::AnyBackend;
use super::RunError;
use crate::backend::{Backend, Executor};
use crate::data::{random_crops, Batch, Seeds};
use crate::net::Plan;
use crate::proxy::linear_regions::ReleasedSettings;
use crate::proxy::linear_regions::{distinct_patterns, patterns_on_crops};
use crate::proxy::ntk::{ntk_condition, NtkMode};
use crate::proxy::scorer::{score_arch_or_dead_values, ScoreSettings};
use crate::proxy::Score;
use crate::search::evolution::{regularized_evolution, EvolutionSettings, Member};
use crate::search::prune::{prune_search, Round};
use crate::search::random::random_search;
use crate::search::topk::{topk_search, TopK};
use crate::search::SearchArch;
use crate::space::{AnyArch, Arch, Cell, SizeArch, Space};
use crate::with_backend;
use anyhow::{anyhow, Context};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// A search strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// NASWOT's: the best of a random sample.
    Random,
    /// Regularized evolution (Real et al.) with the score as fitness.
    Evolution,
    /// KNAS's: the k best of a sample by score, then the benchmark's accuracy.
    Topk,
    /// TE-NAS's supernet pruning by kappa and linear regions.
    Prune,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::Random,
        Strategy::Evolution,
        Strategy::Topk,
        Strategy::Prune,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::Evolution => "evolution",
            Strategy::Topk => "topk",
            Strategy::Prune => "prune",
        }
    }

    /// The score of the strategy's paper: KNAS's mgm for topk, TE-NAS's frozen-statistics
    /// NTK for prune, NASWOT otherwise.
    pub fn default_score(self) -> Score {
        match self {
            Strategy::Topk => Score::Mgm,
            Strategy::Prune => Score::Ntk,
            Strategy::Random | Strategy::Evolution => Score::Naswot,
        }
    }

    /// Whether this strategy can search `space`, or why not: pruning starts from the
    /// topology space's supernet (every op on every edge), which the size space, one fixed
    /// cell with five widths, does not have.
    pub fn check_space(self, space: Space) -> Result<(), RunError> {
        if self == Strategy::Prune && space != Space::Tss {
            return Err(RunError::input(anyhow!(
                "prune is defined on the topology space's supernet only (every op on every \
                 cell edge, pruned to one op per edge); the {space} space has one fixed cell: \
                 search it with random, evolution or topk"
            )));
        }
        Ok(())
    }

    /// Whether `score` can drive this strategy, or why not: prune ranks by an NTK's kappa.
    pub fn check_score(self, score: Score) -> Result<(), RunError> {
        if self == Strategy::Prune && !matches!(score, Score::Ntk | Score::NtkExact) {
            return Err(RunError::input(anyhow!(
                "prune ranks by kappa and linear regions: --score must be `ntk` or `ntk_exact`, not {score}"
            )));
        }
        Ok(())
    }

    /// The scores a search needs a minibatch for.
    pub fn scores_needed(self, score: Score) -> Vec<Score> {
        match self {
            Strategy::Prune => vec![score, Score::LinearRegions],
            _ => vec![score],
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Strategy, String> {
        Strategy::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("{s:?} is not random, evolution, topk or prune"))
    }
}

/// What a search reports as it goes.
pub trait SearchProgress {
    /// The search starts: `total` steps of the kind `unit` names.
    fn start(&mut self, total: usize, unit: &'static str);
    fn tick(&mut self);
    /// Whether the caller wants the search to stop: no further arch is scored and the
    /// search returns [`RunError::Stopped`].
    fn interrupted(&self) -> bool {
        false
    }
}

/// A search: the space, the score, its minibatch and settings, the backend it runs on.
pub struct SearchJob<'a> {
    /// The space searched: benchmark indices are this space's.
    pub space: Space,
    pub backend: &'a AnyBackend,
    pub score: Score,
    pub batch: &'a Batch,
    pub settings: &'a ScoreSettings,
    /// Scores known already (a results file of the same score, data, seed and network),
    /// by benchmark index: not scored again.
    pub known: HashMap<usize, f64>,
}

/// A result, and how many archs the search scored (one per class of archs known to score
/// equal; not those known already).
pub struct Searched<T> {
    pub result: T,
    pub scored: usize,
}

impl SearchJob<'_> {
    fn seeds(&self) -> Seeds {
        Seeds(self.settings.seed)
    }

    /// NASWOT's random search, `runs` times: the best of `n` archs of `pool` per run, each
    /// run sampling with its own derived seed. Per run: (index, score).
    pub fn random(
        &self,
        pool: &[usize],
        n: usize,
        runs: usize,
        progress: &mut dyn SearchProgress,
    ) -> Result<Searched<Vec<(usize, f64)>>, RunError> {
        let higher = self.score.higher_is_better();
        let mut fitness = Fitness::new(self, n * runs, progress);
        let chosen = (0..runs)
            .map(|r| {
                random_search(pool, n, self.seeds().search(r as u64), higher, |i| {
                    fitness.value(i)
                })
                .chosen()
            })
            .collect();
        fitness.finish(chosen)
    }

    /// Regularized evolution in the job's space (edge-op mutations in the topology space,
    /// width mutations in the size space); the best member found.
    pub fn evolution(
        &self,
        settings: EvolutionSettings,
        progress: &mut dyn SearchProgress,
    ) -> Result<Searched<Member<AnyArch>>, RunError> {
        match self.space {
            Space::Tss => self.evolve::<Arch>(settings, progress),
            Space::Sss => self.evolve::<SizeArch>(settings, progress),
        }
    }

    fn evolve<A: SearchArch>(
        &self,
        settings: EvolutionSettings,
        progress: &mut dyn SearchProgress,
    ) -> Result<Searched<Member<AnyArch>>, RunError> {
        let mut fitness = Fitness::new(self, settings.cycles, progress);
        let evo = regularized_evolution(
            settings,
            self.score.higher_is_better(),
            self.seeds().search(0),
            |arch: &A| fitness.value(arch.benchmark_index()),
        );
        let best = evo.best().expect("at least one evaluation");
        fitness.finish(Member {
            arch: best.arch.into(),
            fitness: best.fitness,
        })
    }

    /// KNAS's top-k: the `k` best by score of `n` archs sampled from `pool`.
    pub fn topk(
        &self,
        pool: &[usize],
        n: usize,
        k: usize,
        progress: &mut dyn SearchProgress,
    ) -> Result<Searched<TopK>, RunError> {
        let mut fitness = Fitness::new(self, n, progress);
        let result = topk_search(
            pool,
            n,
            k,
            self.seeds().search(0),
            self.score.higher_is_better(),
            |i| fitness.value(i),
        );
        fitness.finish(result)
    }

    /// TE-NAS's pruning of the full supernet: kappa (of this job's NTK score) and linear
    /// regions (`lr`) averaged over `repeats` weight draws; the cell left and the rounds.
    pub fn prune(
        &self,
        repeats: usize,
        lr: &ReleasedSettings,
        progress: &mut dyn SearchProgress,
    ) -> Result<(Cell, Vec<Round>), RunError> {
        Strategy::Prune.check_space(self.space)?;
        let mode = if self.score == Score::NtkExact {
            NtkMode::Exact
        } else {
            NtkMode::FrozenStats
        };
        let start = Cell::full_supernet();
        // The released code reseeds its crop sampler identically for every measurement:
        // one set of crops serves the whole search; only the weights change between repeats.
        let crops = random_crops(
            self.batch,
            lr.batches * lr.batch_size,
            lr.crop,
            lr.channels,
            self.seeds().crops(),
        );
        let weight_seed = |r: usize| self.seeds().repeat_weights(r);
        progress.start(2 * repeats * prune_measurements(&start), "measurements");
        let error: RefCell<Option<anyhow::Error>> = RefCell::new(None);
        let stopped = std::cell::Cell::new(false);
        let progress = RefCell::new(progress);
        // Each measurement: NaN once one has failed (the search then ends unread).
        let measure = |what: &str, value: &dyn Fn() -> anyhow::Result<f64>| -> f64 {
            progress.borrow_mut().tick();
            if progress.borrow().interrupted() {
                stopped.set(true);
            }
            if error.borrow().is_some() || stopped.get() {
                return f64::NAN;
            }
            value().unwrap_or_else(|e| {
                *error.borrow_mut() = Some(e.context(what.to_string()));
                f64::NAN
            })
        };
        let kappa = |cell: &Cell, r: usize| -> f64 {
            measure("kappa of a supernet", &|| {
                let plan = Plan::build(cell, &self.settings.config)
                    .map_err(|e| anyhow!(e).context("building the NTK supernet"))?;
                with_backend!(self.backend, be => {
                    let mut exec = Executor::with_init(be, &plan, weight_seed(r));
                    let kappa = ntk_condition(&mut exec, self.batch, self.settings.ntk_batch, mode);
                    be.status().context("the backend failed computing kappa")?;
                    Ok(kappa)
                })
            })
        };
        let regions = |cell: &Cell, r: usize| -> f64 {
            measure("linear regions of a supernet", &|| {
                with_backend!(self.backend, be => {
                    let patterns = patterns_on_crops(be, cell, &crops, lr, weight_seed(r))
                        .context("single-cell plan")?;
                    be.status().context("the backend failed computing linear regions")?;
                    Ok(distinct_patterns(&patterns) as f64)
                })
            })
        };
        let (cell, rounds) = prune_search(start, repeats, kappa, regions);
        if stopped.get() {
            return Err(RunError::Stopped);
        }
        match error.into_inner() {
            Some(e) => Err(RunError::Failed(e)),
            None => Ok((cell, rounds)),
        }
    }
}

/// Measurements of one supernet (kappa and R) summed over a pruning search, from the
/// full supernet: every candidate of every round plus each round's own supernet.
fn prune_measurements(start: &Cell) -> usize {
    let mut lens: Vec<usize> = start.edges.iter().map(|s| s.len()).collect();
    let mut total = 0;
    while lens.iter().any(|&l| l > 1) {
        total += 1 + lens.iter().filter(|&&l| l > 1).sum::<usize>();
        for l in lens.iter_mut().filter(|l| **l > 1) {
            *l -= 1;
        }
    }
    total
}

/// The fitness of a search: the score by benchmark index (of the job's space), each class
/// of archs known to score equal scored once (in the size space every arch is its own
/// class); after a failure every value is NaN and `finish` reports it.
struct Fitness<'a, 'p> {
    job: &'a SearchJob<'a>,
    cache: HashMap<usize, f64>,
    by_class: HashMap<String, f64>,
    scored: usize,
    error: Option<anyhow::Error>,
    stopped: bool,
    progress: &'p mut dyn SearchProgress,
}

impl<'a, 'p> Fitness<'a, 'p> {
    fn new(
        job: &'a SearchJob<'a>,
        calls: usize,
        progress: &'p mut dyn SearchProgress,
    ) -> Fitness<'a, 'p> {
        progress.start(calls, "evaluations");
        Fitness {
            job,
            cache: job.known.clone(),
            by_class: HashMap::new(),
            scored: 0,
            error: None,
            stopped: false,
            progress,
        }
    }

    fn value(&mut self, index: usize) -> f64 {
        self.progress.tick();
        if let Some(&v) = self.cache.get(&index) {
            return v;
        }
        self.stopped |= self.progress.interrupted();
        if self.error.is_some() || self.stopped {
            return f64::NAN;
        }
        let arch = self
            .job
            .space
            .arch_of_index(index)
            .expect("benchmark index");
        let (score, batch, settings) = (self.job.score, self.job.batch, self.job.settings);
        let class = arch.class_key(score.class_key());
        if let Some(&v) = self.by_class.get(&class) {
            self.cache.insert(index, v);
            return v;
        }
        match with_backend!(self.job.backend, be => score_arch_or_dead_values(be, arch, &[score], batch, settings))
        {
            Ok((v, _dead)) => {
                self.scored += 1;
                self.cache.insert(index, v[0]);
                self.by_class.insert(class, v[0]);
                v[0]
            }
            Err(e) => {
                self.error = Some(e.context(format!("scoring arch {index}")));
                f64::NAN
            }
        }
    }

    fn finish<T>(self, result: T) -> Result<Searched<T>, RunError> {
        match self.error {
            _ if self.stopped => Err(RunError::Stopped),
            Some(e) => Err(RunError::Failed(e)),
            None => Ok(Searched {
                result,
                scored: self.scored,
            }),
        }
    }
}
