//! Training-free scores. Each is a short function over the executor's products (codes,
//! Gram matrices, gradients); none walks the network itself.
//!
//! Conventions: a score function takes an [`Executor`](crate::backend::Executor) already holding the arch's
//! initial weights (or builds the one it needs, as synflow does in f64) and a [`Batch`];
//! it returns the paper's quantity as an f64 (direction in [`Score::higher_is_better`]);
//! NaN or infinities are reported as they are, never replaced.

pub mod counts;
pub mod grasp;
pub mod jacob_cov;
pub mod knas;
pub mod linalg;
pub mod linear_regions;
pub mod naswot;
pub mod ntk;
pub mod saliency;
pub mod scorer;
pub mod synflow;
pub mod zen;
pub mod zico;

use crate::backend::{Backend, BnStatistics, Executor, Real, Reduction};
use crate::data::Batch;
use crate::space::ClassKey;
use std::fmt;
use std::str::FromStr;

/// Every score the engine computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Score {
    Naswot,
    Ntk,
    NtkExact,
    Mgm,
    MgmTrace,
    MgmEig,
    LinearRegions,
    LinearRegionsNet,
    Synflow,
    Snip,
    GradNorm,
    Grasp,
    Fisher,
    JacobCov,
    Zico,
    Zen,
    Params,
    Flops,
}

impl Score {
    pub const ALL: [Score; 18] = [
        Score::Naswot,
        Score::Ntk,
        Score::NtkExact,
        Score::Mgm,
        Score::MgmTrace,
        Score::MgmEig,
        Score::LinearRegions,
        Score::LinearRegionsNet,
        Score::Synflow,
        Score::Snip,
        Score::GradNorm,
        Score::Grasp,
        Score::Fisher,
        Score::JacobCov,
        Score::Zico,
        Score::Zen,
        Score::Params,
        Score::Flops,
    ];

    /// The column name in results files.
    pub fn name(self) -> &'static str {
        match self {
            Score::Naswot => "naswot",
            Score::Ntk => "ntk",
            Score::NtkExact => "ntk_exact",
            Score::Mgm => "mgm",
            Score::MgmTrace => "mgm_trace",
            Score::MgmEig => "mgm_eig",
            Score::LinearRegions => "linear_regions",
            Score::LinearRegionsNet => "linear_regions_net",
            Score::Synflow => "synflow",
            Score::Snip => "snip",
            Score::GradNorm => "grad_norm",
            Score::Grasp => "grasp",
            Score::Fisher => "fisher",
            Score::JacobCov => "jacob_cov",
            Score::Zico => "zico",
            Score::Zen => "zen",
            Score::Params => "params",
            Score::Flops => "flops",
        }
    }

    /// The key under which archs have equal values of this score (nb201.md, "What the
    /// isomorphism key does NOT preserve"): scores of ReLU codes see every ReLU's input,
    /// even where it never reaches the output; counts see every conv edge and its kind.
    pub fn class_key(self) -> ClassKey {
        match self {
            Score::Naswot | Score::LinearRegions | Score::LinearRegionsNet => ClassKey::Codes,
            Score::Params | Score::Flops => ClassKey::Structure,
            _ => ClassKey::Function,
        }
    }

    /// The exact value of this score on every dead arch ([`crate::space::is_dead`]: no
    /// path from the cell input to the cell output, so every cell outputs zero and the
    /// logits are the classifier bias whatever the input and the other parameters), where
    /// that value is one constant; `None` where it depends on the arch, the seed or the
    /// data, and the score must be computed.
    ///
    /// Derivations (every gradient below is of quantities that depend on the input or the
    /// weights only through the zero cell outputs, hence zero):
    /// - `ntk`, `ntk_exact`: the rows of `J` (gradients w.r.t. conv weights, BN gammas and
    ///   the classifier weight, never its bias) are zero, `Theta = 0`, `0 / 0` = NaN;
    /// - `synflow`, `snip`, `grad_norm`: conv and linear weight gradients are zero, so the
    ///   sums of `W * g`, `|W * g|` and `||g||` are 0;
    /// - `grasp`: `g` = 0 on the weights, so `H g` = 0 and `-sum W * H g` = -0;
    /// - `zico`: every weight tensor's gradients are zero (no entry with non-zero spread):
    ///   each tensor is skipped and the sum of no logarithms is 0;
    /// - `jacob_cov`: the input Jacobian is zero, its correlation undefined: NaN;
    /// - `zen`: the last feature map is zero for both inputs, `ln 0` = -inf, and the BN
    ///   terms are finite or -inf: -inf.
    ///
    /// No constant: `naswot`, `linear_regions`, `linear_regions_net` (ReLU codes inside
    /// the first cell still see the stem's output); `params`, `flops` (counted from the
    /// cell, no forward pass anyway); `mgm`, `mgm_trace`, `mgm_eig`, `fisher` (the
    /// classifier bias still has the gradient `softmax(b) - onehot(y)`: the same for every
    /// dead arch, but a function of the seed's bias draw and the labels).
    pub fn dead_value(self) -> Option<f64> {
        match self {
            Score::Ntk | Score::NtkExact | Score::JacobCov => Some(f64::NAN),
            Score::Synflow | Score::Snip | Score::GradNorm | Score::Zico => Some(0.0),
            Score::Grasp => Some(-0.0),
            Score::Zen => Some(f64::NEG_INFINITY),
            Score::Naswot
            | Score::LinearRegions
            | Score::LinearRegionsNet
            | Score::Params
            | Score::Flops
            | Score::Mgm
            | Score::MgmTrace
            | Score::MgmEig
            | Score::Fisher => None,
        }
    }

    /// Whether the score is computed on the host whatever the backend: counted from the
    /// cell (`params`, `flops`) or run in f64 on the CPU (`synflow`). A caller with a GPU
    /// can compute these beside the device's work instead of in line with it.
    pub fn runs_on_host(self) -> bool {
        matches!(self, Score::Params | Score::Flops | Score::Synflow)
    }

    /// Whether a higher value predicts a better arch (the NTK condition number is the
    /// one score where lower is better).
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Score::Ntk | Score::NtkExact)
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A score name that is not one of [`Score::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown score {0:?}; known scores: {known}", known = Score::ALL.map(Score::name).join(", "))]
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
