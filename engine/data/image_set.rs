//! [`ImageSet`]: a dataset's labelled images as bytes, whichever file format they come in.
//!
//! [`ImageSet::load`] takes a file or a directory. In a directory, the caller's [`Split`]
//! picks the files by the rules of the dataset's reader (cifar.rs, imagenet16.rs). Images
//! stay as bytes; normalisation happens when a batch is built, so one set serves every
//! batch and precision.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::{cifar, imagenet16, DataError, Dataset};

/// Which part of a dataset to read from a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// Labelled images of one dataset, as raw bytes in file order.
///
/// Invariant: `images.len() == len * dataset.pixels_per_image()` and `labels.len() == len`.
#[derive(Clone, Debug)]
pub struct ImageSet {
    pub dataset: Dataset,
    /// Image after image, each three row-major planes (R, G, B) of bytes.
    pub images: Vec<u8>,
    /// Class of each image, below `dataset.classes()`.
    pub labels: Vec<u8>,
    pub len: usize,
}

impl ImageSet {
    /// Reads a file in `dataset`'s format, or the `split` files of a directory (names in
    /// the reader's module docs). Files of a directory are concatenated in order.
    pub fn load(dataset: Dataset, path: impl AsRef<Path>, split: Split) -> Result<Self, DataError> {
        let path = path.as_ref();
        let meta = fs::metadata(path).map_err(|e| DataError::io(path.to_owned(), e))?;
        let files = if meta.is_dir() {
            match dataset {
                Dataset::Cifar10 | Dataset::Cifar100 => cifar::files_in_dir(dataset, path, split)?,
                Dataset::ImageNet16_120 => imagenet16::files_in_dir(path, split)?,
            }
        } else {
            vec![path.to_owned()]
        };
        Self::read_files(dataset, &files)
    }

    /// Reads and concatenates files in `dataset`'s format.
    pub fn read_files(dataset: Dataset, files: &[PathBuf]) -> Result<Self, DataError> {
        match dataset {
            Dataset::Cifar10 | Dataset::Cifar100 => cifar::read_files(dataset, files),
            Dataset::ImageNet16_120 => imagenet16::read_files(files),
        }
    }

    /// The pixel bytes of image `record` (panics when out of range, like slice indexing).
    pub fn image(&self, record: usize) -> &[u8] {
        let p = self.dataset.pixels_per_image();
        &self.images[record * p..(record + 1) * p]
    }
}
