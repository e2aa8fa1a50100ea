//! Training-free scores. Each is a short function over the executor's products (codes,
//! Gram matrices, gradients); none walks the network itself.
//!
//! Conventions: a score function takes an [`Executor`](crate::backend::Executor) already holding the arch's
//! initial weights (or builds the one it needs, as synflow does in f64) and a [`Batch`];
//! it returns the paper's quantity as an f64 (direction in [`Score::higher_is_better`]);
//! NaN or infinities are reported as they are, never replaced.

pub mod aggregate;
pub mod az_nas;
pub mod counts;
pub mod grasp;
pub mod jacob_cov;
pub mod knas;
pub mod linalg;
pub mod linear_regions;
pub mod meco;
pub mod naswot;
pub mod ntk;
pub mod registry;
pub mod saliency;
pub mod scorer;
pub mod swap;
pub mod synflow;
pub mod zen;
pub mod zico;

use crate::backend::{Backend, BnStatistics, Executor, Real, Reduction};
use crate::data::Batch;
use crate::space::ClassKey;
use registry::{registry, ArchScoring, Runs, ScoreDef, ScoreInfo};
use std::fmt;
use std::str::FromStr;

registry! {
    Naswot => naswot::Naswot,
    Ntk => ntk::Ntk,
    NtkExact => ntk::NtkExact,
    Mgm => knas::Mgm,
    MgmTrace => knas::MgmTrace,
    MgmEig => knas::MgmEig,
    LinearRegions => linear_regions::LinearRegions,
    LinearRegionsNet => linear_regions::LinearRegionsNet,
    Synflow => synflow::Synflow,
    Snip => saliency::Snip,
    GradNorm => saliency::GradNorm,
    Grasp => grasp::Grasp,
    Fisher => saliency::Fisher,
    JacobCov => jacob_cov::JacobCov,
    Zico => zico::Zico,
    Zen => zen::Zen,
    Swap => swap::Swap,
    SwapReg => swap::SwapReg,
    Meco => meco::Meco,
    MecoOpt => meco::MecoOpt,
    AzExpressivity => az_nas::AzExpressivity,
    AzProgressivity => az_nas::AzProgressivity,
    AzTrainability => az_nas::AzTrainability,
    Params => counts::Params,
    Flops => counts::Flops,
}

impl Score {
    /// A comma list of score names, or `all` (every score in registry order); repeated
    /// names count once.
    pub fn parse_list(list: &str) -> Result<Vec<Score>, UnknownScore> {
        if list.trim() == "all" {
            return Ok(Score::ALL.to_vec());
        }
        let mut scores: Vec<Score> = Vec::new();
        for name in list.split(',') {
            let score: Score = name.parse()?;
            if !scores.contains(&score) {
                scores.push(score);
            }
        }
        Ok(scores)
    }

    /// The column name in results files.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The key under which archs have equal values of this score.
    pub fn class_key(self) -> ClassKey {
        self.info().class_key
    }

    /// The exact value of this score on every dead arch ([`crate::space::is_dead`]: no
    /// path from the cell input to the cell output, so every cell outputs zero and the
    /// logits are the classifier bias whatever the input and the other parameters), where
    /// that value is one constant; `None` where it must be computed. Each derivation is
    /// beside the score's declaration: every gradient there is of quantities that depend
    /// on the input or the weights only through the zero cell outputs, hence zero.
    pub fn dead_value(self) -> Option<f64> {
        self.info().dead_value
    }

    /// Whether a higher value predicts a better arch.
    pub fn higher_is_better(self) -> bool {
        self.info().higher_is_better
    }

    /// Whether the score is computed on the host whatever the backend: counted from the
    /// cell (`params`, `flops`) or run in f64 on the CPU (`synflow`). A caller with a GPU
    /// can compute these beside the device's work instead of in line with it.
    pub fn runs_on_host(self) -> bool {
        self.info().runs == Runs::Host
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A score name that is not one of [`Score::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown score {0:?}; known scores: {known}; set scores: {sets}", known = Score::ALL.map(Score::name).join(", "), sets = aggregate::SetScore::ALL.map(|s| s.name).join(", "))]
pub struct UnknownScore(pub String);

impl FromStr for Score {
    type Err = UnknownScore;

    fn from_str(s: &str) -> Result<Score, UnknownScore> {
        Score::ALL
            .into_iter()
            .find(|score| score.name() == s.trim())
            .ok_or_else(|| UnknownScore(s.to_string()))
    }
}

/// Runs the first `n` images forward (batch norm as `bn` says) and returns the gradient of
/// the softmax cross-entropy (reduced as `reduction` says) with respect to the logits: the
/// seed of every loss-gradient score's backward pass.
pub fn forward_loss_gradient<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    bn: BnStatistics,
    reduction: Reduction,
) -> B::Buf {
    let be = exec.backend();
    let classes = exec.plan().config.classes;
    exec.forward(upload_images(be, batch, n), n, bn);
    let mut dlogits = be.alloc(n * classes);
    be.softmax_cross_entropy(
        n,
        classes,
        exec.logits(),
        &batch.labels[..n],
        reduction,
        &mut dlogits,
    );
    dlogits
}

/// The first `n` images of `batch` in the backend's memory and scalar type.
pub fn upload_images<B: Backend>(be: &B, batch: &Batch, n: usize) -> B::Buf {
    assert!(
        n <= batch.n,
        "asked for {n} images of a batch of {}",
        batch.n
    );
    let len = n * batch.c * batch.h * batch.w;
    let host: Vec<B::Real> = batch.images[..len]
        .iter()
        .map(|&v| B::Real::from_f64_rounded(f64::from(v)))
        .collect();
    be.upload(&host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        for score in Score::ALL {
            assert_eq!(score.name().parse::<Score>(), Ok(score));
        }
        let err = "nasw0t".parse::<Score>().unwrap_err().to_string();
        assert!(err.contains("nasw0t") && err.contains("naswot") && err.contains("zen"));
    }
}
