//! Where a run's images come from: `synthetic` or `DATASET:PATH`, and the minibatch every
//! arch of a run sees.

use super::RunError;
use crate::data::{read_nb201_train_records, Batch, Dataset, ImageSet, Split};
use crate::proxy::scorer::ScoreSettings;
use crate::space::MacroConfig;
use anyhow::anyhow;
use std::path::PathBuf;

/// A data source: a dataset's files, or synthetic inputs of its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSource {
    pub dataset: Dataset,
    /// The dataset's folder; `None`: synthetic Gaussian inputs (CIFAR-10's shape).
    pub path: Option<PathBuf>,
}

impl DataSource {
    /// `synthetic` or `DATASET:PATH` (`cifar10:PATH`, `cifar100:PATH`, `imagenet16:PATH`;
    /// the dataset names of [`Dataset`]'s `FromStr`).
    pub fn parse(spec: &str) -> Result<DataSource, RunError> {
        if spec == "synthetic" {
            return Ok(DataSource {
                dataset: Dataset::Cifar10,
                path: None,
            });
        }
        let Some((name, path)) = spec.split_once(':') else {
            return Err(RunError::input(anyhow!(
                "--data {spec:?}: expected `synthetic`, `cifar10:PATH`, `cifar100:PATH` or `imagenet16:PATH`"
            )));
        };
        let dataset: Dataset = name.parse().map_err(RunError::input)?;
        Ok(DataSource {
            dataset,
            path: Some(PathBuf::from(path)),
        })
    }

    /// The scores' settings for a network of this data's input shape and classes,
    /// `channels` wide in its first stage with `cells` cells per stage, each score at its
    /// paper batch or at `batch`, weights drawn with `seed`.
    pub fn settings(
        &self,
        channels: usize,
        cells: usize,
        batch: Option<usize>,
        seed: u64,
    ) -> ScoreSettings {
        let mut settings = ScoreSettings::paper_defaults(MacroConfig {
            channels,
            cells_per_stage: cells,
            classes: self.dataset.classes(),
            input_size: self.dataset.image_size(),
            input_channels: 3,
            stem: true,
        });
        settings.seed = seed;
        if let Some(b) = batch {
            settings.set_batch(b);
        }
        settings
    }

    pub fn is_synthetic(&self) -> bool {
        self.path.is_none()
    }

    /// The minibatch every arch sees: `n` distinct training images drawn with `seed` (from
    /// the NAS-Bench-201 train half where its index file is present), or synthetic inputs.
    pub fn minibatch(&self, n: usize, seed: u64) -> Result<Batch, RunError> {
        let Some(path) = &self.path else {
            return Ok(self.dataset.synthetic_batch(n, seed));
        };
        let images = ImageSet::load(self.dataset, path, Split::Train).map_err(RunError::input)?;
        let index_file = path.join("train_index.csv");
        let subset = if self.dataset == Dataset::Cifar10 && index_file.is_file() {
            Some(read_nb201_train_records(&index_file).map_err(RunError::input)?)
        } else {
            None
        };
        images
            .sample(n, seed, subset.as_deref())
            .map_err(RunError::input)
    }
}
