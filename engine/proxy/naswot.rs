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
use crate::backend::{Backend, BnStatistics, CodeBlock, Executor, ForwardStart, Streamed};
use crate::data::Batch;
use crate::net::Plan;
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
    log_abs_det_of_kernel(&naswot_kernel(exec, batch, n, count), n)
}

/// The score of an exact `K_H` (`[n][n]`).
fn log_abs_det_of_kernel(k: &[u64], n: usize) -> f64 {
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
    let be = exec.backend();
    let input = upload_images(be, batch, n);
    let mut k = be.alloc_words(n * n);
    let mut weight = CodeWeights::new(exec.plan(), count);
    let mut sink = |block: CodeBlock<'_, B>| {
        let w = weight.of(&block);
        be.hamming_gram_accumulate(block.codes, n, block.units, w, &mut k);
    };
    exec.forward_with_codes(input, n, BnStatistics::Batch, &mut sink);
    be.download_words(&k)
}

/// How many times each streamed code block enters K.
struct CodeWeights {
    count: CodeCount,
    lastact_layer: Option<usize>,
    constants: usize,
    lastact_is_constant: bool,
    constant_seen: usize,
}

impl CodeWeights {
    fn new(plan: &Plan, count: CodeCount) -> CodeWeights {
        // `lastact`'s ReLU is the one module the released code counts once: the ReLU
        // feeding the global pool, or (dead arch) the last constant code, which the builder
        // adds last.
        let lastact_layer = plan.lastact_layer();
        CodeWeights {
            count,
            lastact_layer,
            constants: plan.constant_codes.len(),
            lastact_is_constant: lastact_layer.is_none() && plan.config.classes > 0,
            constant_seen: 0,
        }
    }

    fn of<B: Backend>(&mut self, block: &CodeBlock<'_, B>) -> u64 {
        let modules = u64::from(block.modules);
        let is_lastact = match block.layer {
            Some(layer) => Some(layer) == self.lastact_layer,
            None => {
                self.constant_seen += 1;
                self.lastact_is_constant && self.constant_seen == self.constants
            }
        };
        match self.count {
            CodeCount::Paper => modules,
            CodeCount::ReleasedDoubleConv if is_lastact => modules,
            CodeCount::ReleasedDoubleConv => 2 * modules,
        }
    }
}

/// What a worker keeps of its last arch's NASWOT pass, so that an arch sharing its first
/// blocks resumes after them ([`naswot_kernel_kept`]).
pub struct KeptBlocks<B: Backend> {
    /// The minibatch size and code count the points were computed with.
    setting: Option<(usize, CodeCount)>,
    /// The boundary the last pass resumed after (`None`: it ran from the input).
    resumed: Option<usize>,
    /// The network they were computed on.
    plan: Option<Plan>,
    /// Block boundaries of that pass, in order.
    points: Vec<KeptPoint<B>>,
}

/// A block boundary of a kept pass: the block's output and K over the codes before it.
struct KeptPoint<B: Backend> {
    layer: usize,
    value: B::Buf,
    k: Vec<u64>,
}

impl<B: Backend> KeptBlocks<B> {
    /// The block boundary (a plan layer) the last pass resumed after; `None` when it ran
    /// from the input.
    pub fn resumed_after(&self) -> Option<usize> {
        self.resumed
    }
}

impl<B: Backend> Default for KeptBlocks<B> {
    fn default() -> Self {
        KeptBlocks {
            setting: None,
            resumed: None,
            plan: None,
            points: Vec::new(),
        }
    }
}

/// [`naswot_kernel`], resuming after the last block the executor's network shares with the
/// network of `kept`'s pass (same layers, shapes and parameters: the same weights under
/// the executor's seed), on the same minibatch: K is a sum over layers, so K up to that
/// block is taken from `kept`, and only the later layers run. Equal to [`naswot_kernel`]
/// when the executor holds the seed's initial weights and `kept` was filled on `batch`.
pub fn naswot_kernel_kept<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    count: CodeCount,
    kept: &mut KeptBlocks<B>,
) -> Vec<u64> {
    let (plan, be) = (exec.plan(), exec.backend());
    if kept.setting != Some((n, count)) {
        *kept = KeptBlocks {
            setting: Some((n, count)),
            ..KeptBlocks::default()
        };
    }
    let mut shared = kept.plan.as_ref().map_or(0, |p| plan.common_prefix(p));
    if count == CodeCount::ReleasedDoubleConv {
        // A shared ReLU may be `lastact` (counted once) in one network only.
        for p in [Some(plan), kept.plan.as_ref()].into_iter().flatten() {
            shared = shared.min(p.lastact_layer().unwrap_or(usize::MAX));
        }
    }
    kept.points.retain(|p| p.layer < shared);
    kept.resumed = kept.points.last().map(|p| p.layer);
    let (start, mut k) = match kept.points.last() {
        Some(point) => {
            let mut value = be.alloc(be.buf_len(&point.value));
            be.copy(&point.value, &mut value);
            let start = ForwardStart::After {
                layer: point.layer,
                value,
            };
            (start, point.k.clone())
        }
        None => (
            ForwardStart::Input(upload_images(be, batch, n)),
            vec![0; n * n],
        ),
    };
    // K of the codes between consecutive boundaries, each in a buffer of its own, summed
    // on the host once the pass is queued (exact in u64).
    let mut weight = CodeWeights::new(plan, count);
    let mut segment = be.alloc_words(n * n);
    let mut closed: Vec<(usize, B::Buf, B::Words)> = Vec::new();
    exec.forward_streamed(start, n, BnStatistics::Batch, &mut |item| match item {
        Streamed::Codes(block) => {
            let w = weight.of(&block);
            be.hamming_gram_accumulate(block.codes, n, block.units, w, &mut segment);
        }
        Streamed::Boundary { layer, value } => {
            let mut copy = be.alloc(be.buf_len(value));
            be.copy(value, &mut copy);
            let done = std::mem::replace(&mut segment, be.alloc_words(n * n));
            closed.push((layer, copy, done));
        }
    });
    let add = |k: &mut [u64], words: &B::Words| {
        k.iter_mut()
            .zip(be.download_words(words))
            .for_each(|(a, b)| *a += b);
    };
    for (layer, value, words) in closed {
        add(&mut k, &words);
        kept.points.push(KeptPoint {
            layer,
            value,
            k: k.clone(),
        });
    }
    add(&mut k, &segment);
    kept.plan = Some(plan.clone());
    k
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
        if !arch.shares_blocks() {
            return Ok(naswot(arch.exec(), data, n));
        }
        let k = arch.with_kept(|arch, kept: &mut KeptBlocks<B>| {
            naswot_kernel_kept(arch.exec(), data, n, CodeCount::Paper, kept)
        });
        Ok(log_abs_det_of_kernel(&k, n))
    }
}
