//! `nasrank merge`: joins the shard files of one run, checking that every arch is there once.

use crate::CliError;
use anyhow::anyhow;
use clap::Args;
use nasrank::run::archs::parse_archs;
use nasrank::store::{self, ResultsWriter};
use std::path::PathBuf;

/// Merge shard result files (CSV) into one file sorted by index.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nasrank merge shard-*.csv --out all.csv\n  \
    nasrank merge a.csv b.csv --archs 0..1000 --out first1000.csv")]
pub struct MergeArgs {
    /// Shard files written by `nasrank score --shard I/N --out FILE`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The merged file.
    #[arg(long)]
    out: PathBuf,
    /// The archs the shards together must cover (same syntax as `score --archs`).
    #[arg(long, default_value = "all")]
    archs: String,
}

pub fn run(args: &MergeArgs) -> Result<(), CliError> {
    let expected = parse_archs(&args.archs)?;
    let scores = store::score_columns_of(&args.files[0]).map_err(CliError::usage)?;
    for file in &args.files[1..] {
        let other = store::score_columns_of(file).map_err(CliError::usage)?;
        if other != scores {
            return Err(CliError::usage(anyhow!(
                "{} has score columns {} but {} has {}",
                file.display(),
                other.join(","),
                args.files[0].display(),
                scores.join(",")
            )));
        }
    }
    let report = store::merge(&args.files, store::Format::Csv, &scores).map_err(CliError::usage)?;
    let missing: Vec<usize> = expected
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| !report.rows.contains_key(i))
        .collect();
    let expected_set: std::collections::HashSet<usize> = expected.iter().map(|(i, _)| *i).collect();
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
        return Err(CliError::usage(anyhow!(
            "not merged, {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        )));
    }
    let mut out = ResultsWriter::create(&args.out, store::Format::Csv, &scores)
        .map_err(|e| CliError::Run(e.into()))?;
    for row in report.rows.values() {
        out.write(row).map_err(|e| CliError::Run(e.into()))?;
    }
    eprintln!(
        "merged {} rows from {} files into {}",
        report.rows.len(),
        args.files.len(),
        args.out.display()
    );
    Ok(())
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
