//! NASWOT (Mellor et al., ICML 2021): `log |det K_H|` of the Hamming kernel of ReLU codes.
//!
//! Definition: one forward pass over the first `n` images of a batch (BatchNorm with batch
//! statistics, the executor's weights as they are). Image i's code `c_i` has one bit per
//! unit of every ReLU module of the reference network, set where the ReLU's input is > 0;
//! `K_H[i][j]` is the number of units on which `c_i` and `c_j` agree
//! (`c c^T + (1-c)(1-c)^T` summed over modules), and the score is `log |det K_H|`
//! (sign ignored, higher is better).
//!
//! How it is computed: the executor streams one code block per computed ReLU layer; a layer
//! standing for `m` modules of the reference network (a node feeding `m` conv edges) adds
//! its agreement counts `m` times. Modules whose input is identically zero (fed by a zero
//! node) arrive as all-zero blocks: they add their unit count to every entry. K is
//! accumulated exactly in u64 on the backend, then the determinant is taken in f64.
//!
//! Settings and deviations:
//! - [`CodeCount::Paper`] (default) counts every ReLU module once, as the paper defines.
//!   [`CodeCount::ReleasedDoubleConv`] reproduces the released code, which hooks every
//!   module whose class name contains "ReLU" and so also catches the `ReLUConvBN` wrapper
//!   (same input as its inner ReLU): every conv op's code counts twice (cell convs and the
//!   ResNet blocks' `conv_a`, `conv_b`), `lastact`'s ReLU once.
//! - A dead arch (no path to the output) still has live codes in the first cell, so K is
//!   not constant; when it is singular the score is `-inf`, reported as it is.
//! - `log |det|` comes from [`log_abs_det`] (Cholesky, LU where that fails); the released
//!   code uses `numpy.linalg.slogdet` on a float32/float64 K.

use super::linalg::log_abs_det;
use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use super::upload_images;
use crate::backend::{Backend, BnStatistics, CodeBlock, Executor};
use crate::data::Batch;
use crate::space::ClassKey;

/// How many times each ReLU module's code enters K.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CodeCount {
    /// Every ReLU module once (the paper).
    #[default]
    Paper,
    /// The released code's double count of each conv's ReLU (see the module docs).
    ReleasedDoubleConv,
}

/// The NASWOT score (paper definition) on the first `n` images of `batch`.
pub fn naswot<B: Backend>(exec: &mut Executor<'_, B>, batch: &Batch, n: usize) -> f64 {
    naswot_with(exec, batch, n, CodeCount::Paper)
}

/// The NASWOT score with the given code count.
pub fn naswot_with<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    count: CodeCount,
) -> f64 {
    let k = naswot_kernel(exec, batch, n, count);
    let k: Vec<f64> = k.iter().map(|&v| v as f64).collect();
    log_abs_det(&k, n)
}

/// `K_H` (`[n][n]`, row-major), exact: one forward with codes on the first `n` images.
pub fn naswot_kernel<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    count: CodeCount,
) -> Vec<u64> {
    let plan = exec.plan();
    // `lastact`'s ReLU is the one module the released code counts once: the ReLU feeding
    // the global pool, or (dead arch) the last constant code, which the builder adds last.
    let lastact_layer = plan.lastact_layer();
    let constants = plan.constant_codes.len();
    let lastact_is_constant = lastact_layer.is_none() && plan.config.classes > 0;
    let be = exec.backend();
    let input = upload_images(be, batch, n);
    let mut k = be.alloc_words(n * n);
    let mut constant_seen = 0;
    let mut sink = |block: CodeBlock<'_, B>| {
        let modules = u64::from(block.modules);
        let is_lastact = match block.layer {
            Some(layer) => Some(layer) == lastact_layer,
            None => {
                constant_seen += 1;
                lastact_is_constant && constant_seen == constants
            }
        };
        let weight = match count {
            CodeCount::Paper => modules,
            CodeCount::ReleasedDoubleConv if is_lastact => modules,
            CodeCount::ReleasedDoubleConv => 2 * modules,
        };
        be.hamming_gram_accumulate(block.codes, n, block.units, weight, &mut k);
    };
    exec.forward_with_codes(input, n, BnStatistics::Batch, &mut sink);
    be.download_words(&k)
}

/// NASWOT (Mellor et al.): log-determinant of the ReLU-code kernel.
/// Dead value: none (ReLU codes inside the first cell still see the stem's output).
pub struct Naswot;

impl ScoreDef for Naswot {
    const INFO: ScoreInfo = ScoreInfo {
        name: "naswot",
        higher_is_better: true,
        class_key: ClassKey::Codes,
        dead_value: None,
        minibatch: Minibatch::Naswot,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        let (data, n) = (arch.data, arch.settings.batch_of(Self::INFO.minibatch));
        Ok(naswot(arch.exec(), data, n))
    }
}
