//! A search as a front end asks for it (the options of `nasrank search` and of the Python
//! package's `nasrank.search`), checked, run, and reported as one JSON object: the object
//! `nasrank search --json` prints, from which the CLI's text report is also drawn. The
//! report records the space searched (`space`), and every arch in it is that space's
//! (index and arch string).

use super::data::DataSource;
use super::device::Device;
use super::score::{check_space, check_swap_regularizer};
use super::search::{Ranking, SearchJob, SearchProgress, Searched, Strategy};
use super::RunError;
use crate::data::Seeds;
use crate::proxy::linear_regions::ReleasedSettings;
use crate::proxy::swap::SwapRegularizer;
use crate::proxy::Score;
use crate::search::evolution::EvolutionSettings;
use crate::search::prune::Round;
use crate::search::random::mean_std;
use crate::search::topk::pick_by_accuracy;
use crate::space::{index_of_arch, Space, EDGES};
use anyhow::anyhow;
use serde_json::{json, Value};
use std::collections::HashMap;

/// What a search is asked to do. `None` options take the strategy's defaults
/// ([`SearchRequest::samples`] and the others).
#[derive(Clone, Debug)]
pub struct SearchRequest {
    pub strategy: Strategy,
    /// The space searched (default the topology space); `prune` searches the topology
    /// space only.
    pub space: Space,
    /// The score that drives it (default: [`Strategy::default_score`]): a score of each
    /// arch, or a set score ranked over each sample (random, topk).
    pub score: Option<Ranking>,
    pub data: DataSource,
    pub batch: Option<usize>,
    pub seed: u64,
    pub device: Device,
    /// The network (default C=16, N=5; C=3, N=1 for prune, as TE-NAS's released code).
    pub channels: Option<usize>,
    pub cells: Option<usize>,
    /// Accuracies by benchmark index, to report the chosen archs' (topk picks by them, and
    /// samples from the archs that have one unless `pool` is given).
    pub truth: Option<HashMap<usize, f64>>,
    /// The accuracy column `truth` was read from, for the report.
    pub metric: String,
    /// random, topk: the archs to sample from (default: the whole space; for topk with
    /// `truth`, the archs that have an accuracy there: [`SearchRequest::sample_pool`]).
    pub pool: Option<Vec<usize>>,
    /// Scores known already, by benchmark index: not computed again.
    pub known: HashMap<usize, f64>,
    pub samples: Option<usize>,
    pub runs: Option<usize>,
    pub k: Option<usize>,
    pub population: Option<usize>,
    pub tournament: Option<usize>,
    pub cycles: Option<usize>,
    pub repeats: Option<usize>,
    pub lr_batches: Option<usize>,
    pub lr_batch_size: Option<usize>,
    /// `swap_reg`'s mu and sigma when it is the score (None: the space's default).
    pub swap_regularizer: Option<SwapRegularizer>,
}

impl SearchRequest {
    /// A request with every option at its default.
    pub fn new(strategy: Strategy, data: DataSource) -> SearchRequest {
        SearchRequest {
            strategy,
            space: Space::Tss,
            score: None,
            data,
            batch: None,
            seed: 0,
            device: Device::Cpu,
            channels: None,
            cells: None,
            truth: None,
            metric: "cifar10_test".into(),
            pool: None,
            known: HashMap::new(),
            samples: None,
            runs: None,
            k: None,
            population: None,
            tournament: None,
            cycles: None,
            repeats: None,
            lr_batches: None,
            lr_batch_size: None,
            swap_regularizer: None,
        }
    }

    pub fn score(&self) -> Ranking {
        self.score
            .unwrap_or(Ranking::Arch(self.strategy.default_score()))
    }

    /// Archs sampled per run: the paper's (NASWOT 100, KNAS 300) unless given.
    pub fn samples(&self) -> usize {
        self.samples.unwrap_or(if self.strategy == Strategy::Topk {
            300
        } else {
            100
        })
    }

