//! MeCo (Jiang, Wang & Bie, NeurIPS 2023, "MeCo: Zero-Shot NAS with One Data and Single
//! Forward Pass via Minimum Eigenvalue of Correlation").
//!
//! Definition (the released `correlation/NAS_Bench_201.py`, HamsterMimi/MeCo; the facts in
//! ../shared/spec/proxies.md, "MeCo"): one forward pass of one training image through the
//! network with its default initialisation and batch statistics, a forward hook on every
//! module. Each hook takes its output for the image, `C x H x W`, as C variables observed
//! at H*W positions, and adds the smallest eigenvalue of their Pearson correlation matrix
//! (NaN entries, from channels without spread, set to 0). Higher is better.
//! `meco_opt`: per hook, the correlation of 8 channels drawn without replacement, its
//! smallest eigenvalue times C/8.
//!
//! Which tensors count, and how often: [`crate::net::Plan::module_outputs`], the outputs of
//! the modules of the network the released script builds, each with its number of modules
//! (a conv edge's conv output once, its BN's output three times: BN, Sequential,
//! ReLUConvBN). Topology space: the zero-cost-NAS `NAS201Model` (each stage's last cell
//! twice, the stem's BN three times). Size space (`--search_space sss`): xautodl's
//! `DynamicShapeTinyNet` (`get_cell_based_tiny_net`; the stem's BN twice, a
//! width-changing skip's BN twice: BN and FactorizedReduce). A hook on an output with one
//! position (the pool, the classifier, the model) gives all-NaN, so 0; a zero tensor gives
//! 0; neither is computed.
//!
//! Deviations from the released code:
//! - The image: the first of the run's minibatch (its `--data` and `--seed`), with no
//!   crop or flip; the released script draws one augmented training image with
//!   `torch.manual_seed(42)`.
//! - Topology space: the cell convs have no bias here; the released network's have one
//!   (its cell BNs are not affine). A per-channel constant changes no correlation, and the
//!   BN after the conv removes it before anything else reads it, so the score is the same.
//!   (The size space's released cells have affine BNs and convs without bias, as here.)
//! - Eigenvalues of the symmetric matrix in f64 (nalgebra) where the released code calls
//!   the general `torch.linalg.eig` in f32 and keeps the real parts: equal up to rounding.
//! - `meco_opt`'s channels come from a seeded stream (`Seeds::meco_channels`), one draw per
//!   hook firing on a map in which some channel varies, in the plan's order; the released code calls the
//!   unseeded `random.sample`, so its values are not repeatable. Where a map has fewer than
//!   8 channels (never in NB-201's or the size space's networks: widths and classes are
//!   at least 8) all are taken and the factor is 1; the released code raises there.

use std::collections::HashMap;

use super::linalg::{correlation_of_centred_gram, symmetric_eigenvalues};
use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use super::upload_images;
use crate::backend::{Backend, BnStatistics, ChannelStat, ChannelView, Executor};
use crate::data::{sample_without_replacement, Batch, Seeds, SplitMix64};
use crate::net::SlotShape;
use crate::space::ClassKey;

/// Channels `meco_opt` samples per hook (the released code's 8).
pub const MECO_OPT_CHANNELS: usize = 8;

