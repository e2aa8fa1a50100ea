//! The library entry point: one arch, a chosen set of scores, one backend. Builds the plan
//! and the initial weights once, and shares passes between scores that can share them.

use super::counts::{flops, params};
use super::grasp::grasp;
use super::jacob_cov::jacob_cov;
use super::knas::{knas, mgm, KnasStats};
use super::linear_regions::{linear_regions_network, linear_regions_released, ReleasedSettings};
use super::naswot::naswot;
use super::ntk::{ntk_condition, NtkMode};
use super::saliency::{saliency_with, Saliency};
use super::synflow::synflow;
use super::zen::zen;
use super::zico::zico;
use super::Score;
use crate::backend::{Backend, Executor};
use crate::data::Batch;
use crate::net::Plan;
use crate::space::{is_dead, Arch, Cell, MacroConfig};
use anyhow::Context;

/// Settings of a scoring run; [`ScoreSettings::paper_defaults`] follows the papers.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreSettings {
    pub config: MacroConfig,
    /// Seed of the initial weights.
    pub seed: u64,
    /// NASWOT minibatch (paper: 128).
    pub naswot_batch: usize,
    /// Minibatch of the gradient scores (zero-cost paper: 64).
    pub batch: usize,
    /// NTK minibatch (TE-NAS paper: 32; its released code: 72).
    pub ntk_batch: usize,
}

impl ScoreSettings {
    pub fn paper_defaults(config: MacroConfig) -> ScoreSettings {
        ScoreSettings {
            config,
            seed: 0,
            naswot_batch: 128,
            batch: 64,
            ntk_batch: 32,
        }
    }

    /// One minibatch size for every score.
    pub fn set_batch(&mut self, n: usize) {
        self.naswot_batch = n;
        self.batch = n;
        self.ntk_batch = n;
    }

    /// Images a batch must hold for these scores.
    pub fn images_needed(&self, scores: &[Score]) -> usize {
        scores
            .iter()
            .map(|s| match s {
                Score::Naswot | Score::LinearRegionsNet => self.naswot_batch,
                Score::Ntk | Score::NtkExact => self.ntk_batch,
                Score::Params | Score::Flops | Score::Synflow => 1,
                _ => self.batch,
            })
            .max()
            .unwrap_or(1)
    }
}

/// The value of each of `scores` for `arch`, in order.
pub fn score_arch<B: Backend>(
    be: &B,
    arch: &Arch,
    scores: &[Score],
    data: &Batch,
    settings: &ScoreSettings,
) -> anyhow::Result<Vec<f64>> {
    // A backend that failed on an earlier arch stays failed (a sticky device error).
    be.status().context("the backend failed")?;
    let cell = Cell::from(*arch);
    let plan = Plan::build(&cell, &settings.config)?;
    // Scores that run the network share one executor with the arch's initial weights.
    // (linear_regions builds networks of its own.)
    let runs_network = scores
        .iter()
        .any(|s| !s.runs_on_host() && *s != Score::LinearRegions);
    let mut exec = runs_network.then(|| Executor::with_init(be, &plan, settings.seed));
    macro_rules! exec {
        () => {
            exec.as_mut().expect("built when a score runs the network")
        };
    }
    // Scores computed together from one pass, filled on first use.
    let mut knas_stats = None;
    let mut saliency_scores = None;
    let mut values = Vec::with_capacity(scores.len());
    for score in scores {
        let value = match score {
            Score::Naswot => naswot(exec!(), data, settings.naswot_batch),
            Score::LinearRegions => linear_regions_released(
                be,
                &cell,
                data,
                settings.seed,
                &ReleasedSettings::default(),
            )?,
            Score::LinearRegionsNet => linear_regions_network(exec!(), data, settings.naswot_batch),
            Score::Ntk => ntk_condition(exec!(), data, settings.ntk_batch, NtkMode::FrozenStats),
            Score::NtkExact => ntk_condition(exec!(), data, settings.ntk_batch, NtkMode::Exact),
            // One definition of each value whatever else is asked: MGM always from the
            // batched gradient, the others from the Gram.
            Score::Mgm => mgm(exec!(), data, settings.batch),
            Score::MgmTrace | Score::MgmEig => {
                let stats: &KnasStats =
                    knas_stats.get_or_insert_with(|| knas(exec!(), data, settings.batch));
                match score {
                    Score::MgmTrace => stats.trace,
                    _ => stats.top_eigenvalue,
                }
            }
            Score::Snip | Score::GradNorm | Score::Fisher => {
                let s: &Saliency = saliency_scores.get_or_insert_with(|| {
                    let with_fisher = scores.contains(&Score::Fisher);
                    saliency_with(exec!(), data, settings.batch, with_fisher)
                });
                match score {
                    Score::Snip => s.snip,
                    Score::GradNorm => s.grad_norm,
                    _ => s.fisher,
                }
            }
            Score::Synflow => synflow(&plan, settings.seed),
            Score::Grasp => grasp(exec!(), data, settings.batch),
            Score::JacobCov => jacob_cov(exec!(), data, settings.batch),
            Score::Zico => zico(exec!(), data, settings.batch),
            Score::Zen => zen(exec!(), settings.batch, settings.seed),
            Score::Params => params(&cell, &settings.config),
            Score::Flops => flops(&cell, &settings.config),
        };
        values.push(value);
        // A failed primitive makes this value and every later one meaningless.
        be.status()
            .with_context(|| format!("the backend failed while computing {score}"))?;
    }
    Ok(values)
}

/// [`score_arch`], except that on a dead arch ([`is_dead`]) every score with an exact dead
/// value ([`Score::dead_value`]) takes it without running the network; the others are
/// computed as usual. The flag says whether every value was a dead value.
pub fn score_arch_or_dead_values<B: Backend>(
    be: &B,
    arch: &Arch,
    scores: &[Score],
    data: &Batch,
    settings: &ScoreSettings,
) -> anyhow::Result<(Vec<f64>, bool)> {
    if !is_dead(arch) {
        return Ok((score_arch(be, arch, scores, data, settings)?, false));
    }
    let rest: Vec<Score> = scores
        .iter()
        .copied()
        .filter(|s| s.dead_value().is_none())
        .collect();
    let mut computed = if rest.is_empty() {
        Vec::new()
    } else {
        score_arch(be, arch, &rest, data, settings)?
    }
    .into_iter();
    let values = scores
        .iter()
        .map(|s| {
            s.dead_value()
                .unwrap_or_else(|| computed.next().expect("one value per computed score"))
        })
        .collect();
    Ok((values, rest.is_empty()))
}
