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

use super::linalg::{row_correlation, symmetric_eigenvalues};
use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use super::upload_images;
use crate::backend::{Backend, BnStatistics, Executor, Real};
use crate::data::{sample_without_replacement, Batch, Seeds, SplitMix64};
use crate::net::SlotShape;
use crate::space::ClassKey;

/// Channels `meco_opt` samples per hook (the released code's 8).
pub const MECO_OPT_CHANNELS: usize = 8;

/// The smallest eigenvalue of the channel correlation of one image's `C x H x W` map.
fn min_correlation_eigenvalue(map: &[f64], c: usize, positions: usize) -> f64 {
    let corr = row_correlation(map, c, positions);
    symmetric_eigenvalues(&corr, c)[0]
}

/// Runs the network forward on the first `n` images of `batch` (batch statistics) and
/// calls `each(map, shape, modules)` with image 0's map of every module output in which
/// some channel varies over the positions, in the plan's order. The others (zero, one
/// position, every channel constant) have an all-zero correlation matrix: their value is 0.
fn for_each_module_output<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    mut each: impl FnMut(&[f64], SlotShape, u32),
) {
    let be = exec.backend();
    exec.forward(upload_images(be, batch, n), n, BnStatistics::Batch);
    let plan = exec.plan();
    let mut maps: HashMap<usize, Vec<f64>> = HashMap::new();
    for output in &plan.module_outputs {
        let Some(slot) = output.slot else { continue };
        if output.shape.hw() < 2 {
            continue;
        }
        let map = maps.entry(slot).or_insert_with(|| {
            let values = be.download(exec.slot(slot));
            values[..output.shape.len()]
                .iter()
                .map(|v| v.to_f64_lossless())
                .collect()
        });
        let varies = map
            .chunks_exact(output.shape.hw())
            .any(|row| row.iter().any(|&v| v != row[0]));
        if varies {
            each(map, output.shape, output.modules);
        }
    }
}

/// MeCo of the executor's network on image 0 of a forward pass of `n` images of `batch`:
/// the sum over module outputs of the smallest eigenvalue of the channel correlation,
/// times the number of modules that output it.
pub fn meco<B: Backend>(exec: &mut Executor<'_, B>, batch: &Batch, n: usize) -> f64 {
    let mut total = 0.0;
    for_each_module_output(exec, batch, n, |map, shape, modules| {
        let value = min_correlation_eigenvalue(map, shape.c, shape.hw());
        // The released code drops NaN and infinities from the sum.
        if value.is_finite() {
            total += value * f64::from(modules);
        }
    });
    total
}

/// MeCo_opt: as [`meco`], but each hook firing takes the correlation of
/// [`MECO_OPT_CHANNELS`] channels drawn from `rng` without replacement, its smallest
/// eigenvalue times C/8.
pub fn meco_opt<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
    rng: &mut SplitMix64,
) -> f64 {
    let mut total = 0.0;
    for_each_module_output(exec, batch, n, |map, shape, modules| {
        let (c, positions) = (shape.c, shape.hw());
        let k = MECO_OPT_CHANNELS.min(c);
        for _ in 0..modules {
            let rows: Vec<f64> = sample_without_replacement(c, k, rng)
                .into_iter()
                .flat_map(|ch| map[ch * positions..(ch + 1) * positions].iter().copied())
                .collect();
            let value = min_correlation_eigenvalue(&rows, k, positions) * c as f64 / k as f64;
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
