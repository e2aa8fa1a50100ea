//! `nasrank merge`: joins the shard files of one run, checking that every arch is there once.

use crate::CliError;
use clap::Args;
use nasrank::run::archs::parse_space_archs;
use nasrank::run::merge::merge_shards;
use nasrank::space::Space;
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
    /// The search space of the shards' archs (tss or sss), as given to `score --space`.
    #[arg(long, default_value = "tss")]
    space: Space,
}

pub fn run(args: &MergeArgs) -> Result<(), CliError> {
    let expected: Vec<usize> = parse_space_archs(args.space, &args.archs)?
        .into_iter()
        .map(|(index, _)| index)
        .collect();
    let merged = merge_shards(&args.files, args.space, &expected, &args.out)?;
    for notice in &merged.notices {
        eprintln!("notice: {notice}");
    }
    eprintln!(
        "merged {} rows from {} files into {}",
        merged.rows,
        args.files.len(),
        args.out.display()
    );
    Ok(())
}
