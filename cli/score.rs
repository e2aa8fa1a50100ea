//! `nasrank score`: training-free scores for a set of archs, one row per arch.

use crate::device::{parse_device, parse_storage, with_backend, AnyBackend, Device};
use crate::progress::Progress;
use crate::spec::parse_archs;
use crate::threads::ThreadsArg;
use crate::CliError;
use anyhow::{anyhow, Context};
use clap::{Args, ValueEnum};
use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::cuda::Storage;
use nasrank::data::{read_nb201_train_records, Batch, Dataset, ImageSet, Split};
use nasrank::proxy::scorer::{score_arch_or_dead_values, ScoreSettings};
use nasrank::proxy::Score;
use nasrank::space::{iso_key, Arch, ClassKey, MacroConfig};
use nasrank::store::{self, ResultsWriter, Row, ScoredAs};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
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
    let backends = args
        .device
        .backends(args.workers.map(usize::from), args.storage)?;
    let mut settings = ScoreSettings::paper_defaults(MacroConfig {
        channels: args.channels,
        cells_per_stage: args.cells,
        classes: dataset.classes(),
        input_size: dataset.image_size(),
        input_channels: 3,
        stem: true,
    });
    if let Some(b) = args.batch {
        settings.set_batch(b);
    }
    let seeds = if args.seeds.is_empty() {
        vec![args.seed]
    } else {
        args.seeds.clone()
    };
    // One minibatch per seed, shared by every arch.
    let batches = seeds
        .iter()
        .map(|&seed| {
            load_batch(
                dataset,
                source.as_deref(),
                settings.images_needed(&scores),
                seed,
            )
        })
        .collect::<Result<Vec<Batch>, CliError>>()?;
    let shard = match &args.shard {
        Some(text) => Some(parse_shard(text)?),
        None => slurm_shard()?,
    };

    // Classes: archs whose scores are known equal (score-aware keys, see docs/USAGE.md).
    let class_key = scores
        .iter()
        .map(|s| s.class_key())
        .max()
        .unwrap_or(ClassKey::Function);
    let key_of = |arch: &Arch| -> String {
        if args.no_dedup {
            arch.to_string()
        } else {
            class_key.of(arch)
        }
    };
    let mut class_of: HashMap<String, usize> = HashMap::new();
    let mut work: Vec<(usize, Arch, String)> = Vec::new();
    for (index, arch) in archs {
        let key = key_of(&arch);
        let next = class_of.len();
        let class = *class_of.entry(key.clone()).or_insert(next);
        if shard.is_none_or(|(i, n)| class % n == i - 1) {
            work.push((index, arch, key));
        }
    }

    let mut names: Vec<String> = scores.iter().map(|s| s.name().to_string()).collect();
    if !args.seeds.is_empty() {
        names.extend(scores.iter().map(|s| format!("{}_std", s.name())));
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
        None => {
            let mut out = std::io::stdout().lock();
            store::write_rows(&mut out, format, &names, &[], true).map_err(write_err)?;
            (Sink::Stdout(format, names.clone()), Vec::new())
        }
    };
    let done_indices: HashSet<usize> = done.iter().map(|r| r.index).collect();
    let mut known: HashMap<String, Row> = HashMap::new();
    for row in done {
        known
            .entry(key_of(
                &row.arch
                    .parse()
                    .map_err(|e| CliError::usage(anyhow!("{e}")))?,
            ))
            .or_insert(row);
    }
    let todo: Vec<&(usize, Arch, String)> = work
        .iter()
        .filter(|(i, _, _)| !done_indices.contains(i))
        .collect();
    if args.resume && !args.quiet {
        eprintln!(
            "resuming: {} rows kept, {} to go",
            work.len() - todo.len(),
            todo.len()
        );
    }

    // Scored by a worker: the first arch of each class not known yet; every other row
    // copies its class's row, written once that is.
    let mut seen: HashSet<&str> = known.keys().map(String::as_str).collect();
    let jobs: Vec<usize> = (0..todo.len())
        .filter(|&p| seen.insert(todo[p].2.as_str()))
        .collect();
    // The asked scores in parts, each part computed by workers of its own. On a GPU the
    // host's scores (synflow in f64, params, flops) run on host threads beside the GPU
    // workers, so that no stream waits on the CPU (docs/PERF.md, "GPU"); elsewhere one
    // part holds every score.
    let on_gpu = !backends.iter().any(|be| matches!(be, AnyBackend::Cpu(_)));
    let (host_scores, device_scores): (Vec<Score>, Vec<Score>) = if on_gpu {
        scores.iter().partition(|s| s.runs_on_host())
    } else {
        (Vec::new(), scores.clone())
    };
    let parts: Vec<&[Score]> = [&device_scores[..], &host_scores[..]]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect();
    // Where each asked score's value is: (part, position in the part).
    let place: Vec<(usize, usize)> = scores
        .iter()
        .map(|score| {
            parts
                .iter()
                .enumerate()
                .find_map(|(p, part)| Some((p, part.iter().position(|s| s == score)?)))
                .expect("every score is in a part")
        })
        .collect();
    let score_part = |be: &AnyBackend,
                      index: usize,
                      arch: &Arch,
                      part: &[Score]|
     -> Result<PartValues, CliError> {
        let start = Instant::now();
        let mut per_seed = Vec::with_capacity(seeds.len());
        let mut all_dead = false;
        for (&seed, batch) in seeds.iter().zip(&batches) {
            let settings = ScoreSettings {
                seed,
                ..settings.clone()
            };
            let (values, dead) = with_backend!(be, be => score_arch_or_dead_values(
                be, arch, part, batch, &settings
            ))
            .with_context(|| format!("scoring arch {index} with seed {seed}"))
            .map_err(CliError::Run)?;
            per_seed.push(values);
            all_dead = dead;
        }
        Ok(PartValues {
            per_seed,
            dead: all_dead,
            seconds: start.elapsed().as_secs_f64(),
        })
    };
    // An arch's row once every part of it is known.
    let assemble = |index: usize, arch: &Arch, known_parts: Vec<PartValues>| -> Row {
        let per_seed: Vec<Vec<f64>> = (0..seeds.len())
            .map(|k| {
                place
                    .iter()
                    .map(|&(p, j)| known_parts[p].per_seed[k][j])
                    .collect()
            })
            .collect();
        let values = if args.seeds.is_empty() {
            per_seed[0].clone()
        } else {
            mean_and_std(&per_seed)
        };
        Row {
            index,
            arch: arch.to_string(),
            unique: iso_key(arch),
            values,
            seconds: known_parts.iter().map(|v| v.seconds).sum(),
            scored_as: if known_parts.iter().all(|v| v.dead) {
                ScoredAs::Dead
            } else {
                ScoredAs::Arch(index)
            },
        }
    };

    let mut progress = Progress::new(todo.len(), args.quiet);
    progress.set_work(jobs.len());
    let next_job: Vec<AtomicUsize> = parts.iter().map(|_| AtomicUsize::new(0)).collect();
    let stop = AtomicBool::new(false);
    type PartResult = (usize, usize, Result<PartValues, CliError>);
    let (sender, results) = mpsc::channel::<PartResult>();
    let pools = cpu_worker_pools(&backends)?;
    // Workers: every backend on the first part; on a GPU with host scores asked, host
    // threads on the cores the GPU workers leave.
    let host = AnyBackend::Cpu(CpuBackend::new());
    let mut workers: Vec<(&AnyBackend, Option<&rayon::ThreadPool>, usize)> = backends
        .iter()
        .zip(&pools)
        .map(|(be, pool)| (be, pool.as_ref(), 0))
        .collect();
    if !host_scores.is_empty() {
        if device_scores.is_empty() {
            workers.clear();
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let host_workers = cores.saturating_sub(workers.len()).max(1);
        let host_part = parts.len() - 1;
        workers.extend((0..host_workers).map(|_| (&host, None, host_part)));
    }
    std::thread::scope(|scope| {
        for (be, pool, p) in workers {
            let sender = sender.clone();
            let (jobs, todo, next_job, stop, score_part, part) =
                (&jobs, &todo, &next_job[p], &stop, &score_part, parts[p]);
            scope.spawn(move || {
                let work = || {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(&pos) = jobs.get(next_job.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        let (index, arch, _) = todo[pos];
                        if sender
                            .send((pos, p, score_part(be, *index, arch, part)))
                            .is_err()
                        {
                            break;
                        }
                    }
                };
                match pool {
                    Some(pool) => pool.install(work),
                    None => work(),
                }
            });
        }
        drop(sender);
        // Parts known of archs whose row is not complete yet.
        let mut partial: HashMap<usize, Vec<Option<PartValues>>> = HashMap::new();
        // Rows in input order: each as soon as it and every row before it are known.
        let mut ready: HashMap<usize, Row> = HashMap::new();
        let mut written = 0;
        let outcome = 'rows: loop {
            while written < todo.len() {
                let (index, arch, key) = todo[written];
                let scored = ready.remove(&written);
                let costly = scored.is_some();
                let row = if let Some(row) = scored {
                    known.insert(key.clone(), row.clone());
                    row
                } else if let Some(rep) = known.get(key) {
                    Row {
                        index: *index,
                        arch: arch.to_string(),
                        unique: iso_key(arch),
                        values: rep.values.clone(),
                        seconds: 0.0,
                        scored_as: rep.scored_as,
                    }
                } else {
                    break;
                };
                if let Err(e) = sink.write(&row) {
                    break 'rows Err(e);
                }
                progress.tick_item(costly);
                written += 1;
            }
            if written == todo.len() {
                break Ok(());
            }
            match results.recv() {
                Ok((pos, p, Ok(values))) => {
                    let slots = partial
                        .entry(pos)
                        .or_insert_with(|| parts.iter().map(|_| None).collect());
                    slots[p] = Some(values);
                    if slots.iter().all(Option::is_some) {
                        let known_parts = partial.remove(&pos).expect("just filled").into_iter();
                        let (index, arch, _) = todo[pos];
                        let row = assemble(*index, arch, known_parts.flatten().collect());
                        ready.insert(pos, row);
                    }
                }
                Ok((_, _, Err(e))) => break Err(e),
                Err(_) => break Err(CliError::Run(anyhow!("every scoring worker stopped"))),
            }
        };
        // Workers finish the arch they hold, then stop; the rows written so far stand.
        stop.store(true, Ordering::Relaxed);
        outcome
    })?;
    progress.finish();
    Ok(())
}

