//! Number of linear regions (TE-NAS, Chen et al., ICLR 2021).
//!
//! Definition: feed S samples; a sample's pattern is the concatenation, over every ReLU of
//! the network, of the bits "ReLU output > 0" (equally, input > 0); the score R is the
//! number of distinct patterns among the S samples (higher is better). The released code's
//! `sum_s 1 / |{t : pattern_t = pattern_s}|` is the same number.
//!
//! Patterns come from the executor's code stream. A ReLU layer standing for several modules
//! (one node feeding several conv edges) contributes its bits once: repeating identical
//! bits never changes whether two patterns are equal. Modules with identically zero input
//! (all-zero codes, the same for every sample) are skipped for the same reason. A network
//! with no ReLU gives every sample the empty pattern: R = 1 (the released code would fail
//! there; its supernets always have convs).
//!
//! Two settings:
//! - [`linear_regions_network`]: the whole network (the plan the executor holds) on the
//!   first `n` images of a batch, one forward, batch statistics.
//! - [`linear_regions_released`]: the released code's setting ([`ReleasedSettings`]): the
//!   cell alone with 1 channel, no stem, followed by `lastact` (BN -> ReLU, whose ReLU the
//!   released code's hooks also record; see [`Plan::single_cell_with_lastact`]), on
//!   `batches` separate forward passes (BN statistics per batch) of `batch_size` random
//!   `crop x crop` crops, each keeping `channels` random channels; defaults 3 x 1000 crops of
//!   3x3, 1 channel (the paper says 5000 images). S = `batches * batch_size`.
//!
//! Crops: sample `s` is cut from image `s % source.n` of `source`, a batch of already
//! normalised images (e.g. [`crate::data::ImageSet::sample`] of S train images, which
//! gives the released loader's draw without replacement). Normalising then cropping equals
//! the released `RandomCrop -> ToTensor -> Normalize` (normalisation is per channel and per
//! pixel). From `SplitMix64::new(seed)`, for each sample in order: the crop's top row
//! (`below(h - crop + 1)`), its left column (`below(w - crop + 1)`), then the channels (a
//! partial Fisher-Yates draw of `channels` distinct channels, kept in ascending order as
//! `RandChannel` does). The weights are `init_params(seed)` of the single-cell plan.
//!
//! Deviations from the released code: it re-initialises conv weights with `kaiming_normal`
//! (prune_launch.py), where the engine uses the framework default init of every score
//! (uniform); its cell is a search cell whose edge outputs are weighted by softmaxed
//! architecture parameters (exactly 1 for a single-op edge, as here).

use super::registry::{
    ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE, TOPOLOGY_ONLY,
};
use super::upload_images;
use crate::backend::{Backend, BnStatistics, CodeBlock, Executor, Real};
use crate::data::{random_crops, Batch, Seeds};
use crate::net::{Plan, PlanError};
use crate::space::Cell;
use crate::space::ClassKey;
use std::collections::HashSet;

/// The released code's linear-region setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleasedSettings {
    /// Forward passes, each with its own batch statistics.
    pub batches: usize,
    /// Samples per forward pass.
    pub batch_size: usize,
    /// Crop side (the network's input size).
    pub crop: usize,
    /// Channels kept per crop (the network's width).
    pub channels: usize,
    /// Whether `lastact` (BN -> ReLU) follows the cell, as in the released model.
    pub lastact: bool,
}

impl Default for ReleasedSettings {
    fn default() -> Self {
        ReleasedSettings {
            batches: 3,
            batch_size: 1000,
            crop: 3,
            channels: 1,
            lastact: true,
        }
    }
}

/// R over the whole network the executor holds, on the first `n` images of `batch`.
pub fn linear_regions_network<B: Backend>(
    exec: &mut Executor<'_, B>,
    batch: &Batch,
    n: usize,
) -> f64 {
    let input = upload_images(exec.backend(), batch, n);
    let patterns = sign_patterns(exec, input, n);
    distinct_patterns(&patterns) as f64
}

/// R in the released code's setting (see the module docs) for `cell`, crops cut from the
/// normalised images of `source`.
pub fn linear_regions_released<B: Backend>(
    be: &B,
    cell: &Cell,
    source: &Batch,
    seed: u64,
    settings: &ReleasedSettings,
) -> Result<f64, PlanError> {
    let patterns = released_patterns(be, cell, source, seed, settings)?;
    Ok(distinct_patterns(&patterns) as f64)
}

