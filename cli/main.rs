//! The `nasrank` command line.
//!
//! Exit codes, for every command: 0 success, 2 bad usage or input, 1 failure during a run.

mod arch;
mod bench;
mod eval;
mod merge;
mod plot;
mod progress;
mod score;
mod search;
mod signals;
mod threads;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Training-free scores for NAS-Bench-201 architectures.
#[derive(Parser)]
#[command(
    name = "nasrank",
    version,
    about,
    propagate_version = true,
    after_help = "Examples:\n  \
    nasrank arch 6111\n  \
    nasrank score --archs all --scores naswot --data cifar10:../shared/data/cifar10 --out naswot.csv\n  \
    nasrank eval --scores naswot.csv --truth ../shared/data/nb201/accuracy_dev.csv --plot naswot.png\n  \
    nasrank search random --samples 100 --runs 10\n  \
    nasrank merge shard-*.csv --out all.csv\n  \
    nasrank bench kernels\n\n\
    Every command has --help with its own examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Arch(arch::ArchArgs),
    Score(score::ScoreArgs),
    Eval(eval::EvalArgs),
    Merge(merge::MergeArgs),
    Search(search::SearchArgs),
    Bench(bench::BenchArgs),
}

/// Dies quietly on a closed output pipe (`nasrank score ... | head`), as Unix tools do,
/// instead of Rust's default of ignoring SIGPIPE and panicking on the failed write.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A command's failure, with the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// Bad usage or input (exit 2).
    Usage(anyhow::Error),
    /// Failure during a run (exit 1).
    Run(anyhow::Error),
    /// Stopped by a signal (exit 128 + the signal), with what to do next.
    Stopped(i32, String),
}

impl CliError {
    pub fn usage(e: impl Into<anyhow::Error>) -> CliError {
        CliError::Usage(e.into())
    }
}

impl From<nasrank::run::RunError> for CliError {
    fn from(e: nasrank::run::RunError) -> CliError {
        match e {
            nasrank::run::RunError::Input(e) | nasrank::run::RunError::Unavailable(e) => {
                CliError::Usage(e)
            }
            nasrank::run::RunError::Failed(e) => CliError::Run(e),
            nasrank::run::RunError::Stopped => {
                CliError::Stopped(signals::received().unwrap_or(0), String::new())
            }
        }
    }
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Arch(args) => arch::run(&args),
        Command::Score(args) => {
            signals::install();
            args.threads.install().and_then(|()| score::run(&args))
        }
        Command::Eval(args) => eval::run(&args),
        Command::Merge(args) => merge::run(&args),
        Command::Search(args) => {
            signals::install();
            args.threads.install().and_then(|()| search::run(&args))
        }
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(CliError::Run(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
        Err(CliError::Stopped(signal, next)) => {
            eprintln!("stopped by {}{next}", signals::name(signal));
            ExitCode::from((128 + signal).clamp(1, 255) as u8)
        }
    }
}