/// Per score, the mean over seeds, then per score the sample standard deviation (NaN for
/// one seed); a NaN or infinite value makes its score's mean and spread NaN or infinite.
fn mean_and_std(per_seed: &[Vec<f64>]) -> Vec<f64> {
    let k = per_seed.len() as f64;
    let scores = per_seed[0].len();
    let mean: Vec<f64> = (0..scores)
        .map(|j| per_seed.iter().map(|v| v[j]).sum::<f64>() / k)
        .collect();
    let std = (0..scores).map(|j| {
        (per_seed
            .iter()
            .map(|v| (v[j] - mean[j]).powi(2))
            .sum::<f64>()
            / (k - 1.0))
            .sqrt()
    });
    mean.iter().copied().chain(std).collect()
}

/// The values of one part of an arch's scores.
struct PartValues {
    /// Per seed, the part's values in its order.
    per_seed: Vec<Vec<f64>>,
    /// Whether every value was a dead value.
    dead: bool,
    seconds: f64,
}

fn write_err(e: std::io::Error) -> CliError {
    CliError::Run(anyhow!("cannot write results: {e}"))
}

/// Where rows go: a results file, or standard output.
enum Sink {
    File(ResultsWriter),
    Stdout(store::Format, Vec<String>),
}

impl Sink {
    fn write(&mut self, row: &Row) -> Result<(), CliError> {
        match self {
            Sink::File(w) => w.write(row).map_err(|e| CliError::Run(e.into())),
            Sink::Stdout(format, names) => {
                let mut out = std::io::stdout().lock();
                store::write_rows(&mut out, *format, names, std::slice::from_ref(row), false)
                    .map_err(write_err)
            }
        }
    }
}

