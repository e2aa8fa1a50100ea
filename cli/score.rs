//! `nasrank score`: training-free scores for a set of archs, one row per arch.

use crate::progress::Progress;
use crate::signals;
use crate::threads::ThreadsArg;
use crate::CliError;
use anyhow::anyhow;
use clap::{Args, ValueEnum};
use nasrank::proxy::aggregate::ScoreList;
use nasrank::proxy::swap::SwapRegularizer;
use nasrank::proxy::Score;
use nasrank::run::archs::parse_space_archs;
use nasrank::run::data::DataSource;
use nasrank::run::device::{parse_device, parse_storage, storage_name, Device, Storage};
use nasrank::run::provenance::{check_mix, Provenance};
use nasrank::run::score::{
    column_names, complete_set_columns, fill_set_columns, parse_shard, shard_of_slurm_task,
    RowSink, ScoreProgress, ScoreRequest,
};
use nasrank::run::RunError;
use nasrank::space::Space;
use nasrank::store::{self, ResultsWriter, Row};
use std::path::PathBuf;

/// Score archs without training; one row per arch (CSV or JSON lines).
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nasrank score --archs 0..100 --scores naswot,synflow\n  \
    nasrank score --archs all --scores naswot --data cifar10:../shared/data/cifar10 --out naswot.csv\n  \
    nasrank score --archs 6111 --scores all --channels 4 --cells 1 --batch 8\n  \
    nasrank score --space sss --archs all --scores naswot,synflow --data cifar10:../shared/data/cifar10 --out sss.csv")]
