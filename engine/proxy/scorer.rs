//! The library entry point: one arch, a chosen set of scores, one backend. Builds the plan
//! and the initial weights once, and shares passes between scores that can share them.

use super::registry::{ArchScoring, Minibatch, WorkerCache};
use super::swap::SwapRegularizer;
use super::Score;
use crate::backend::Backend;
use crate::data::Batch;
use crate::net::Plan;
use crate::space::{is_dead, AnyArch, MacroConfig, Space};
use anyhow::Context;

/// Settings of a scoring run; [`ScoreSettings::paper_defaults`] follows the papers.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreSettings {
    pub config: MacroConfig,
    /// The user's seed: the weights and every other stream of an arch's scoring derive
    /// from it ([`crate::data::Seeds`]).
    pub seed: u64,
    /// NASWOT minibatch (paper: 128).
    pub naswot_batch: usize,
    /// Minibatch of the gradient scores (zero-cost paper: 64).
    pub batch: usize,
    /// NTK minibatch (TE-NAS paper: 32; its released code: 72).
    pub ntk_batch: usize,
    /// SWAP's minibatch (its released code: 16).
    pub swap_batch: usize,
    /// MeCo's minibatch (its released code: 1).
    pub meco_batch: usize,
    /// `swap_reg`'s mu and sigma (None: [`SwapRegularizer::space_default`] of the arch's
    /// space).
    pub swap_regularizer: Option<SwapRegularizer>,
}

impl ScoreSettings {
    pub fn paper_defaults(config: MacroConfig) -> ScoreSettings {
        ScoreSettings {
            config,
            seed: 0,
            naswot_batch: 128,
            batch: 64,
            ntk_batch: 32,
            swap_batch: 16,
            meco_batch: 1,
            swap_regularizer: None,
        }
    }

    /// `swap_reg`'s regulariser for archs of `space`: the settings' own, else the space's
    /// default.
    pub fn swap_regularizer_for(&self, space: Space) -> SwapRegularizer {
        self.swap_regularizer
            .unwrap_or_else(|| SwapRegularizer::space_default(space, &self.config))
    }

    /// One minibatch size for every score.
    pub fn set_batch(&mut self, n: usize) {
        self.naswot_batch = n;
        self.batch = n;
        self.ntk_batch = n;
        self.swap_batch = n;
        self.meco_batch = n;
    }

    /// The images a score of this minibatch kind runs on.
    pub fn batch_of(&self, minibatch: Minibatch) -> usize {
        match minibatch {
            Minibatch::Naswot => self.naswot_batch,
            Minibatch::Ntk => self.ntk_batch,
            Minibatch::Gradient => self.batch,
            Minibatch::Swap => self.swap_batch,
            Minibatch::Meco => self.meco_batch,
            Minibatch::None => 1,
        }
    }

    /// Whether every score can take its minibatch: the message of the first that cannot.
    pub fn check(&self, scores: &[Score]) -> Result<(), String> {
        for score in scores {
            let n = self.batch_of(score.info().minibatch);
            if let Some(max) = score.info().max_images.filter(|&max| n > max) {
                return Err(format!(
                    "{score} takes at most {max} images, not {n} (--batch)"
                ));
            }
        }
        Ok(())
    }

    /// Images a batch must hold for these scores.
    pub fn images_needed(&self, scores: &[Score]) -> usize {
        scores
            .iter()
            .map(|s| self.batch_of(s.info().minibatch))
            .max()
            .unwrap_or(1)
    }
}

/// The value of each of `scores` for `arch` (of either space), in order.
pub fn score_arch<B: Backend>(
    be: &B,
    arch: impl Into<AnyArch>,
    scores: &[Score],
    data: &Batch,
    settings: &ScoreSettings,
) -> anyhow::Result<Vec<f64>> {
    score_arch_kept(
        be,
        arch,
        scores,
        data,
        settings,
        &mut WorkerCache::default(),
    )
}

/// [`score_arch`] for one of a series of archs scored by one worker on one minibatch and
/// seed: the scores may reuse what they kept in `kept` from the earlier ones. The values
/// are those [`score_arch`] gives.
pub fn score_arch_kept<B: Backend>(
    be: &B,
    arch: impl Into<AnyArch>,
    scores: &[Score],
    data: &Batch,
    settings: &ScoreSettings,
    kept: &mut WorkerCache,
) -> anyhow::Result<Vec<f64>> {
    let arch = arch.into();
    // A backend that failed on an earlier arch stays failed (a sticky device error).
    be.status().context("the backend failed")?;
    let plan = Plan::of_arch(&arch, &settings.config)?;
    // Scores that run the network share one executor with the arch's initial weights, and
    // scores read from one pass share it (ArchScoring).
    let mut scoring = ArchScoring::new(be, arch, &plan, data, settings, scores, kept);
    let mut values = Vec::with_capacity(scores.len());
    for score in scores {
        let value = score.compute(&mut scoring)?;
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
    arch: impl Into<AnyArch>,
    scores: &[Score],
    data: &Batch,
    settings: &ScoreSettings,
) -> anyhow::Result<(Vec<f64>, bool)> {
    score_arch_or_dead_values_kept(
        be,
        arch,
        scores,
        data,
        settings,
        &mut WorkerCache::default(),
    )
}

/// [`score_arch_or_dead_values`] for one of a series of archs ([`score_arch_kept`]).
pub fn score_arch_or_dead_values_kept<B: Backend>(
    be: &B,
    arch: impl Into<AnyArch>,
    scores: &[Score],
    data: &Batch,
    settings: &ScoreSettings,
    kept: &mut WorkerCache,
) -> anyhow::Result<(Vec<f64>, bool)> {
    let arch = arch.into();
    // No size-space arch is dead: every cell has a path of convs from input to output.
    let dead = matches!(arch, AnyArch::Tss(a) if is_dead(&a));
    if !dead {
        return Ok((
            score_arch_kept(be, arch, scores, data, settings, kept)?,
            false,
        ));
    }
    let rest: Vec<Score> = scores
        .iter()
        .copied()
        .filter(|s| s.dead_value().is_none())
        .collect();
    let mut computed = if rest.is_empty() {
        Vec::new()
    } else {
        score_arch_kept(be, arch, &rest, data, settings, kept)?
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
