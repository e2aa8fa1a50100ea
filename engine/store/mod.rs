//! The results file: one row per arch, CSV or JSON lines, appended and flushed row by row,
//! resumable after a kill (a torn last line is detected and cut), and mergeable from shards.
//!
//! Columns: `index,arch,unique`, one column per score, `seconds` (time spent scoring the
//! arch; 0 for a row copied from its class representative), `scored_as` (the index of the
//! arch whose scoring gave the values: itself, or its isomorphism-class representative; or
//! `dead` for a dead arch whose every value is its score's exact dead value, see
//! `Score::dead_value`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// File format of a results file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

/// One arch's results.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub index: usize,
    pub arch: String,
    pub unique: String,
    pub values: Vec<f64>,
    pub seconds: f64,
    pub scored_as: ScoredAs,
}

/// Where a row's values came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoredAs {
    /// Scoring this benchmark index (the row's own, or its class representative's).
    Arch(usize),
    /// A dead arch: every value is its score's exact value on dead archs, no forward pass.
    Dead,
}

impl std::fmt::Display for ScoredAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScoredAs::Arch(i) => write!(f, "{i}"),
            ScoredAs::Dead => f.write_str("dead"),
        }
    }
}

impl std::str::FromStr for ScoredAs {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<ScoredAs, Self::Err> {
        match s {
            "dead" => Ok(ScoredAs::Dead),
            _ => s.parse().map(ScoredAs::Arch),
        }
    }
}

impl ScoredAs {
    fn to_json(self) -> serde_json::Value {
        match self {
            ScoredAs::Arch(i) => i.into(),
            ScoredAs::Dead => "dead".into(),
        }
    }

    fn from_json(v: &serde_json::Value) -> Option<ScoredAs> {
        match v.as_u64() {
            Some(i) => Some(ScoredAs::Arch(i as usize)),
            None => v.as_str()?.parse().ok(),
        }
    }
}

/// Problems with a results file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: its columns ({found}) differ from this run's ({expected}); resume with the same --scores")]
    Header {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path}:{line}: {message}")]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path} is being written by {holder}; give each run its own --out (in a Slurm array: one per task, e.g. --out shard-$SLURM_ARRAY_TASK_ID.csv)", holder = match holder { Some(pid) => format!("another process (pid {pid})"), None => "another process".to_string() })]
    Locked { path: PathBuf, holder: Option<i32> },
}

