//! Reader of the ImageNet16-120 files: the 16x16 Downsampled-ImageNet pickles (spec
//! nats_sss.md B1-B4).
//!
//! A directory holds `train_data_batch_1`..`train_data_batch_10` (the train split, read in
//! that order) and `val_data` (the test split). Each file is one pickled dict: `data`, a
//! numpy uint8 array of shape (n, 768) in C order, and `labels`, a list of n ints, ImageNet
//! classes numbered 1..1000; other keys (`mean` in the train files) are ignored. A row is
//! three planes of 256 bytes (R, G, B), each row-major, as in CIFAR's records.
//!
//! ImageNet16-120 keeps the images whose label is in 1..120, in file order, with class
//! `label - 1`.
//!
//! The pickles were written under Python 2 (array bytes as a `str`); Python 3 ones (array
//! bytes as `bytes`) are read too, protocols 1 to 5. serde-pickle decodes them: numpy's
//! reconstruction calls stay unresolved, so an array arrives as the arguments and state
//! numpy would have been given, which this reader checks and takes apart. Protocol 0
//! (Python 2's default) writes the array bytes as escaped text, and serde-pickle 1.2 does
//! not take the `\'` escape that any real image's bytes produce: such a file is an error
//! that says to re-save it with protocol 2 or later.

use std::fs;
use std::path::{Path, PathBuf};

use serde_pickle::{DeOptions, HashableValue, Value};

use super::{DataError, Dataset, ImageSet, Split};

const DATASET: Dataset = Dataset::ImageNet16_120;
/// Labels of the files: ImageNet's 1..1000.
const MAX_LABEL: i64 = 1000;
const TRAIN_FILES: usize = 10;

/// The files of `split` in `dir`: all ten train batches, or `val_data`.
pub(super) fn files_in_dir(dir: &Path, split: Split) -> Result<Vec<PathBuf>, DataError> {
    let names: Vec<String> = match split {
        Split::Train => (1..=TRAIN_FILES)
            .map(|i| format!("train_data_batch_{i}"))
            .collect(),
        Split::Test => vec!["val_data".to_owned()],
    };
    let absent: Vec<&str> = names
        .iter()
        .filter(|name| !dir.join(name).is_file())
        .map(String::as_str)
        .collect();
    if absent.is_empty() {
        return Ok(names.iter().map(|name| dir.join(name)).collect());
    }
    let looked_for = match split {
        Split::Train if absent.len() == names.len() => {
            format!("train_data_batch_1..train_data_batch_{TRAIN_FILES} (none there)")
        }
        Split::Train => format!(
            "all of train_data_batch_1..train_data_batch_{TRAIN_FILES} (absent: {})",
            absent.join(", ")
        ),
        Split::Test => "val_data".to_owned(),
    };
    Err(DataError::MissingInDir {
        dir: dir.to_owned(),
        dataset: DATASET,
        split,
        looked_for,
    })
}

/// Reads the files in order and keeps the images of labels 1..120.
pub(super) fn read_files(files: &[PathBuf]) -> Result<ImageSet, DataError> {
    let pixels = DATASET.pixels_per_image();
    let mut set = ImageSet {
        dataset: DATASET,
        images: Vec::new(),
        labels: Vec::new(),
        len: 0,
    };
    let mut read = 0;
    for path in files {
        let (rows, labels) = read_file(path)?;
        read += labels.len();
        for (row, &label) in rows.chunks_exact(pixels).zip(&labels) {
            if (1..=DATASET.classes() as i64).contains(&label) {
                set.labels.push((label - 1) as u8);
                set.images.extend_from_slice(row);
            }
        }
    }
    set.len = set.labels.len();
    if set.len == 0 {
        return Err(DataError::NoImageOfTheClasses {
            files: files.to_vec(),
            dataset: DATASET,
            read,
        });
    }
    Ok(set)
}

