//! The library entry point: one arch, a chosen set of scores, one backend. Builds the plan
//! and the initial weights once, and shares passes between scores that can share them.

use super::knas::{knas, KnasStats};
use super::linear_regions::{linear_regions_network, linear_regions_released, ReleasedSettings};
use super::naswot::naswot;
use super::ntk::{ntk_condition, NtkMode};
use super::zico::zico;
use super::Score;
use crate::backend::{Backend, Executor};
use crate::data::Batch;
use crate::net::Plan;
use crate::space::{count_flops, count_params, Arch, Cell, MacroConfig};

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
                Score::Params | Score::Flops => 1,
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
    let cell = Cell::from(*arch);
    let plan = Plan::build(&cell, &settings.config)?;
    let mut exec = Executor::with_init(be, &plan, settings.seed);
    // Scores computed together from one pass, filled on first use.
    let mut knas_stats = None;
    let mut values = Vec::with_capacity(scores.len());
    for score in scores {
        let value = match score {
            Score::Naswot => naswot(&mut exec, data, settings.naswot_batch),
            Score::LinearRegions => linear_regions_released(
                be,
                &cell,
                data,
                settings.seed,
                &ReleasedSettings::default(),
            )?,
            Score::LinearRegionsNet => {
                linear_regions_network(&mut exec, data, settings.naswot_batch)
            }
            Score::Ntk => ntk_condition(&mut exec, data, settings.ntk_batch, NtkMode::FrozenStats),
            Score::NtkExact => ntk_condition(&mut exec, data, settings.ntk_batch, NtkMode::Exact),
            Score::Mgm | Score::MgmTrace | Score::MgmEig => {
                let stats: &KnasStats =
                    knas_stats.get_or_insert_with(|| knas(&mut exec, data, settings.batch));
                match score {
                    Score::Mgm => stats.mgm,
                    Score::MgmTrace => stats.trace,
                    _ => stats.top_eigenvalue,
                }
            }
            Score::Zico => zico(&mut exec, data, settings.batch),
            Score::Params => count_params(&cell, &settings.config) as f64,
            Score::Flops => count_flops(&cell, &settings.config) as f64,
            other => anyhow::bail!("score {other} is not available yet"),
        };
        values.push(value);
    }
    Ok(values)
}
