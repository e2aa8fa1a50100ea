//! `nasrank eval`: how well each score of a results file ranks archs by accuracy.

use crate::plot::{plot, plot_format};
use crate::CliError;
use clap::Args;
use nasrank::eval::table::{evaluate, join, Ensemble, Table};
use nasrank::run::archs::check_eval_space;
use nasrank::run::provenance::Provenance;
use nasrank::space::Space;
use std::path::PathBuf;

/// Spearman, Kendall tau-b and top-k accuracy of every score column against an accuracy table.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nasrank eval --scores scores.csv --truth ../shared/data/nb201/accuracy_dev.csv\n  \
    nasrank eval --scores scores.csv --truth acc.csv --metric cifar100_test --ensemble ntk,linear_regions\n  \
    nasrank eval --scores scores.csv --truth acc.csv --plot scores-vs-accuracy.png")]
pub struct EvalArgs {
    /// A results file of `nasrank score` (CSV).
    #[arg(long)]
    scores: PathBuf,
    /// Accuracy table: CSV with an `index` or `arch` column and the metric column.
    #[arg(long)]
    truth: PathBuf,
    /// The accuracy column.
    #[arg(long, default_value = "cifar10_test")]
    metric: String,
    /// Also rank the archs by combining these scores' ranks (comma list), label-free.
    #[arg(long, value_delimiter = ',')]
    ensemble: Vec<String>,
    /// How --ensemble combines the ranks: `rank-sum` (their sum) or `log-rank` (AZ-NAS's
    /// sum of ln(rank / archs)).
    #[arg(long, default_value = "rank-sum", value_parser = clap::value_parser!(Ensemble))]
    ensemble_method: Ensemble,
    /// Also draw one score-vs-accuracy scatter panel per score column into this file:
    /// PNG or SVG, by its extension.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Print one JSON object per score instead of a table.
    #[arg(long)]
    json: bool,
    /// The search space of both tables' archs: tss or sss (default: the one the scores
    /// file's provenance manifest records; without one, not checked). Every row must be an
    /// arch of it.
    #[arg(long)]
    space: Option<Space>,
}

pub fn run(args: &EvalArgs) -> Result<(), CliError> {
    if let Some(path) = &args.plot {
        plot_format(path)?;
    }
    let scores = Table::read(&args.scores).map_err(CliError::usage)?;
    let made = Provenance::read(&args.scores)?;
    match &made {
        Some(p) => eprintln!("{}: {}", args.scores.display(), p.summary()),
        None => eprintln!(
            "{}: no provenance manifest beside it: how it was made is unknown",
            args.scores.display()
        ),
    }
    let truth = Table::read(&args.truth).map_err(CliError::usage)?;
    check_eval_space(
        args.space,
        made.as_ref(),
        [(&scores, &args.scores), (&truth, &args.truth)],
    )?;
    let results = evaluate(
        &scores,
        &truth,
        &args.metric,
        &args.ensemble,
        args.ensemble_method,
    )
    .map_err(CliError::usage)?;
    if let Some(path) = &args.plot {
        let joined = join(&scores, &truth, &args.metric).map_err(CliError::usage)?;
        plot(path, &joined, &args.metric)?;
    }
    if args.json {
        for q in &results {
            println!(
                "{}",
                serde_json::json!({
                    "score": q.name, "archs": q.archs, "spearman": q.spearman, "kendall": q.kendall,
                    "top1_accuracy": q.top1_accuracy, "top10_mean_accuracy": q.top10_mean_accuracy,
                })
            );
        }
        return Ok(());
    }
    println!(
        "{:<28} {:>6} {:>9} {:>9} {:>8} {:>10}",
        "score", "archs", "spearman", "kendall", "top1 acc", "top10 mean"
    );
    for q in &results {
        println!(
            "{:<28} {:>6} {:>9.4} {:>9.4} {:>8.2} {:>10.2}",
            q.name, q.archs, q.spearman, q.kendall, q.top1_accuracy, q.top10_mean_accuracy
        );
    }
    Ok(())
}
