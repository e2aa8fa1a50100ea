//! The shared `train_index.csv`: which CIFAR-10 training records lie in the NAS-Bench-201
//! "train" half, the half NASWOT draws its minibatch from.

use std::fs;
use std::path::Path;

use super::DataError;

/// The `record` values of the rows whose `in_nb201_train_split` is 1, in file order.
///
/// Columns are found by name in the header, so their order and any extra columns do not
/// matter; the flag must be 0 or 1.
pub fn read_nb201_train_records(path: impl AsRef<Path>) -> Result<Vec<usize>, DataError> {
    let path = path.as_ref();
    let text = fs::read_to_string(path).map_err(|e| DataError::io(path.to_owned(), e))?;
    let bad = |line: usize, message: String| DataError::BadIndexFile {
        path: path.to_owned(),
        line,
        message,
    };
    let mut lines = text.lines().map(str::trim).enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.split(',').collect(),
        None => return Err(bad(1, "empty file".to_owned())),
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|&h| h == name)
            .ok_or_else(|| bad(1, format!("no {name:?} column in the header")))
    };
    let (record_col, flag_col) = (column("record")?, column("in_nb201_train_split")?);
    let mut records = Vec::new();
    for (i, line) in lines.filter(|(_, l)| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |col: usize| {
            fields.get(col).copied().ok_or_else(|| {
                bad(
                    i + 1,
                    format!("{} fields, expected {}", fields.len(), header.len()),
                )
            })
        };
        let record = field(record_col)?;
        let record: usize = record
            .parse()
            .map_err(|_| bad(i + 1, format!("record {record:?} is not a number")))?;
        match field(flag_col)? {
            "1" => records.push(record),
            "0" => {}
            other => {
                return Err(bad(
                    i + 1,
                    format!("split flag {other:?} is neither 0 nor 1"),
                ))
            }
        }
    }
    Ok(records)
}