/// The header columns for `scores`.
pub fn columns(scores: &[&str]) -> Vec<String> {
    let mut cols: Vec<String> = ["index", "arch", "unique"].map(String::from).to_vec();
    cols.extend(scores.iter().map(|s| s.to_string()));
    cols.extend(["seconds", "scored_as"].map(String::from));
    cols
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Formats a value so that it parses back to the same f64 (`NaN`, `inf`, `-inf` included).
fn number(v: f64) -> String {
    format!("{v}")
}

impl Row {
    fn to_line(&self, format: Format, scores: &[String]) -> String {
        match format {
            Format::Csv => {
                let mut fields = vec![
                    self.index.to_string(),
                    self.arch.clone(),
                    self.unique.clone(),
                ];
                fields.extend(self.values.iter().map(|v| number(*v)));
                fields.push(format!("{:.4}", self.seconds));
                fields.push(self.scored_as.to_string());
                fields.join(",")
            }
            Format::Jsonl => {
                let mut row = serde_json::Map::new();
                row.insert("index".into(), self.index.into());
                row.insert("arch".into(), self.arch.clone().into());
                row.insert("unique".into(), self.unique.clone().into());
                for (name, v) in scores.iter().zip(&self.values) {
                    row.insert(name.clone(), json_number(*v));
                }
                row.insert("seconds".into(), json_number(self.seconds));
                row.insert("scored_as".into(), self.scored_as.to_json());
                serde_json::Value::Object(row).to_string()
            }
        }
    }

    /// Parses one line; `None` when it is not a complete row of this layout.
    fn parse(line: &str, format: Format, scores: &[String]) -> Option<Row> {
        match format {
            Format::Csv => {
                let f: Vec<&str> = line.split(',').collect();
                if f.len() != scores.len() + 5 {
                    return None;
                }
                Some(Row {
                    index: f[0].parse().ok()?,
                    arch: f[1].to_string(),
                    unique: f[2].to_string(),
                    values: f[3..3 + scores.len()]
                        .iter()
                        .map(|v| v.parse().ok())
                        .collect::<Option<_>>()?,
                    seconds: f[3 + scores.len()].parse().ok()?,
                    scored_as: f[4 + scores.len()].parse().ok()?,
                })
            }
            Format::Jsonl => {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                let value = |x: &serde_json::Value| -> Option<f64> {
                    x.as_f64().or_else(|| x.as_str()?.parse().ok())
                };
                Some(Row {
                    index: v["index"].as_u64()? as usize,
                    arch: v["arch"].as_str()?.to_string(),
                    unique: v["unique"].as_str()?.to_string(),
                    values: scores.iter().map(|s| value(&v[s])).collect::<Option<_>>()?,
                    seconds: value(&v["seconds"])?,
                    scored_as: ScoredAs::from_json(&v["scored_as"])?,
                })
            }
        }
    }
}

/// Non-finite values as the strings "NaN", "inf", "-inf" (JSON has no such numbers).
fn json_number(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or_else(|| number(v).into(), Into::into)
}

/// Reads a results file: its rows, and the byte length of its valid prefix (everything up
/// to the last complete row; a torn or garbled tail is not part of it).
pub fn read_rows(
    path: &Path,
    format: Format,
    scores: &[String],
) -> Result<(Vec<Row>, u64), StoreError> {
    let mut text = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(io_err(path))?;
    let mut rows = Vec::new();
    let mut valid = 0u64;
    let mut offset = 0usize;
    let expected_header = columns(&scores.iter().map(String::as_str).collect::<Vec<_>>()).join(",");
    for (line_no, raw) in text.split_inclusive('\n').enumerate() {
        let complete = raw.ends_with('\n');
        let line = raw.trim_end_matches('\n');
        offset += raw.len();
        if format == Format::Csv && line_no == 0 {
            if !complete {
                break;
            }
            if line != expected_header {
                return Err(StoreError::Header {
                    path: path.to_path_buf(),
                    found: line.to_string(),
                    expected: expected_header,
                });
            }
            valid = offset as u64;
            continue;
        }
        match Row::parse(line, format, scores) {
            Some(row) if complete => {
                rows.push(row);
                valid = offset as u64;
            }
            // The last line may be torn by a kill; anything earlier is corruption.
            _ if offset == text.len() => break,
            _ => {
                return Err(StoreError::Malformed {
                    path: path.to_path_buf(),
                    line: line_no + 1,
                    message: format!("not a complete result row: {line:?}"),
                })
            }
        }
    }
    Ok((rows, valid))
}

/// Takes the advisory write lock (POSIX `fcntl`, whole file) on an open results file, so
/// that two runs given one `--out` cannot both write it: `Ok(true)` once held; `Ok(false)`
/// where the file system offers no locks (some NFS or Lustre mounts), which the caller
/// reports; [`StoreError::Locked`] with the holder's pid when another process holds it.
/// The lock goes with the process: a run killed with SIGKILL leaves none behind.
#[cfg(unix)]
fn lock_for_writing(file: &File, path: &Path) -> Result<bool, StoreError> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: a zeroed `flock` is a valid value (l_start = l_len = 0: the whole file).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    // SAFETY: a valid descriptor and a pointer to a live `flock`.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) } == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => {
            let mut probe = lock;
            // SAFETY: as above; F_GETLK fills `probe` with the conflicting lock.
            let asked = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut probe) };
            let unlocked = libc::F_UNLCK as libc::c_short;
            let holder = (asked == 0 && probe.l_type != unlocked).then_some(probe.l_pid);
            Err(StoreError::Locked {
                path: path.to_path_buf(),
                holder,
            })
        }
        Some(libc::ENOLCK) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => Ok(false),
        _ => Err(io_err(path)(err)),
    }
}

#[cfg(not(unix))]
fn lock_for_writing(_file: &File, _path: &Path) -> Result<bool, StoreError> {
    Ok(false)
}

/// Appends rows to a results file, flushing each one, holding the file's write lock (see
/// [`ResultsWriter::locked`]) until dropped.
pub struct ResultsWriter {
    out: BufWriter<File>,
    path: PathBuf,
    format: Format,
    scores: Vec<String>,
    locked: bool,
}