    /// (channels, cells) of the network scored.
    pub fn network(&self) -> (usize, usize) {
        let prune = self.strategy == Strategy::Prune;
        (
            self.channels.unwrap_or(if prune { 3 } else { 16 }),
            self.cells.unwrap_or(if prune { 1 } else { 5 }),
        )
    }

    /// prune: weight draws each change is averaged over (TE-NAS: 3).
    pub fn repeats(&self) -> usize {
        self.repeats.unwrap_or(3)
    }

    /// prune: the linear-region setting (TE-NAS: 3 x 1000 crops).
    pub fn lr_settings(&self) -> ReleasedSettings {
        ReleasedSettings {
            batches: self.lr_batches.unwrap_or(3),
            batch_size: self.lr_batch_size.unwrap_or(1000),
            ..ReleasedSettings::default()
        }
    }

    /// evolution: population, tournament and cycles.
    pub fn evolution_settings(&self) -> EvolutionSettings {
        let defaults = EvolutionSettings::default();
        EvolutionSettings {
            population: self.population.unwrap_or(defaults.population),
            sample: self.tournament.unwrap_or(defaults.sample),
            cycles: self.cycles.unwrap_or(defaults.cycles),
        }
    }

    /// How many archs random and topk sample from ([`SearchRequest::sample_pool`]).
    pub fn pool_len(&self) -> usize {
        self.sample_pool().0.len()
    }

    /// topk without `pool` but with `truth`: the archs with an accuracy there. KNAS's final
    /// pick looks every kept arch up, so sampling archs the table lacks would leave the
    /// pick to chance (the dev tables hold 1,000 of 15,625 and 2,000 of 32,768 archs).
    fn truth_pool(&self) -> Option<&HashMap<usize, f64>> {
        match (self.strategy, &self.pool, &self.truth) {
            (Strategy::Topk, None, Some(truth)) => Some(truth),
            _ => None,
        }
    }

    /// The benchmark indices random and topk sample from, and where they come from:
    /// `"from"` (the given pool, in its order), `"truth"` (topk without a pool: the archs
    /// with an accuracy in `truth`, ascending) or `"space"` (every arch of the space).
    pub fn sample_pool(&self) -> (Vec<usize>, &'static str) {
        match (&self.pool, self.truth_pool()) {
            (Some(pool), _) => (pool.clone(), "from"),
            (None, Some(truth)) => {
                let mut pool: Vec<usize> = truth
                    .iter()
                    .filter(|(_, acc)| !acc.is_nan())
                    .map(|(&i, _)| i)
                    .collect();
                pool.sort_unstable();
                (pool, "truth")
            }
            (None, None) => ((0..self.space.num_archs()).collect(), "space"),
        }
    }

    /// Options that belong to other strategies, zero counts, a score the strategy cannot
    /// use and samples larger than the pool are bad input.
    pub fn check(&self) -> Result<(), RunError> {
        self.check_options()?;
        if matches!(self.strategy, Strategy::Random | Strategy::Topk) {
            let n = self.samples();
            let (pool, source) = self.sample_pool();
            if n > pool.len() {
                let what = match source {
                    "truth" => format!(
                        " (topk without --from samples the archs with a {} in --truth)",
                        self.metric
                    ),
                    _ => String::new(),
                };
                return Err(RunError::input(anyhow!(
                    "--samples {n} exceeds the {} archs to sample from{what}",
                    pool.len()
                )));
            }
            let num_archs = self.space.num_archs();
            if let Some(&bad) = pool.iter().find(|&&i| i >= num_archs) {
                return Err(RunError::input(anyhow!(
                    "archs to sample from: index {bad} is not one of the {} space's (0..{num_archs})",
                    self.space
                )));
            }
            let k = self.k.unwrap_or(40);
            if self.strategy == Strategy::Topk && k > n {
                return Err(RunError::input(anyhow!(
                    "--k {k} exceeds --samples {n}: it keeps k of the sample"
                )));
            }
        }
        Ok(())
    }

