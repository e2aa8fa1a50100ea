//! `nasrank score`: training-free scores for a set of archs, one row per arch.

use crate::spec::parse_archs;
use crate::CliError;
use anyhow::{anyhow, Context};
use clap::{Args, ValueEnum};
use nasrank::backend::cpu::CpuBackend;
use nasrank::data::{read_nb201_train_records, Batch, Dataset, ImageSet, Split};
use nasrank::proxy::scorer::{score_arch, ScoreSettings};
use nasrank::proxy::Score;
use nasrank::space::{iso_key, MacroConfig};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Score archs without training; one row per arch (CSV or JSON lines).
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nasrank score --archs 0..100 --scores naswot,synflow\n  \
    nasrank score --archs all --scores naswot --data cifar10:../shared/data/cifar10 --out naswot.csv\n  \
    nasrank score --archs 6111 --scores all --channels 4 --cells 1 --batch 8")]
pub struct ScoreArgs {
    /// `all`, a half-open range `A..B` (`0..600` is 600 archs), a comma list of indices,
    /// one arch string, or a file with one index or arch string per line.
    #[arg(long, default_value = "0..10")]
    archs: String,
    /// Comma list of scores, or `all`.
    #[arg(long, default_value = "naswot")]
    scores: String,
    /// `synthetic` (Gaussian inputs of CIFAR-10's shape), `cifar10:PATH` or `cifar100:PATH`
    /// (a binary file, or a directory holding the standard file names; a `train_index.csv`
    /// beside CIFAR-10's train.bin restricts sampling to NAS-Bench-201's train half).
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Minibatch size of every score (default: each score's paper batch, 128 for NASWOT and
    /// 64 for the others).
    #[arg(long)]
    batch: Option<usize>,
    /// Seed of the weights and of the minibatch (every arch sees the same batch).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Device {
    Cpu,
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

pub fn run(args: &ScoreArgs) -> Result<(), CliError> {
    let archs = parse_archs(&args.archs)?;
    let scores = parse_scores(&args.scores)?;
    if args.channels == 0 || args.cells == 0 {
        return Err(CliError::usage(anyhow!(
            "--channels and --cells must be at least 1"
        )));
    }
    if args.batch == Some(0) {
        return Err(CliError::usage(anyhow!("--batch must be at least 1")));
    }
    let (dataset, source) = parse_data(&args.data)?;
    let mut settings = ScoreSettings::paper_defaults(MacroConfig {
        channels: args.channels,
        cells_per_stage: args.cells,
        classes: dataset.classes(),
        input_size: dataset.image_size(),
        input_channels: 3,
        stem: true,
    });
    settings.seed = args.seed;
    if let Some(b) = args.batch {
        settings.set_batch(b);
    }
    let batch = load_batch(
        dataset,
        source.as_deref(),
        settings.images_needed(&scores),
        args.seed,
    )?;

    // Open the output only now: bad input above leaves no file behind.
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))
                .map_err(CliError::usage)?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let write_err = |e: std::io::Error| CliError::Run(anyhow!("cannot write results: {e}"));
    if args.format == Format::Csv {
        let names: Vec<&str> = scores.iter().map(|s| s.name()).collect();
        writeln!(out, "index,arch,unique,{},seconds", names.join(",")).map_err(write_err)?;
    }
    let be = CpuBackend::<f32>::new();
    let mut progress = Progress::new(archs.len(), args.quiet);
    for (index, arch) in &archs {
        let start = Instant::now();
        let values = score_arch(&be, arch, &scores, &batch, &settings)
            .with_context(|| format!("scoring arch {index}"))
            .map_err(CliError::Run)?;
        let seconds = start.elapsed().as_secs_f64();
        let line = match args.format {
            Format::Csv => format!(
                "{index},{arch},{},{},{seconds:.4}",
                iso_key(arch),
                values
                    .iter()
                    .map(|v| format!("{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Format::Jsonl => {
                let mut row = serde_json::Map::new();
                row.insert("index".into(), (*index).into());
                row.insert("arch".into(), arch.to_string().into());
                row.insert("unique".into(), iso_key(arch).into());
                for (score, v) in scores.iter().zip(&values) {
                    row.insert(score.name().into(), json_number(*v));
                }
                row.insert("seconds".into(), json_number(seconds));
                serde_json::Value::Object(row).to_string()
            }
        };
        writeln!(out, "{line}").map_err(write_err)?;
        out.flush().map_err(write_err)?;
        progress.tick();
    }
    progress.finish();
    Ok(())
}

/// Non-finite values as the strings "NaN", "inf", "-inf" (JSON has no such numbers).
fn json_number(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or_else(|| format!("{v}").into(), Into::into)
}

pub fn parse_scores(list: &str) -> Result<Vec<Score>, CliError> {
    if list.trim() == "all" {
        return Ok(Score::ALL.to_vec());
    }
    let mut scores: Vec<Score> = Vec::new();
    for name in list.split(',') {
        let score: Score = name.parse().map_err(CliError::usage)?;
        if !scores.contains(&score) {
            scores.push(score);
        }
    }
    Ok(scores)
}

/// `synthetic` or `DATASET:PATH`.
fn parse_data(spec: &str) -> Result<(Dataset, Option<PathBuf>), CliError> {
    if spec == "synthetic" {
        return Ok((Dataset::Cifar10, None));
    }
    let Some((name, path)) = spec.split_once(':') else {
        return Err(CliError::usage(anyhow!(
            "--data {spec:?}: expected `synthetic`, `cifar10:PATH` or `cifar100:PATH`"
        )));
    };
    let dataset: Dataset = name.parse().map_err(CliError::usage)?;
    Ok((dataset, Some(PathBuf::from(path))))
}

/// The minibatch every arch sees: `n` distinct training images drawn with `seed` (from the
/// NAS-Bench-201 train half where its index file is present), or synthetic inputs.
fn load_batch(
    dataset: Dataset,
    path: Option<&Path>,
    n: usize,
    seed: u64,
) -> Result<Batch, CliError> {
    let Some(path) = path else {
        eprintln!("notice: no --data given: scoring on synthetic Gaussian inputs (scores on real images need --data cifar10:PATH)");
        return Ok(dataset.synthetic_batch(n, seed));
    };
    let images = ImageSet::load(dataset, path, Split::Train).map_err(CliError::usage)?;
    let index_file = path.join("train_index.csv");
    let subset = if dataset == Dataset::Cifar10 && index_file.is_file() {
        Some(read_nb201_train_records(&index_file).map_err(CliError::usage)?)
    } else {
        None
    };
    images
        .sample(n, seed, subset.as_deref())
        .map_err(CliError::usage)
}

/// Progress on standard error: a line rewritten in place on a terminal, a plain line
/// every 10 seconds otherwise.
struct Progress {
    total: usize,
    done: usize,
    start: Instant,
    last: Instant,
    quiet: bool,
    terminal: bool,
}

impl Progress {
    fn new(total: usize, quiet: bool) -> Progress {
        Progress {
            total,
            done: 0,
            start: Instant::now(),
            last: Instant::now(),
            quiet,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn tick(&mut self) {
        self.done += 1;
        let every = if self.terminal { 0.2 } else { 10.0 };
        if self.quiet || (self.last.elapsed().as_secs_f64() < every && self.done < self.total) {
            return;
        }
        self.last = Instant::now();
        let elapsed = self.start.elapsed().as_secs_f64();
        let rate = self.done as f64 / elapsed.max(1e-9);
        let eta = (self.total - self.done) as f64 / rate.max(1e-9);
        let line = format!(
            "{}/{} archs, {rate:.2} archs/s, elapsed {elapsed:.0} s, eta {eta:.0} s",
            self.done, self.total
        );
        if self.terminal {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.terminal && !self.quiet {
            eprintln!();
        }
    }
}