/// The `data` rows (n * 768 bytes) and the n `labels` of one file, labels checked to be
/// in 1..1000.
fn read_file(path: &Path) -> Result<(Vec<u8>, Vec<i64>), DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path.to_owned(), e))?;
    if bytes.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_owned(),
        });
    }
    // keep_restore_state: numpy's protocol-5 reduction (_frombuffer) keeps its arguments
    // instead of becoming an empty dict; replace_unresolved_globals: the numpy classes
    // named in the arguments become None instead of failing the whole file.
    let options = DeOptions::new()
        .keep_restore_state()
        .replace_unresolved_globals();
    let value =
        serde_pickle::value_from_slice(&bytes, options).map_err(|e| DataError::BadPickle {
            path: path.to_owned(),
            reason: pickle_failure(&e, bytes[0]),
        })?;
    drop(bytes);
    let unexpected = |expected: String, found: String| DataError::UnexpectedContent {
        path: path.to_owned(),
        expected,
        found,
    };

    let Value::Dict(mut dict) = value else {
        return Err(unexpected(
            "a pickled dict with `data` and `labels`".to_owned(),
            kind(&value).to_owned(),
        ));
    };
    let keys: Vec<String> = dict.keys().map(key_text).collect();
    let mut take = |key: &str| {
        // Python 2 pickles the keys as byte strings, Python 3 as text.
        dict.remove(&HashableValue::String(key.to_owned()))
            .or_else(|| dict.remove(&HashableValue::Bytes(key.as_bytes().to_vec())))
            .ok_or_else(|| {
                unexpected(
                    format!("a `{key}` entry in the dict"),
                    format!("the keys {}", keys.join(", ")),
                )
            })
    };
    let data = take("data")?;
    let labels = take("labels")?;

    let rows = uint8_rows(data).map_err(|found| {
        unexpected(
            format!(
                "`data` to be a numpy uint8 array of shape (n, {}) in C order",
                DATASET.pixels_per_image()
            ),
            found,
        )
    })?;
    let n = rows.len() / DATASET.pixels_per_image();

    let items = match labels {
        Value::List(items) | Value::Tuple(items) => items,
        other => {
            return Err(unexpected(
                "`labels` to be a list of ints".to_owned(),
                kind(&other).to_owned(),
            ))
        }
    };
    if items.len() != n {
        return Err(unexpected(
            format!("{n} labels, one per row of `data`"),
            format!("{} labels", items.len()),
        ));
    }
    let mut labels = Vec::with_capacity(n);
    for (record, item) in items.iter().enumerate() {
        match *item {
            Value::I64(label) if (1..=MAX_LABEL).contains(&label) => labels.push(label),
            Value::I64(label) => {
                return Err(unexpected(
                    format!("labels in 1..{MAX_LABEL} (ImageNet classes, numbered from 1)"),
                    format!("label {label} at record {record}"),
                ))
            }
            ref other => {
                return Err(unexpected(
                    "`labels` to be a list of ints".to_owned(),
                    format!("{} at record {record}", kind(other)),
                ))
            }
        }
    }
    Ok((rows, labels))
}

/// Why a file could not be decoded, in one line: the decoder's error (cut short, as it
/// may quote a whole string), and what it likely means.
fn pickle_failure(error: &serde_pickle::Error, first_byte: u8) -> String {
    let full = error.to_string();
    let mut text: String = full.chars().take(160).collect();
    if text.len() < full.len() {
        text.push_str("...");
    }
    // Protocols 2 and later open with the PROTO opcode; serde-pickle reports an escape it
    // does not know as an invalid literal.
    let invalid_literal = matches!(
        error,
        serde_pickle::Error::Eval(serde_pickle::ErrorCode::InvalidLiteral(_), _)
    );
    let hint = if first_byte != 0x80 && invalid_literal {
        "; a protocol 0 pickle (Python 2's default), whose array bytes are escaped text \
         with \\' escapes that serde-pickle 1.2 cannot decode: re-save the file with \
         protocol 2 or later (docs/USAGE.md)"
    } else if matches!(
        error,
        serde_pickle::Error::Eval(serde_pickle::ErrorCode::EOFWhileParsing, _)
    ) {
        "; the file ends early (truncated?)"
    } else {
        ""
    };
    text + hint
}