    /// [`SearchRequest::check`] without what depends on the pool's contents: for a front
    /// end to call before it reads any file.
    pub fn check_options(&self) -> Result<(), RunError> {
        use Strategy::*;
        let owned: [(&str, bool, &[Strategy]); 10] = [
            ("--samples", self.samples.is_some(), &[Random, Topk]),
            ("--from", self.pool.is_some(), &[Random, Topk]),
            ("--runs", self.runs.is_some(), &[Random]),
            ("--k", self.k.is_some(), &[Topk]),
            ("--population", self.population.is_some(), &[Evolution]),
            ("--tournament", self.tournament.is_some(), &[Evolution]),
            ("--cycles", self.cycles.is_some(), &[Evolution]),
            ("--repeats", self.repeats.is_some(), &[Prune]),
            ("--lr-batches", self.lr_batches.is_some(), &[Prune]),
            ("--lr-batch-size", self.lr_batch_size.is_some(), &[Prune]),
        ];
        for (name, given, strategies) in owned {
            if given && !strategies.contains(&self.strategy) {
                return Err(RunError::input(anyhow!(
                    "{name} does not apply to the {} strategy",
                    self.strategy.name()
                )));
            }
        }
        for (name, value) in [
            ("--samples", self.samples),
            ("--runs", self.runs),
            ("--k", self.k),
            ("--population", self.population),
            ("--tournament", self.tournament),
            ("--cycles", self.cycles),
            ("--repeats", self.repeats),
            ("--lr-batches", self.lr_batches),
            ("--lr-batch-size", self.lr_batch_size),
            ("--batch", self.batch),
            ("--channels", self.channels),
            ("--cells", self.cells),
        ] {
            if value == Some(0) {
                return Err(RunError::input(anyhow!("{name} must be at least 1")));
            }
        }
        self.strategy.check_space(self.space)?;
        self.strategy.check_score(self.score())?;
        check_swap_regularizer(
            self.swap_regularizer,
            &self.strategy.scores_needed(self.score()),
        )?;
        let (channels, cells) = self.network();
        check_space(
            self.space,
            &self.strategy.scores_needed(self.score()),
            channels,
            cells,
        )
    }

    /// Checks, reads the data, runs the search and returns its report (the object
    /// `nasrank search --json` prints).
    pub fn run(&self, progress: &mut dyn SearchProgress) -> Result<Value, RunError> {
        self.check()?;
        let score = self.score();
        let (channels, cells) = self.network();
        let be = self.device.backend()?;
        let mut settings = self.data.settings(channels, cells, self.batch, self.seed);
        settings.swap_regularizer = self.swap_regularizer;
        let needed = self.strategy.scores_needed(score);
        settings
            .check(&needed)
            .map_err(|e| RunError::input(anyhow!(e)))?;
        let batch = self.data.minibatch(
            settings.images_needed(&needed),
            Seeds(self.seed).minibatch(),
        )?;
        let job = SearchJob {
            space: self.space,
            backend: &be,
            score,
            batch: &batch,
            settings: &settings,
            known: self.known.clone(),
        };
        let report = Report { request: self, job };
        let mut value = match self.strategy {
            Strategy::Random => report.random(progress),
            Strategy::Evolution => report.evolution(progress),
            Strategy::Topk => report.topk(progress),
            Strategy::Prune => report.prune(progress),
        }?;
        value["space"] = json!(self.space.name());
        if needed.contains(&Score::SwapReg) {
            value["swap_regularizer"] =
                json!(settings.swap_regularizer_for(self.space).to_string());
        }
        Ok(value)
    }
}

/// A running search and what its report needs.
struct Report<'a> {
    request: &'a SearchRequest,
    job: SearchJob<'a>,
}

