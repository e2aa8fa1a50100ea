//! The library entry point: one arch, a chosen set of scores, one backend. Builds the plan
//! and the initial weights once, and shares passes between scores that can share them.

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
}

impl ScoreSettings {
    pub fn paper_defaults(config: MacroConfig) -> ScoreSettings {
        ScoreSettings {
            config,
            seed: 0,
            naswot_batch: 128,
            batch: 64,
        }
    }

    /// One minibatch size for every score.
    pub fn set_batch(&mut self, n: usize) {
        self.naswot_batch = n;
        self.batch = n;
    }

    /// Images a batch must hold for these scores.
    pub fn images_needed(&self, scores: &[Score]) -> usize {
        scores
            .iter()
            .map(|s| match s {
                Score::Naswot => self.naswot_batch,
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
    let _ = (&mut exec, data);
    scores
        .iter()
        .map(|score| match score {
            Score::Params => Ok(count_params(&cell, &settings.config) as f64),
            Score::Flops => Ok(count_flops(&cell, &settings.config) as f64),
            other => anyhow::bail!("score {other} is not available yet"),
        })
        .collect()
}