/// `I/N` with 1 <= I <= N.
pub fn parse_shard(text: &str) -> Result<(usize, usize), CliError> {
    let bad = || {
        CliError::usage(anyhow!(
            "--shard {text:?}: expected I/N with 1 <= I <= N (for example 3/8)"
        ))
    };
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The shard of a Slurm job-array task, when run as one.
fn slurm_shard() -> Result<Option<(usize, usize)>, CliError> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
    };
    let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT"))
    else {
        return Ok(None);
    };
    let min = var("SLURM_ARRAY_TASK_MIN").unwrap_or(0);
    let shard = (id + 1 - min.min(id + 1), count);
    if shard.0 == 0 || shard.0 > count {
        return Err(CliError::usage(anyhow!(
            "Slurm array task {id} (min {min}, count {count}) gives no shard in 1..={count}; pass --shard I/N"
        )));
    }
    eprintln!(
        "notice: Slurm job array: scoring shard {}/{}",
        shard.0, shard.1
    );
    Ok(Some(shard))
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
pub(crate) fn parse_data(spec: &str) -> Result<(Dataset, Option<PathBuf>), CliError> {
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
pub(crate) fn load_batch(
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

/// Several CPU workers split the cores: each runs its kernels on a rayon pool of its own
/// share of the `--threads` pool, so that archs run side by side instead of every kernel
/// forking over all cores (whose joins leave cores idle). GPU workers and a lone CPU worker
/// use the global pool.
fn cpu_worker_pools(backends: &[AnyBackend]) -> Result<Vec<Option<rayon::ThreadPool>>, CliError> {
    let is_cpu = |be: &AnyBackend| matches!(be, AnyBackend::Cpu(_));
    let workers = backends.iter().filter(|be| is_cpu(be)).count();
    let threads = rayon::current_num_threads();
    let mut pools = Vec::with_capacity(backends.len());
    let mut k = 0;
    for be in backends {
        if !is_cpu(be) || workers < 2 {
            pools.push(None);
            continue;
        }
        // The first `threads % workers` workers take one thread more, so all are used.
        let share = (threads / workers + usize::from(k < threads % workers)).max(1);
        k += 1;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(share)
            .build()
            .map_err(|e| CliError::Run(anyhow!("a worker's thread pool: {e}")))?;
        pools.push(Some(pool));
    }
    Ok(pools)
}