/// Runs the network forward on the first `n` images of `batch` (batch statistics) and
/// calls `each(corr, shape, modules)` with the channel correlation (`[c][c]`, see
/// [`correlation_of_centred_gram`]) of image 0's map of every module output in which some
/// channel varies over the positions, in the plan's order. The others (zero, one position,
/// every channel constant) have an all-zero correlation matrix: their value is 0.
///
/// The maps stay on the backend: for each distinct map, its channel sums (whose counts of
/// values differing from the channel's first say exactly whether it varies, as comparing
/// the values did) and its centred channel Gram over image 0 ([`Backend::channel_sums`],
/// [`Backend::channel_gram`]) go into one accumulator, downloaded once.
fn for_each_module_output<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    mut each: impl FnMut(&[f64], SlotShape, u32),
) {
    let be = exec.backend();
    exec.forward(upload_images(be, batch, n), n, BnStatistics::Batch);
    let plan = exec.plan();
    // Each distinct map (slot and shape) in order of first use, and where its 2c sums and
    // counts and c x c Gram start in the accumulator.
    let mut maps: Vec<(usize, SlotShape, usize)> = Vec::new();
    let mut map_of: HashMap<(usize, SlotShape), usize> = HashMap::new();
    let mut len = 0;
    for output in &plan.module_outputs {
        let Some(slot) = output.slot else { continue };
        if output.shape.hw() < 2 {
            continue;
        }
        map_of.entry((slot, output.shape)).or_insert_with(|| {
            let c = output.shape.c;
            maps.push((slot, output.shape, len));
            len += 2 * c + c * c;
            maps.len() - 1
        });
    }
    let mut acc = be.alloc_acc(len);
    // Every map's statistics in one call (the CPU computes them side by side).
    let stats: Vec<ChannelStat<'_, B>> = maps
        .iter()
        .flat_map(|&(slot, shape, at)| {
            let (a, view) = (exec.slot(slot), ChannelView::plain(shape.c, shape.hw()));
            let gram = ChannelStat::Gram {
                a,
                va: view,
                b: a,
                vb: view,
                centred: true,
                at: at + 2 * shape.c,
            };
            [ChannelStat::Sums { a, view, at }, gram]
        })
        .collect();
    be.channel_stats(&stats, 1, &mut acc);
    drop(stats);
    let values = be.download_acc(&acc);
    let correlations: Vec<Option<Vec<f64>>> = maps
        .iter()
        .map(|&(_, shape, at)| {
            let c = shape.c;
            let constant: Vec<bool> = values[at + c..at + 2 * c]
                .iter()
                .map(|&k| k == 0.0)
                .collect();
            let varies = constant.iter().any(|&k| !k);
            varies.then(|| {
                correlation_of_centred_gram(&values[at + 2 * c..at + 2 * c + c * c], c, &constant)
            })
        })
        .collect();
    for output in &plan.module_outputs {
        let Some(slot) = output.slot else { continue };
        if output.shape.hw() < 2 {
            continue;
        }
        if let Some(corr) = &correlations[map_of[&(slot, output.shape)]] {
            each(corr, output.shape, output.modules);
        }
    }
}

/// MeCo of the executor's network on image 0 of a forward pass of `n` images of `batch`:
/// the sum over module outputs of the smallest eigenvalue of the channel correlation,
/// times the number of modules that output it.
pub fn meco<B: Backend>(exec: &mut Executor<'_, B>, batch: &Batch, n: usize) -> f64 {
    let mut total = 0.0;
    for_each_module_output(exec, batch, n, |corr, shape, modules| {
        let value = symmetric_eigenvalues(corr, shape.c)[0];
        // The released code drops NaN and infinities from the sum.
        if value.is_finite() {
            total += value * f64::from(modules);
        }
    });
    total
}

/// MeCo_opt: as [`meco`], but each hook firing takes the correlation of
/// [`MECO_OPT_CHANNELS`] channels drawn from `rng` without replacement, its smallest
/// eigenvalue times C/8. The correlation of a set of channels is the sub-matrix of all
/// channels' correlation (each entry depends on its two channels alone).
pub fn meco_opt<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    rng: &mut SplitMix64,
) -> f64 {
    let mut total = 0.0;
    for_each_module_output(exec, batch, n, |corr, shape, modules| {
        let c = shape.c;
        let k = MECO_OPT_CHANNELS.min(c);
        for _ in 0..modules {
            let channels = sample_without_replacement(c, k, rng);
            let sub: Vec<f64> = channels
                .iter()
                .flat_map(|&i| channels.iter().map(move |&j| corr[i * c + j]))
                .collect();
            let value = symmetric_eigenvalues(&sub, k)[0] * c as f64 / k as f64;
            if value.is_finite() {
                total += value;
            }
        }
    });
    total
}

/// MeCo: the smallest eigenvalues of every module output's channel correlation, summed.
/// Dead value: none (the stem and the cells before a dead cell's output still count).
pub struct Meco;

/// The facts both MeCo columns share.
const fn info(name: &'static str) -> ScoreInfo {
    ScoreInfo {
        name,
        higher_is_better: true,
        // Every module's output, dead ends included.
        class_key: ClassKey::Modules,
        dead_value: None,
        minibatch: Minibatch::Meco,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    }
}

impl ScoreDef for Meco {
    const INFO: ScoreInfo = info("meco");

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        let n = arch.settings.batch_of(Self::INFO.minibatch);
        let data = arch.data;
        Ok(meco(arch.exec(), data, n))
    }
}

/// MeCo_opt: MeCo on 8 seeded sampled channels per hook, scaled by C/8.
pub struct MecoOpt;

impl ScoreDef for MecoOpt {
    const INFO: ScoreInfo = info("meco_opt");

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        let n = arch.settings.batch_of(Self::INFO.minibatch);
        let mut rng = SplitMix64::new(Seeds(arch.settings.seed).meco_channels());
        let data = arch.data;
        Ok(meco_opt(arch.exec(), data, n, &mut rng))
    }
}
