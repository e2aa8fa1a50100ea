//! Errors of the data layer; each names the file, record or count a user needs to fix it.

use std::path::PathBuf;

use super::{Dataset, Split};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: no such file", path.display())]
    MissingFile { path: PathBuf },

    #[error("no {dataset} {split} data in {}: looked for {looked_for}", dir.display())]
    MissingInDir {
        dir: PathBuf,
        dataset: Dataset,
        split: Split,
        looked_for: String,
    },

    #[error("{}: empty file", path.display())]
    EmptyFile { path: PathBuf },

    #[error(
        "{}: truncated: {size} bytes is not a multiple of the {record_len}-byte {dataset} \
         record ({records} whole records and {leftover} leftover bytes)",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        dataset: Dataset,
        size: u64,
        record_len: usize,
        records: u64,
        leftover: u64,
    },

    #[error(
        "{}: record {record}: label {label} out of range for {dataset} ({} classes)",
        path.display(),
        dataset.classes()
    )]
    LabelOutOfRange {
        path: PathBuf,
        dataset: Dataset,
        record: usize,
        label: u8,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}: not a readable pickle: {reason}", path.display())]
    BadPickle { path: PathBuf, reason: String },

    #[error("{}: expected {expected}, found {found}", path.display())]
    UnexpectedContent {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error(
        "{}: none of the {read} images has a label in 1..{}, the classes of {dataset}",
        list_files(files),
        dataset.classes()
    )]
    NoImageOfTheClasses {
        files: Vec<PathBuf>,
        dataset: Dataset,
        read: usize,
    },

    #[error("unknown dataset {0:?}: expected cifar10, cifar100 or imagenet16-120 (or imagenet16)")]
    UnknownDataset(String),

    #[error("{}: line {line}: {message}", path.display())]
    BadIndexFile {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("cannot sample {requested} distinct images from {available}")]
    NotEnoughImages { requested: usize, available: usize },

    #[error("record {record} out of range: the image set holds {len}")]
    RecordOutOfRange { record: usize, len: usize },

    #[error("record {record} listed twice in the subset to sample from")]
    DuplicateRecord { record: usize },
}

impl DataError {
    /// Wraps an I/O error, keeping "not found" apart so the message can say so plainly.
    pub(crate) fn io(path: PathBuf, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::MissingFile { path }
        } else {
            DataError::Io { path, source }
        }
    }
}

/// One file's path, or the first and last of several.
fn list_files(files: &[PathBuf]) -> String {
    match files {
        [] => "no files".to_owned(),
        [one] => one.display().to_string(),
        [first, .., last] => format!(
            "{} files, {} to {}",
            files.len(),
            first.display(),
            last.display()
        ),
    }
}
