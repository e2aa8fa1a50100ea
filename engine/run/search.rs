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
use crate::proxy::aggregate::SetScore;
use crate::proxy::linear_regions::ReleasedSettings;
use crate::proxy::linear_regions::{distinct_patterns, patterns_on_crops};
use crate::proxy::ntk::{ntk_condition, NtkMode};
use crate::proxy::scorer::{score_arch_or_dead_values, ScoreSettings};
use crate::proxy::{Score, UnknownScore};
use crate::search::evolution::{regularized_evolution, EvolutionSettings, Member};
use crate::search::prune::{prune_search, Round};
use crate::search::random::{random_sample, random_search};
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

    /// Whether `score` can drive this strategy, or why not: prune ranks by an NTK's kappa;
    /// evolution compares each child with archs scored before, so it takes a score of each
    /// arch, not one relative to a set.
    pub fn check_score(self, score: Ranking) -> Result<(), RunError> {
        match (self, score) {
            (Strategy::Prune, Ranking::Arch(Score::Ntk | Score::NtkExact)) => Ok(()),
            (Strategy::Prune, _) => Err(RunError::input(anyhow!(
                "prune ranks by kappa and linear regions: --score must be `ntk` or `ntk_exact`, not {score}"
            ))),
            (Strategy::Evolution, Ranking::Set(set)) => Err(RunError::input(anyhow!(
                "{} ranks a set of archs together, but evolution scores one arch at a time: \
                 search by {} with random or topk (the set is the sample), or evolve by one of \
                 its terms",
                set.name,
                set.name
            ))),
            _ => Ok(()),
        }
    }

    /// The scores a search needs a minibatch for.
    pub fn scores_needed(self, score: Ranking) -> Vec<Score> {
        let mut scores = score.scores();
        if self == Strategy::Prune {
            scores.push(Score::LinearRegions);
        }
        scores
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

/// What a search ranks archs by: a score of each arch, or a set score over the archs a
/// protocol ranks together (random: the run's sample; topk: the sample it keeps k of).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ranking {
    Arch(Score),
    Set(SetScore),
}

impl Ranking {
    pub fn name(self) -> &'static str {
        match self {
            Ranking::Arch(score) => score.name(),
            Ranking::Set(set) => set.name,
        }
    }

    /// Set scores rank higher-is-better (a sum of log-ranks).
    pub fn higher_is_better(self) -> bool {
        match self {
            Ranking::Arch(score) => score.higher_is_better(),
            Ranking::Set(_) => true,
        }
    }

    /// The per-arch scores computed for it.
    pub fn scores(self) -> Vec<Score> {
        match self {
            Ranking::Arch(score) => vec![score],
            Ranking::Set(set) => set.terms.to_vec(),
        }
    }
}

impl From<Score> for Ranking {
    fn from(score: Score) -> Ranking {
        Ranking::Arch(score)
    }
}

impl fmt::Display for Ranking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Ranking {
    type Err = UnknownScore;

    fn from_str(s: &str) -> Result<Ranking, UnknownScore> {
        match SetScore::named(s) {
            Some(set) => Ok(Ranking::Set(set)),
            None => s.parse().map(Ranking::Arch),
        }
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
    pub score: Ranking,
    pub batch: &'a Batch,
    pub settings: &'a ScoreSettings,
    /// Scores known already (a results file of the same score, data, seed and network),
    /// by benchmark index: not scored again (a score of each arch only).
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
                let seed = self.seeds().search(r as u64);
                let set = fitness.set_values(pool, n, seed);
                random_search(pool, n, seed, higher, |i| fitness.of(i, set.as_ref())).chosen()
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
        let seed = self.seeds().search(0);
        let set = fitness.set_values(pool, n, seed);
        let result = topk_search(pool, n, k, seed, self.score.higher_is_better(), |i| {
            fitness.of(i, set.as_ref())
        });
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
        let mode = if self.score == Ranking::Arch(Score::NtkExact) {
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
/// class); after a failure every value is NaN and `finish` reports it. For a set score,
/// the values of its terms by index, ranked over a sample by [`Fitness::over_sample`].
struct Fitness<'a, 'p> {
    job: &'a SearchJob<'a>,
    cache: HashMap<usize, Vec<f64>>,
    by_class: HashMap<String, Vec<f64>>,
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
            cache: job.known.iter().map(|(&i, &v)| (i, vec![v])).collect(),
            by_class: HashMap::new(),
            scored: 0,
            error: None,
            stopped: false,
            progress,
        }
    }

    /// The score of a score of each arch ([`Ranking::Arch`]).
    fn value(&mut self, index: usize) -> f64 {
        self.values(index)[0]
    }

    /// The values of [`Ranking::scores`] at `index` (NaN after a failure or a stop).
    fn values(&mut self, index: usize) -> Vec<f64> {
        self.progress.tick();
        if let Some(v) = self.cache.get(&index) {
            return v.clone();
        }
        let scores = self.job.score.scores();
        let failed = vec![f64::NAN; scores.len()];
        self.stopped |= self.progress.interrupted();
        if self.error.is_some() || self.stopped {
            return failed;
        }
        let arch = self
            .job
            .space
            .arch_of_index(index)
            .expect("benchmark index");
        let (batch, settings) = (self.job.batch, self.job.settings);
        let key = scores.iter().map(|s| s.class_key()).max().expect("a score");
        let class = arch.class_key(key);
        if let Some(v) = self.by_class.get(&class) {
            self.cache.insert(index, v.clone());
            return v.clone();
        }
        match with_backend!(self.job.backend, be => score_arch_or_dead_values(be, arch, &scores, batch, settings))
        {
            Ok((v, _dead)) => {
                self.scored += 1;
                self.cache.insert(index, v.clone());
                self.by_class.insert(class, v.clone());
                v
            }
            Err(e) => {
                self.error = Some(e.context(format!("scoring arch {index}")));
                failed
            }
        }
    }

    /// The fitness at `index`: a score of each arch as it is asked, a set score's value
    /// from its values over the sample ([`Fitness::set_values`]).
    fn of(&mut self, index: usize, set: Option<&HashMap<usize, f64>>) -> f64 {
        match set {
            Some(values) => values[&index],
            None => self.value(index),
        }
    }

    /// For a set score, its value at each arch of the sample a search with `seed` draws
    /// ([`random_sample`]), ranked over that sample (its terms computed first); `None` for
    /// a score of each arch.
    fn set_values(&mut self, pool: &[usize], n: usize, seed: u64) -> Option<HashMap<usize, f64>> {
        match self.job.score {
            Ranking::Arch(_) => None,
            Ranking::Set(set) => {
                let sample = random_sample(pool, n, seed);
                let terms: Vec<Vec<f64>> = sample.iter().map(|&i| self.values(i)).collect();
                let columns: Vec<Vec<f64>> = (0..set.terms.len())
                    .map(|t| terms.iter().map(|v| v[t]).collect())
                    .collect();
                let values = set.over(&columns);
                Some(sample.into_iter().zip(values).collect())
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