impl ResultsWriter {
    /// A new file (truncating any old one) with its header.
    pub fn create(
        path: &Path,
        format: Format,
        scores: &[String],
    ) -> Result<ResultsWriter, StoreError> {
        // Locked before it is emptied: a second run given the same path leaves the first
        // one's rows alone.
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err(path))?;
        let locked = lock_for_writing(&file, path)?;
        file.set_len(0).map_err(io_err(path))?;
        let mut w = ResultsWriter {
            out: BufWriter::new(file),
            path: path.to_path_buf(),
            format,
            scores: scores.to_vec(),
            locked,
        };
        if format == Format::Csv {
            let header = columns(&scores.iter().map(String::as_str).collect::<Vec<_>>()).join(",");
            writeln!(w.out, "{header}").map_err(io_err(path))?;
            w.out.flush().map_err(io_err(path))?;
        }
        Ok(w)
    }

    /// Reopens an interrupted file: keeps its complete rows, cuts a torn tail, and returns
    /// the rows already there. A missing file starts afresh.
    pub fn resume(
        path: &Path,
        format: Format,
        scores: &[String],
    ) -> Result<(ResultsWriter, Vec<Row>), StoreError> {
        if !path.exists() {
            return Ok((ResultsWriter::create(path, format, scores)?, Vec::new()));
        }
        let (rows, valid) = read_rows(path, format, scores)?;
        if format == Format::Csv && valid == 0 {
            return Ok((ResultsWriter::create(path, format, scores)?, Vec::new()));
        }
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        let locked = lock_for_writing(&file, path)?;
        file.set_len(valid).map_err(io_err(path))?;
        file.seek(SeekFrom::End(0)).map_err(io_err(path))?;
        Ok((
            ResultsWriter {
                out: BufWriter::new(file),
                path: path.to_path_buf(),
                format,
                scores: scores.to_vec(),
                locked,
            },
            rows,
        ))
    }

    /// Whether this writer holds the file's write lock (false where the file system
    /// offers none: then nothing stops a second run from writing the same file).
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Writes and flushes one row.
    pub fn write(&mut self, row: &Row) -> Result<(), StoreError> {
        let line = row.to_line(self.format, &self.scores);
        writeln!(self.out, "{line}").map_err(io_err(&self.path))?;
        self.out.flush().map_err(io_err(&self.path))
    }
}

/// Replaces the results file at `path` with `rows` (header included): written to a file
/// beside it, then renamed over it, so that a kill leaves the old file or the new one.
pub fn replace_rows(
    path: &Path,
    format: Format,
    scores: &[String],
    rows: &[Row],
) -> Result<(), StoreError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let temp = path.with_file_name(name);
    let written = File::create(&temp).and_then(|file| {
        let mut out = BufWriter::new(file);
        write_rows(&mut out, format, scores, rows, true)?;
        out.into_inner()?.sync_all()
    });
    written
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            io_err(path)(e)
        })
}

/// Writes rows to any writer (standard output) in the same layout.
pub fn write_rows(
    out: &mut dyn Write,
    format: Format,
    scores: &[String],
    rows: &[Row],
    header: bool,
) -> std::io::Result<()> {
    if header && format == Format::Csv {
        writeln!(
            out,
            "{}",
            columns(&scores.iter().map(String::as_str).collect::<Vec<_>>()).join(",")
        )?;
    }
    for row in rows {
        writeln!(out, "{}", row.to_line(format, scores))?;
    }
    out.flush()
}

/// What a merge of shard files found.
#[derive(Debug, Default, PartialEq)]
pub struct MergeReport {
    /// Rows by index (the first seen of duplicates).
    pub rows: BTreeMap<usize, Row>,
    /// Indices seen more than once, with the files that hold them.
    pub duplicates: BTreeMap<usize, Vec<PathBuf>>,
}

/// Reads shard files into one set of rows, noting duplicated indices.
pub fn merge(
    paths: &[PathBuf],
    format: Format,
    scores: &[String],
) -> Result<MergeReport, StoreError> {
    let mut report = MergeReport::default();
    let mut origin: BTreeMap<usize, PathBuf> = BTreeMap::new();
    for path in paths {
        let (rows, valid) = read_rows(path, format, scores)?;
        let len = std::fs::metadata(path).map_err(io_err(path))?.len();
        if valid != len {
            return Err(StoreError::Malformed {
                path: path.clone(),
                line: rows.len() + 1 + usize::from(format == Format::Csv),
                message: "the last line is torn: finish this shard with --resume first".into(),
            });
        }
        for row in rows {
            if let Some(first) = origin.get(&row.index) {
                report
                    .duplicates
                    .entry(row.index)
                    .or_insert_with(|| vec![first.clone()])
                    .push(path.clone());
            } else {
                origin.insert(row.index, path.clone());
                report.rows.insert(row.index, row);
            }
        }
    }
    Ok(report)
}