/// The bytes of a pickled numpy uint8 array of shape (n, 768) in C order, or what was
/// found instead.
///
/// serde-pickle leaves an array as one of:
/// - protocols 0-4, `_reconstruct` then `__setstate__`: the state tuple
///   `(1, shape, dtype, is_fortran, bytes)`;
/// - protocol 5, `_frombuffer(bytes, dtype, shape, order)`: that argument tuple.
///
/// A dtype arrives as its state `(version, byteorder, subarray, names, fields, elsize,
/// alignment, flags)`: its type code sits in the constructor's arguments, which the
/// decoder drops. The state of a plain 1-byte type has byte order `|`, no subarray, names
/// or fields and elsize -1; of those, uint8 shares its state with int8 and bool only, whose
/// bytes would be read as uint8's.
fn uint8_rows(value: Value) -> Result<Vec<u8>, String> {
    let Value::Tuple(parts) = value else {
        return Err(kind(&value).to_owned());
    };
    let (shape, dtype, fortran, payload) = match <[Value; 5]>::try_from(parts) {
        Ok([Value::I64(1), shape, dtype, fortran, payload]) => {
            let fortran = match fortran {
                Value::Bool(f) => f,
                Value::I64(f) => f != 0,
                other => return Err(format!("a Fortran flag that is {}", kind(&other))),
            };
            (shape, dtype, fortran, payload)
        }
        Ok(_) => return Err("a tuple".to_owned()),
        Err(parts) => match <[Value; 4]>::try_from(parts) {
            Ok([payload @ Value::Bytes(_), dtype, shape, order]) => {
                let fortran = match order {
                    Value::String(o) if o == "C" => false,
                    Value::String(o) if o == "F" => true,
                    other => return Err(format!("an array order that is {other:?}")),
                };
                (shape, dtype, fortran, payload)
            }
            _ => return Err("a tuple".to_owned()),
        },
    };
    let shape: Vec<i64> = match shape {
        Value::Tuple(dims) => dims
            .iter()
            .map(|d| match d {
                Value::I64(d) if *d >= 0 => Ok(*d),
                other => Err(format!("a shape holding {}", kind(other))),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("a shape that is {}", kind(&other))),
    };
    // As Python writes a shape: (2304,) (3, 768)
    let shape_text = match shape.as_slice() {
        [one] => format!("({one},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let pixels = DATASET.pixels_per_image();
    if shape.len() != 2 || shape[1] != pixels as i64 {
        // The same files exist at 8x8, 32x32 and 64x64 (Downsampled ImageNet).
        let other_size = match shape.as_slice() {
            [_, 192] => Some(8),
            [_, 3072] => Some(32),
            [_, 12288] => Some(64),
            _ => None,
        };
        return Err(match other_size {
            Some(side) => format!("an array of shape {shape_text}: rows of {side}x{side} images"),
            None => format!("an array of shape {shape_text}"),
        });
    }
    let payload = match payload {
        Value::Bytes(b) => b,
        // A latin1-decoded Python 2 `str`: each char is one byte.
        Value::String(s) if s.chars().all(|c| u32::from(c) <= 0xff) => {
            s.chars().map(|c| c as u8).collect()
        }
        other => return Err(format!("array data that is {}", kind(&other))),
    };
    let elements = shape[0] as u128 * shape[1] as u128;
    if !one_byte_plain_type(&dtype) {
        let size = match payload.len() as u128 {
            len if elements > 0 && len % elements == 0 => {
                format!(" ({} bytes each)", len / elements)
            }
            _ => String::new(),
        };
        return Err(format!(
            "an array of shape {shape_text} whose items are not uint8{size}"
        ));
    }
    if payload.len() as u128 != elements {
        return Err(format!(
            "an array of shape {shape_text} whose data is {} bytes",
            payload.len()
        ));
    }
    // One row is C and Fortran order at once.
    if fortran && shape[0] > 1 {
        return Err(format!("an array of shape {shape_text} in Fortran order"));
    }
    Ok(payload)
}

/// Whether a dtype state is that of a plain 1-byte type (uint8, int8 or bool).
fn one_byte_plain_type(dtype: &Value) -> bool {
    let Value::Tuple(state) = dtype else {
        return false;
    };
    let byteorder_none = match state.get(1) {
        Some(Value::String(s)) => s == "|",
        Some(Value::Bytes(b)) => b == b"|",
        _ => false,
    };
    state.len() >= 8
        && byteorder_none
        && state[2..5].iter().all(|v| *v == Value::None)
        && state[5] == Value::I64(-1)
}

/// A Python type name for a decoded value, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::I64(_) | Value::Int(_) => "an int",
        Value::F64(_) => "a float",
        Value::Bytes(_) => "a byte string",
        Value::String(_) => "a text string",
        Value::List(_) => "a list",
        Value::Tuple(_) => "a tuple",
        Value::Set(_) | Value::FrozenSet(_) => "a set",
        Value::Dict(_) => "a dict",
    }
}

/// A dict key as text, for messages.
fn key_text(key: &HashableValue) -> String {
    match key {
        HashableValue::String(s) => s.clone(),
        HashableValue::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}