impl Report<'_> {
    fn accuracy(&self, index: usize) -> Option<f64> {
        self.request.truth.as_ref()?.get(&index).copied()
    }

    fn metric(&self) -> Option<String> {
        self.request
            .truth
            .as_ref()
            .map(|_| self.request.metric.clone())
    }

    fn arch_json(&self, index: usize, value: f64) -> Value {
        let arch = self.request.space.arch_of_index(index);
        json!({
            "index": index,
            "arch": arch.expect("an index of the space").to_string(),
            "score": value,
            "accuracy": self.accuracy(index),
        })
    }

    fn random(&self, progress: &mut dyn SearchProgress) -> Result<Value, RunError> {
        let n = self.request.samples();
        let runs = self.request.runs.unwrap_or(1);
        let (pool, source) = self.request.sample_pool();
        let Searched {
            result: chosen,
            scored,
        } = self.job.random(&pool, n, runs, progress)?;
        let accs: Vec<f64> = chosen
            .iter()
            .filter_map(|&(i, _)| self.accuracy(i))
            .collect();
        let (mean, std) = mean_std(&accs);
        let with_truth = self.request.truth.is_some();
        Ok(json!({
            "strategy": "random",
            "score": self.job.score.name(),
            "samples": n,
            "pool": pool.len(),
            "pool_source": source,
            "scored": scored,
            "metric": self.metric(),
            "runs": chosen.iter().map(|&(i, v)| self.arch_json(i, v)).collect::<Vec<_>>(),
            "mean_accuracy": with_truth.then_some(mean),
            "std_accuracy": with_truth.then_some(std),
        }))
    }

    fn evolution(&self, progress: &mut dyn SearchProgress) -> Result<Value, RunError> {
        let settings = self.request.evolution_settings();
        let Searched {
            result: best,
            scored,
        } = self.job.evolution(settings, progress)?;
        let index = best.arch.index();
        Ok(json!({
            "strategy": "evolution",
            "score": self.job.score.name(),
            "population": settings.population,
            "tournament": settings.sample,
            "cycles": settings.cycles,
            "scored": scored,
            "metric": self.metric(),
            "best": self.arch_json(index, best.fitness),
        }))
    }

    fn topk(&self, progress: &mut dyn SearchProgress) -> Result<Value, RunError> {
        let n = self.request.samples();
        let k = self.request.k.unwrap_or(40);
        let (pool, source) = self.request.sample_pool();
        let Searched { result, scored } = self.job.topk(&pool, n, k, progress)?;
        let pick = self
            .request
            .truth
            .as_ref()
            .and_then(|_| pick_by_accuracy(&result.kept, |i| self.accuracy(i)));
        let picked = pick.map(|(i, _)| {
            let value = result.kept.iter().find(|(j, _)| *j == i).expect("kept").1;
            self.arch_json(i, value)
        });
        Ok(json!({
            "strategy": "topk",
            "score": self.job.score.name(),
            "samples": n,
            "k": k,
            "pool": pool.len(),
            "pool_source": source,
            "scored": scored,
            "metric": self.metric(),
            "kept": result.kept.iter().map(|&(i, v)| self.arch_json(i, v)).collect::<Vec<_>>(),
            "pick": picked,
        }))
    }

    fn prune(&self, progress: &mut dyn SearchProgress) -> Result<Value, RunError> {
        let (repeats, lr) = (self.request.repeats(), self.request.lr_settings());
        let (cell, rounds) = self.job.prune(repeats, &lr, progress)?;
        let arch = cell.as_arch().expect("pruning ends with one op per edge");
        let index = index_of_arch(&arch);
        Ok(json!({
            "strategy": "prune",
            "kappa": self.job.score.name(),
            "repeats": repeats,
            "metric": self.metric(),
            "rounds": rounds.iter().map(round_json).collect::<Vec<_>>(),
            "index": index,
            "arch": arch.to_string(),
            "accuracy": self.accuracy(index),
        }))
    }
}

fn round_json(round: &Round) -> Value {
    let edge = |e: usize| format!("{}->{}", EDGES[e].0, EDGES[e].1);
    json!({
        "candidates": round.candidates.iter().map(|c| json!({
            "edge": edge(c.edge),
            "op": c.op.name(),
            "kappa_change": c.kappa_change,
            "regions_change": c.regions_change,
            "kappa_rank": c.kappa_rank,
            "regions_rank": c.regions_rank,
        })).collect::<Vec<_>>(),
        "pruned": round.pruned.iter().map(|&(e, op)| json!({"edge": edge(e), "op": op.name()})).collect::<Vec<_>>(),
    })
}