pub struct ScoreArgs {
    /// The search space: tss (NAS-Bench-201 / NATS-Bench topology) or sss (NATS-Bench size).
    #[arg(long, default_value = "tss")]
    space: Space,
    /// `all`, a half-open range `A..B` (`0..600` is 600 archs), a comma list of indices,
    /// one arch string of the space, or a file with one index or arch string per line.
    #[arg(long, default_value = "0..10")]
    archs: String,
    /// Comma list of scores, or `all`.
    #[arg(long, default_value = "naswot")]
    scores: String,
    /// `synthetic` (Gaussian inputs of CIFAR-10's shape), `cifar10:PATH`, `cifar100:PATH`
    /// (a binary file, or a directory holding the standard file names; a `train_index.csv`
    /// beside CIFAR-10's train.bin restricts sampling to NAS-Bench-201's train half) or
    /// `imagenet16:PATH` (a pickle, or the folder of train_data_batch_1..10; 16x16 inputs,
    /// 120 classes).
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Minibatch size of every score (default: each score's paper batch, 128 for NASWOT and
    /// linear_regions_net, 32 for ntk and ntk_exact, 64 for the others).
    #[arg(long)]
    batch: Option<usize>,
    /// Seed of the weights and of the minibatch (every arch sees the same batch).
    #[arg(long, default_value_t = 0, conflicts_with = "seeds")]
    seed: u64,
    /// Several seeds (comma list): each score becomes the mean over the seeds, with its
    /// sample standard deviation in a `<score>_std` column.
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
    /// Where to compute: `cpu`, `auto` (a GPU when the CUDA backend can run, else the CPU),
    /// `cuda`, `cuda:K`, `cuda:all` (every GPU) or `emu` (the CUDA backend's host code on
    /// emulated kernels).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: Device,
    /// Archs in flight at once, each on its own backend (on a GPU: its own stream and
    /// buffers; on the CPU: its share of the cores). Default: 4 on a GPU (per GPU with
    /// `cuda:all`), 2 on the CPU (1 with `--threads 1`), also when `auto` falls back to it.
    /// Rows come out in input order whatever N; their `seconds` are per-arch wall times,
    /// which overlap when N > 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// `f16` or `bf16`: the CUDA backend holds activations and their gradients in 16-bit
    /// buffers of that format (arithmetic stays f32; parameters and gradients f32).
    #[arg(long, default_value = "f32", value_parser = parse_storage)]
    storage: Storage,
    /// swap_reg's mu: the model size, in thousands of parameters, its factor
    /// exp(-(params/1e3 - mu)^2 / sigma) centres on (default: the space's largest network,
    /// docs/SCORES.md).
    #[arg(long, requires = "swap_sigma", allow_hyphen_values = true)]
    swap_mu: Option<f64>,
    /// swap_reg's sigma, in squared thousands of parameters (default: the squared span of
    /// the space's sizes, so the factor is 1/e at its smallest network).
    #[arg(long, requires = "swap_mu", allow_hyphen_values = true)]
    swap_sigma: Option<f64>,
    /// Channels of the first stage (NAS-Bench-201: 16).
    #[arg(long, default_value_t = 16)]
    channels: usize,
    /// Cells per stage (NAS-Bench-201: 5).
    #[arg(long, default_value_t = 5)]
    cells: usize,
    /// Output file (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    format: Format,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Continue an interrupted run: keep the rows already in --out (a torn last line is
    /// redone) and score the rest; the file ends as an uninterrupted run would leave it.
    #[arg(long, requires = "out")]
    resume: bool,
    /// Score only shard I of N (I from 1 to N); classes of isomorphic archs are dealt to
    /// shards whole, so merged shards equal one run. Default: Slurm's job-array variables
    /// when set, else the whole set.
    #[arg(long)]
    shard: Option<String>,
    /// Score every arch, even isomorphic ones (default: one arch per class, its values
    /// copied to the others, marked by `scored_as`).
    #[arg(long)]
    no_dedup: bool,
    #[command(flatten)]
    pub(crate) threads: ThreadsArg,
}

/// `--swap-mu` and `--swap-sigma`.
pub(crate) fn swap_regularizer(
    mu: Option<f64>,
    sigma: Option<f64>,
) -> Result<Option<SwapRegularizer>, CliError> {
    SwapRegularizer::from_options(mu, sigma).map_err(|e| CliError::usage(anyhow!(e)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

pub fn run(args: &ScoreArgs) -> Result<(), CliError> {
    let archs = parse_space_archs(args.space, &args.archs)?;
    let ScoreList { scores, sets } = ScoreList::parse(&args.scores).map_err(CliError::usage)?;
    let request = ScoreRequest {
        space: args.space,
        sets,
        batch: args.batch,
        seed: args.seed,
        seeds: args.seeds.clone(),
        device: args.device,
        workers: args.workers.map(usize::from),
        storage: args.storage,
        swap_regularizer: swap_regularizer(args.swap_mu, args.swap_sigma)?,
        channels: args.channels,
        cells: args.cells,
        ..ScoreRequest::new(scores, parse_data(&args.data)?)
    };
    let scoring = request.load()?;
    let shard = match &args.shard {
        Some(text) => Some(parse_shard(text)?),
        None => slurm_shard()?,
    };
    let job = scoring.job(archs, shard, !args.no_dedup);
    let data = &scoring.data;
    let names = column_names(&job.scores, &job.sets, job.spread);
    let data_name = match &data.path {
        Some(_) => data.dataset.name(),
        None => "synthetic",
    };
    let provenance = Provenance::of_job(
        &job,
        data_name,
        data.path.as_deref(),
        storage_name(args.storage),
        &args.device.name(),
    );
    // Resuming a file made with other settings would mix two runs' values: refused
    // before the file is touched.
    if let (Some(path), true) = (&args.out, args.resume) {
        match Provenance::read(path)? {
            Some(old) => {
                let what = format!("--resume {}", path.display());
                for (name, a, b) in check_mix(&what, &old, &provenance, true)? {
                    eprintln!("notice: {what}: {name} was {a}, now {b} (values unchanged)");
                }
            }
            None if path.exists() => eprintln!(
                "notice: --resume {}: no provenance manifest beside it (an older nasrank): \
                 its settings cannot be checked",
                path.display()
            ),
            None => {}
        }
    }
    let format = match args.format {
        Format::Csv => store::Format::Csv,
        Format::Jsonl => store::Format::Jsonl,
    };
    // Open the output only now: bad input above leaves no file behind.
    let (mut sink, done): (Sink, Vec<Row>) = match &args.out {
        Some(path) if args.resume => {
            let (w, rows) = ResultsWriter::resume(path, format, &names).map_err(CliError::usage)?;
            (Sink::File(w), rows)
        }
        Some(path) => (
            Sink::File(ResultsWriter::create(path, format, &names).map_err(CliError::usage)?),
            Vec::new(),
        ),
        // Set scores rank the whole set: their rows wait for the last one.
        None if !job.sets.is_empty() => (Sink::Held(Vec::new()), Vec::new()),
        None => {
            let mut out = std::io::stdout().lock();
            store::write_rows(&mut out, format, &names, &[], true).map_err(write_err)?;
            (Sink::Stdout(format, names.clone()), Vec::new())
        }
    };
    if let Some(path) = &args.out {
        provenance.write(path)?;
    }
    if let Sink::File(w) = &sink {
        if !w.locked() {
            eprintln!(
                "notice: {}: the file system offers no locks: nothing stops a second run from \
                 writing this file too",
                args.out.as_ref().expect("a file sink has a path").display()
            );
        }
    }
    let mut progress = RunProgress {
        bar: None,
        quiet: args.quiet,
        resume: args.resume,
    };
    let outcome = job.run(done, &mut sink, &mut progress);
    if let Some(bar) = progress.bar {
        bar.finish();
    }
    // The set scores, once every row is in.
    let outcome = outcome.and_then(|()| match (sink, &args.out) {
        (Sink::Held(mut rows), _) => {
            fill_set_columns(&mut rows, &names)?;
            let mut out = std::io::stdout().lock();
            store::write_rows(&mut out, format, &names, &rows, true)
                .map_err(|e| RunError::Failed(anyhow!("cannot write results: {e}")))
        }
        (Sink::File(writer), Some(path)) => {
            drop(writer);
            complete_set_columns(path, format, &names)
        }
        _ => Ok(()),
    });
    match (outcome, &args.out) {
        (Err(RunError::Stopped), Some(path)) => Err(CliError::Stopped(
            signals::received().unwrap_or(0),
            format!(
                ": the rows written to {} stand; run the same command with --resume to finish",
                path.display()
            ),
        )),
        (outcome, _) => Ok(outcome?),
    }
}

/// The run's progress on standard error.
struct RunProgress {
    bar: Option<Progress>,
    quiet: bool,
    resume: bool,
}

impl ScoreProgress for RunProgress {
    fn start(&mut self, kept: usize, rows: usize, to_score: usize) {
        if self.resume && !self.quiet {
            eprintln!("resuming: {kept} rows kept, {rows} to go");
        }
        let mut bar = Progress::new(rows, self.quiet);
        bar.set_work(to_score);
        self.bar = Some(bar);
    }

    fn row(&mut self, scored: bool) {
        if let Some(bar) = &mut self.bar {
            bar.tick_item(scored);
        }
    }

    fn interrupted(&self) -> bool {
        signals::received().is_some()
    }
}

fn write_err(e: std::io::Error) -> CliError {
    CliError::Run(anyhow!("cannot write results: {e}"))
}

/// Where rows go: a results file, or standard output.
enum Sink {
    File(ResultsWriter),
    Stdout(store::Format, Vec<String>),
    /// Rows held until the run ends (standard output with set scores).
    Held(Vec<Row>),
}

impl RowSink for Sink {
    fn write(&mut self, row: &Row) -> anyhow::Result<()> {
        match self {
            Sink::File(w) => Ok(w.write(row)?),
            Sink::Held(rows) => {
                rows.push(row.clone());
                Ok(())
            }
            Sink::Stdout(format, names) => {
                let mut out = std::io::stdout().lock();
                store::write_rows(&mut out, *format, names, std::slice::from_ref(row), false)
                    .map_err(|e| anyhow!("cannot write results: {e}"))
            }
        }
    }
}

/// The Slurm job array's shard, with a notice, when run as one of its tasks.
fn slurm_shard() -> Result<Option<(usize, usize)>, CliError> {
    let shard = shard_of_slurm_task(|name| std::env::var(name).ok())?;
    if let Some((i, n)) = shard {
        eprintln!("notice: Slurm job array: scoring shard {i}/{n}");
    }
    Ok(shard)
}

pub fn parse_scores(list: &str) -> Result<Vec<Score>, CliError> {
    Score::parse_list(list).map_err(CliError::usage)
}

/// `--data`: the source, with a notice when it is synthetic.
pub(crate) fn parse_data(spec: &str) -> Result<DataSource, CliError> {
    let data = DataSource::parse(spec)?;
    if data.is_synthetic() {
        eprintln!("notice: no --data given: scoring on synthetic Gaussian inputs (scores on real images need --data cifar10:PATH)");
    }
    Ok(data)
}