/// The patterns of the released setting, one per sample, in sample order.
pub fn released_patterns<B: Backend>(
    be: &B,
    cell: &Cell,
    source: &Batch,
    seed: u64,
    settings: &ReleasedSettings,
) -> Result<Vec<Vec<u64>>, PlanError> {
    let s = settings;
    let seeds = Seeds(seed);
    let crops = random_crops(
        source,
        s.batches * s.batch_size,
        s.crop,
        s.channels,
        seeds.crops(),
    );
    patterns_on_crops(be, cell, &crops, settings, seeds.weights())
}

/// The patterns of the released setting on given crops (`random_crops`), with the weights
/// of `weight_seed`: TE-NAS's pruning measures every supernet on one set of crops.
pub fn patterns_on_crops<B: Backend>(
    be: &B,
    cell: &Cell,
    crops: &Batch,
    settings: &ReleasedSettings,
    weight_seed: u64,
) -> Result<Vec<Vec<u64>>, PlanError> {
    let s = settings;
    let plan = if s.lastact {
        Plan::single_cell_with_lastact(cell, s.channels, s.crop)?
    } else {
        Plan::single_cell(cell, s.channels, s.crop)?
    };
    let mut exec = Executor::with_init(be, &plan, weight_seed);
    let mut patterns = Vec::with_capacity(crops.n);
    for b in 0..s.batches {
        let len = s.batch_size * s.channels * s.crop * s.crop;
        let host: Vec<B::Real> = crops.images[b * len..(b + 1) * len]
            .iter()
            .map(|&v| B::Real::from_f64_rounded(f64::from(v)))
            .collect();
        patterns.extend(sign_patterns(&mut exec, be.upload(&host), s.batch_size));
    }
    Ok(patterns)
}

/// One forward pass (batch statistics) on `input` (`n` images); returns each image's
/// pattern: the code words of every computed ReLU layer, once per layer, concatenated.
pub fn sign_patterns<B: Backend>(
    exec: &mut Executor<'_, B>,
    input: B::Buf,
    n: usize,
) -> Vec<Vec<u64>> {
    let be = exec.backend();
    let mut patterns: Vec<Vec<u64>> = vec![Vec::new(); n];
    let mut sink = |block: CodeBlock<'_, B>| {
        if block.layer.is_none() {
            return; // all-zero bits for every sample: no sample differs there
        }
        let words = be.download_words(block.codes);
        let per = block.units.div_ceil(64);
        for (pattern, code) in patterns.iter_mut().zip(words.chunks_exact(per)) {
            pattern.extend_from_slice(code);
        }
    };
    exec.forward_with_codes(input, n, BnStatistics::Batch, &mut sink);
    patterns
}

/// The number of distinct patterns (all of one length).
pub fn distinct_patterns(patterns: &[Vec<u64>]) -> usize {
    patterns
        .iter()
        .map(Vec::as_slice)
        .collect::<HashSet<_>>()
        .len()
}

/// TE-NAS's linear regions as its released code counts them, on networks of its own.
/// Dead value: none (ReLU codes inside the first cell still see the stem's output).
pub struct LinearRegions;

impl ScoreDef for LinearRegions {
    const INFO: ScoreInfo = ScoreInfo {
        name: "linear_regions",
        higher_is_better: true,
        class_key: ClassKey::Codes,
        dead_value: None,
        minibatch: Minibatch::Gradient,
        runs: Runs::OwnNetworks,
        max_images: None,
        spaces: TOPOLOGY_ONLY,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        let (be, cell, data, seed) = (arch.backend, arch.cell, arch.data, arch.settings.seed);
        Ok(linear_regions_released(
            be,
            &cell,
            data,
            seed,
            &ReleasedSettings::default(),
        )?)
    }
}

/// Linear regions of the arch's own network over the NASWOT minibatch. Dead value: none,
/// as [`LinearRegions`].
pub struct LinearRegionsNet;

impl ScoreDef for LinearRegionsNet {
    const INFO: ScoreInfo = ScoreInfo {
        name: "linear_regions_net",
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
        Ok(linear_regions_network(arch.exec(), data, n))
    }
}
