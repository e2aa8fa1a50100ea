//! Merging the shard files of one run: every arch of the run there once, one set of score
//! columns, no torn shard; the merged file written only when all of that holds.

use super::provenance::{check_mix, Provenance};
use super::score::fill_set_columns;
use super::RunError;
use crate::space::Space;
use crate::store::{self, ResultsWriter};
use anyhow::anyhow;
use std::path::{Path, PathBuf};

/// Merges `files` into `out`, sorted by index, checking that together they hold each arch
/// of `expected` (benchmark indices of `space`) once and nothing else, and that their
/// manifests say `space`; returns the rows written and notices. On any problem nothing
/// is written and the error names every problem found. Shards whose provenance manifests
/// differ in a setting that changes values (seed, data, batch, network, storage) are
/// refused; the merged file gets their manifest, without the shard.
pub fn merge_shards(
    files: &[PathBuf],
    space: Space,
    expected: &[usize],
    out: &Path,
) -> Result<Merged, RunError> {
    let Some((first, rest)) = files.split_first() else {
        return Err(RunError::input(anyhow!("no shard files to merge")));
    };
    let scores = store::score_columns_of(first).map_err(RunError::input)?;
    for file in rest {
        let other = store::score_columns_of(file).map_err(RunError::input)?;
        if other != scores {
            return Err(RunError::input(anyhow!(
                "{} has score columns {} but {} has {}",
                file.display(),
                other.join(","),
                first.display(),
                scores.join(",")
            )));
        }
    }
    // Shards of one run share every setting but their shard: refuse any other difference
    // that changes values, and write the merged file's manifest from theirs.
    let mut notices = Vec::new();
    let manifests = files
        .iter()
        .map(|f| Provenance::read(f))
        .collect::<Result<Vec<_>, _>>()?;
    for (file, manifest) in files.iter().zip(&manifests) {
        if let Some(m) = manifest.as_ref().filter(|m| m.space != space.name()) {
            return Err(RunError::input(anyhow!(
                "{} holds {} archs, not {space} (--space)",
                file.display(),
                m.space
            )));
        }
    }
    let merged = match manifests.split_first() {
        Some((Some(head), rest)) if rest.iter().all(Option::is_some) => {
            for (file, other) in files[1..].iter().zip(rest.iter().flatten()) {
                let what = format!("{} against {}", file.display(), first.display());
                for (name, a, b) in check_mix(&what, head, other, false)? {
                    notices.push(format!("{what}: {name} {b}, not {a} (values unchanged)"));
                }
            }
            Some(Provenance {
                shard: None,
                ..head.clone()
            })
        }
        _ => {
            notices.push(
                "a shard has no provenance manifest (an older nasrank): settings not checked"
                    .to_string(),
            );
            None
        }
    };
    let report = store::merge(files, store::Format::Csv, &scores).map_err(RunError::input)?;
    let missing: Vec<usize> = expected
        .iter()
        .copied()
        .filter(|i| !report.rows.contains_key(i))
        .collect();
    let expected_set: std::collections::HashSet<usize> = expected.iter().copied().collect();
    let extra: Vec<usize> = report
        .rows
        .keys()
        .copied()
        .filter(|i| !expected_set.contains(i))
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "{} archs missing: {}",
            missing.len(),
            preview(&missing)
        ));
    }
    for (index, files) in &report.duplicates {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        problems.push(format!(
            "arch {index} appears more than once: in {}",
            names.join(", ")
        ));
    }
    if !extra.is_empty() {
        problems.push(format!(
            "{} archs outside --archs: {}",
            extra.len(),
            preview(&extra)
        ));
    }
    if !problems.is_empty() {
        return Err(RunError::input(anyhow!(
            "not merged, {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        )));
    }
    // Set scores rank the merged set, as one run over all of it would.
    let mut rows: Vec<store::Row> = report.rows.into_values().collect();
    fill_set_columns(&mut rows, &scores)?;
    let mut writer = ResultsWriter::create(out, store::Format::Csv, &scores)
        .map_err(|e| RunError::Failed(e.into()))?;
    for row in &rows {
        writer.write(row).map_err(|e| RunError::Failed(e.into()))?;
    }
    match merged {
        Some(manifest) => manifest.write(out)?,
        // A shard of an older nasrank: nothing to check, and no manifest for the result.
        None => {
            let _ = std::fs::remove_file(Provenance::path_of(out));
        }
    }
    Ok(Merged {
        rows: rows.len(),
        notices,
    })
}

/// What a merge wrote, and what differed between the shards without changing values.
pub struct Merged {
    pub rows: usize,
    pub notices: Vec<String>,
}

/// The first few indices of a list, for messages.
fn preview(indices: &[usize]) -> String {
    let shown: Vec<String> = indices.iter().take(10).map(usize::to_string).collect();
    if indices.len() > 10 {
        format!("{} ...", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
