//! params and flops: the benchmark's counts of the arch (engine/space/counts.rs), whatever
//! the plan prunes: every conv edge counts, even one whose input is zero, and BN gamma and
//! beta and the classifier bias count as parameters. Raw counts (the benchmark's tables
//! divide by 1e6); flops are multiply-adds per image.

use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use crate::backend::Backend;
use crate::space::ClassKey;
use crate::space::{count_flops, count_params, AnyArch, Cell, DatasetShape, MacroConfig};

/// Parameters of the network `cell` and `config` make.
pub fn params(cell: &Cell, config: &MacroConfig) -> f64 {
    count_params(cell, config) as f64
}

/// Parameters of `arch`'s network under `config` (a size-space arch takes only its
/// dataset shape from it; a topology-space arch also its C and N).
pub fn params_of(arch: &AnyArch, config: &MacroConfig) -> f64 {
    match arch {
        AnyArch::Tss(tss) => params(&Cell::from(*tss), config),
        AnyArch::Sss(sized) => sized.params(shape_of(config)) as f64,
    }
}

/// Multiply-adds per image of the network `cell` and `config` make.
pub fn flops(cell: &Cell, config: &MacroConfig) -> f64 {
    count_flops(cell, config) as f64
}

/// Parameter count, from the cell. Dead value: none (a count of the arch, not a pass).
/// The dataset shape of a network's config (a size-space network takes only that).
fn shape_of(config: &MacroConfig) -> DatasetShape {
    DatasetShape {
        classes: config.classes,
        input_size: config.input_size,
    }
}

pub struct Params;

impl ScoreDef for Params {
    const INFO: ScoreInfo = ScoreInfo {
        name: "params",
        higher_is_better: true,
        class_key: ClassKey::Structure,
        dead_value: None,
        minibatch: Minibatch::None,
        runs: Runs::Host,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        Ok(params_of(&arch.arch, &arch.settings.config))
    }
}

/// Multiply-adds, from the cell. Dead value: none, as [`Params`].
pub struct Flops;

impl ScoreDef for Flops {
    const INFO: ScoreInfo = ScoreInfo {
        name: "flops",
        higher_is_better: true,
        class_key: ClassKey::Structure,
        dead_value: None,
        minibatch: Minibatch::None,
        runs: Runs::Host,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        Ok(match arch.arch {
            AnyArch::Tss(_) => flops(&arch.cell, &arch.settings.config),
            AnyArch::Sss(sized) => sized.flops(shape_of(&arch.settings.config)) as f64,
        })
    }
}