/// The score columns of a CSV results file's header (between `unique` and `seconds`).
pub fn score_columns_of(path: &Path) -> Result<Vec<String>, StoreError> {
    let mut first = String::new();
    let mut text = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(io_err(path))?;
    first.push_str(text.lines().next().unwrap_or(""));
    let cols: Vec<&str> = first.split(',').collect();
    let n = cols.len();
    if n < 5
        || cols[..3] != ["index", "arch", "unique"]
        || cols[n - 2..] != ["seconds", "scored_as"]
    {
        return Err(StoreError::Malformed {
            path: path.to_path_buf(),
            line: 1,
            message: format!("not a nasrank results header: {first:?}"),
        });
    }
    Ok(cols[3..n - 2].iter().map(|s| s.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nasrank-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn row(index: usize, v: f64) -> Row {
        Row {
            index,
            arch: format!("a{index}"),
            unique: "u".into(),
            values: vec![v, f64::NEG_INFINITY],
            seconds: 0.5,
            scored_as: if index.is_multiple_of(2) {
                ScoredAs::Arch(index)
            } else {
                ScoredAs::Dead
            },
        }
    }

    /// A row marked with its representative's index reads back as written.
    fn w_round_trip(path: &Path, format: Format, scores: &[String]) {
        let mut w = ResultsWriter::create(path, format, scores).unwrap();
        w.write(&row(4, 0.25)).unwrap();
        drop(w);
        let (rows, _) = read_rows(path, format, scores).unwrap();
        assert_eq!(rows, [row(4, 0.25)]);
        assert_eq!(rows[0].scored_as, ScoredAs::Arch(4));
    }

    #[test]
    fn resume_cuts_a_torn_line_and_keeps_complete_rows() {
        for format in [Format::Csv, Format::Jsonl] {
            let path = tmp(&format!("torn-{format:?}"));
            let scores = vec!["naswot".to_string(), "ntk".to_string()];
            let mut w = ResultsWriter::create(&path, format, &scores).unwrap();
            w.write(&row(3, 1.5)).unwrap();
            w.write(&row(7, f64::NAN)).unwrap();
            drop(w);
            // A kill in the middle of the next row.
            let mut f = OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(b"9,a9,u,0.2").unwrap();
            drop(f);
            let (mut w, done) = ResultsWriter::resume(&path, format, &scores).unwrap();
            assert_eq!(done.iter().map(|r| r.index).collect::<Vec<_>>(), [3, 7]);
            w.write(&row(9, 2.0)).unwrap();
            drop(w);
            let (rows, valid) = read_rows(&path, format, &scores).unwrap();
            assert_eq!(valid, std::fs::metadata(&path).unwrap().len());
            assert_eq!(rows.iter().map(|r| r.index).collect::<Vec<_>>(), [3, 7, 9]);
            assert!(rows[1].values[0].is_nan() && rows[0].values[1] == f64::NEG_INFINITY);
            assert_eq!(rows[2], row(9, 2.0));
            assert_eq!(rows[0].scored_as, ScoredAs::Dead);
            w_round_trip(&path, format, &scores);
        }
    }

    #[test]
    fn a_garbled_line_before_the_end_is_an_error_and_headers_must_match() {
        let path = tmp("garbled.csv");
        let scores = vec!["naswot".to_string()];
        std::fs::write(
            &path,
            "index,arch,unique,naswot,seconds,scored_as\nxx\n1,a,u,2,0,1\n",
        )
        .unwrap();
        let err = read_rows(&path, Format::Csv, &scores)
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2:"), "{err}");
        let other = vec!["synflow".to_string()];
        std::fs::write(&path, "index,arch,unique,naswot,seconds,scored_as\n").unwrap();
        assert!(matches!(
            ResultsWriter::resume(&path, Format::Csv, &other),
            Err(StoreError::Header { .. })
        ));
    }

    #[test]
    fn merge_reports_duplicates_and_refuses_torn_shards() {
        let scores = vec!["naswot".to_string(), "ntk".to_string()];
        let (a, b) = (tmp("shard-a.csv"), tmp("shard-b.csv"));
        let mut w = ResultsWriter::create(&a, Format::Csv, &scores).unwrap();
        w.write(&row(1, 1.0)).unwrap();
        w.write(&row(2, 2.0)).unwrap();
        let mut w = ResultsWriter::create(&b, Format::Csv, &scores).unwrap();
        w.write(&row(2, 2.0)).unwrap();
        w.write(&row(5, 5.0)).unwrap();
        drop(w);
        let report = merge(&[a.clone(), b.clone()], Format::Csv, &scores).unwrap();
        assert_eq!(report.rows.keys().copied().collect::<Vec<_>>(), [1, 2, 5]);
        assert_eq!(report.duplicates[&2], vec![a.clone(), b.clone()]);
        assert_eq!(score_columns_of(&a).unwrap(), scores);
        let mut f = OpenOptions::new().append(true).open(&b).unwrap();
        f.write_all(b"6,a6").unwrap();
        drop(f);
        assert!(merge(&[a, b], Format::Csv, &scores)
            .unwrap_err()
            .to_string()
            .contains("torn"));
    }
}
