//! Input data: readers of the CIFAR-10/100 binary files and the ImageNet16-120 pickles,
//! normalisation, minibatches, synthetic inputs.
//!
//! Images are kept as bytes ([`ImageSet`]) and normalised only when a [`Batch`] is built.
//! Every random choice goes through [`SplitMix64`], so a seed fixes a batch on every platform.

mod batch;
mod cifar;
mod crops;
mod dataset;
mod error;
mod image_set;
mod imagenet16;
mod rng;
mod seeds;
mod synthetic;
mod train_index;

pub use batch::Batch;
pub use crops::random_crops;
pub use dataset::Dataset;
pub use error::DataError;
pub use image_set::{ImageSet, Split};
pub use rng::{sample_without_replacement, SplitMix64};
pub use seeds::Seeds;
pub use synthetic::synthetic_batch;
pub use train_index::read_nb201_train_records;
