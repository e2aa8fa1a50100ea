//! Readers of the CIFAR-10 and CIFAR-100 binary formats.
//!
//! A record is a label header (CIFAR-10: the label; CIFAR-100: coarse then fine label, of
//! which the fine one is kept) followed by 3,072 pixel bytes: the red, green and blue
//! 32x32 planes, each row-major.
//!
//! In a directory, [`ImageSet::load`]'s [`Split`] picks the names, the shared layout first,
//! then the names of the official archives:
//! - CIFAR-10 train: `train.bin`, else all five `data_batch_1.bin`..`data_batch_5.bin` in order;
//! - CIFAR-10 test: `test.bin`, else `test_batch.bin`;
//! - CIFAR-100: `train.bin` or `test.bin` (the official names).

use std::fs;
use std::path::{Path, PathBuf};

use super::{DataError, Dataset, ImageSet, Split};

/// Reads and concatenates files in the CIFAR binary format of `dataset`.
pub(super) fn read_files(dataset: Dataset, files: &[PathBuf]) -> Result<ImageSet, DataError> {
    let header = header_len(dataset);
    let pixels = dataset.pixels_per_image();
    let mut set = ImageSet {
        dataset,
        images: Vec::new(),
        labels: Vec::new(),
        len: 0,
    };
    for path in files {
        let bytes = read_records(dataset, path, header + pixels)?;
        for (record, chunk) in bytes.chunks_exact(header + pixels).enumerate() {
            let label = chunk[header - 1];
            if usize::from(label) >= dataset.classes() {
                return Err(DataError::LabelOutOfRange {
                    path: path.clone(),
                    dataset,
                    record,
                    label,
                });
            }
            set.labels.push(label);
            set.images.extend_from_slice(&chunk[header..]);
        }
    }
    set.len = set.labels.len();
    Ok(set)
}

/// Bytes before the pixels of a record; the label is the last of them.
fn header_len(dataset: Dataset) -> usize {
    match dataset {
        Dataset::Cifar10 => 1,
        Dataset::Cifar100 => 2,
        // ImageSet sends these files to their own reader.
        Dataset::ImageNet16_120 => unreachable!("ImageNet16-120 files are pickles: imagenet16.rs"),
    }
}

/// The whole file, checked to be a non-empty run of whole records.
fn read_records(dataset: Dataset, path: &Path, record_len: usize) -> Result<Vec<u8>, DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path.to_owned(), e))?;
    if bytes.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_owned(),
        });
    }
    let size = bytes.len() as u64;
    let leftover = size % record_len as u64;
    if leftover != 0 {
        return Err(DataError::Truncated {
            path: path.to_owned(),
            dataset,
            size,
            record_len,
            records: size / record_len as u64,
            leftover,
        });
    }
    Ok(bytes)
}

/// The files of `split` in `dir`, by the rule in the module docs.
pub(super) fn files_in_dir(
    dataset: Dataset,
    dir: &Path,
    split: Split,
) -> Result<Vec<PathBuf>, DataError> {
    let shared = dir.join(match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    });
    if shared.is_file() {
        return Ok(vec![shared]);
    }
    let missing = |looked_for: String| DataError::MissingInDir {
        dir: dir.to_owned(),
        dataset,
        split,
        looked_for,
    };
    match (dataset, split) {
        (Dataset::Cifar10, Split::Train) => {
            let batches: Vec<PathBuf> = (1..=5)
                .map(|i| dir.join(format!("data_batch_{i}.bin")))
                .collect();
            let absent: Vec<String> = batches
                .iter()
                .filter(|p| !p.is_file())
                .map(|p| {
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            if absent.is_empty() {
                Ok(batches)
            } else {
                Err(missing(format!(
                    "train.bin, or all of data_batch_1.bin..data_batch_5.bin (absent: {})",
                    absent.join(", ")
                )))
            }
        }
        (Dataset::Cifar10, Split::Test) => {
            let official = dir.join("test_batch.bin");
            if official.is_file() {
                Ok(vec![official])
            } else {
                Err(missing("test.bin or test_batch.bin".to_owned()))
            }
        }
        _ => Err(missing(format!("{split}.bin"))),
    }
}
