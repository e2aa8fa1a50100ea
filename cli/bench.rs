//! `nasrank bench`: time the backend's primitives at NAS-Bench-201's shapes, and the
//! scores per arch. Generic over the backend, so that a GPU backend plugs in by name.

use crate::score::{parse_data, parse_scores};
use crate::threads::ThreadsArg;
use crate::CliError;
use clap::{Args, Subcommand};
use nasrank::data::Seeds;
use nasrank::run::archs::parse_space_archs;
use nasrank::run::bench::{self, KernelTiming, ScoreTiming};
use nasrank::run::device::{parse_device, parse_storage, AnyBackend, Device, Storage};
use nasrank::run::score::check_space;
use nasrank::space::Space;
use serde_json::json;

/// Time the backend: its primitives at NAS-Bench-201's shapes (`kernels`), or each score
/// per arch (`scores`).
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nasrank bench kernels\n  \
    nasrank bench kernels --batch 64 --threads 1 --json\n  \
    nasrank bench scores --archs 0..10 --scores naswot,ntk\n  \
    nasrank bench scores --archs 6111 --scores all --repeat 3 --data cifar10:../shared/data/cifar10")]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Time, GFLOP/s and GB/s of every primitive at NB-201's stage shapes.
    Kernels(KernelArgs),
    /// Seconds per arch of each score, on the ordinary scoring path.
    Scores(ScoresArgs),
}

/// Options of both benchmarks.
#[derive(Args)]
struct Common {
    /// Backend to time: cpu, cuda, cuda:K, emu or auto, as for `nasrank score`.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: Device,
    /// Timed runs of each item, after one untimed warm-up run; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    threads: ThreadsArg,
}

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nasrank bench kernels\n  \
    nasrank bench kernels --batch 64 --repeat 10 --json\n  \
    nasrank bench kernels --device cuda --storage bf16")]
struct KernelArgs {
    /// Images per call (NASWOT's 128).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Activation storage of the CUDA backend (`f16`, `bf16`): the primitives read and
    /// write activations in that format, and GB/s counts its bytes.
    #[arg(long, default_value = "f32", value_parser = parse_storage)]
    storage: Storage,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nasrank bench scores --archs 0..10 --scores naswot,ntk\n  \
    nasrank bench scores --archs 1,6111 --scores all --channels 4 --cells 1 --json")]
struct ScoresArgs {
    /// The search space: tss (NAS-Bench-201 / NATS-Bench topology) or sss (NATS-Bench size).
    #[arg(long, default_value = "tss")]
    space: Space,
    /// Archs of the space, as `nasrank score --archs`.
    #[arg(long, default_value = "0..10")]
    archs: String,
    /// Comma list of scores, or `all`.
    #[arg(long, default_value = "naswot")]
    scores: String,
    /// `synthetic`, `cifar10:PATH`, `cifar100:PATH` or `imagenet16:PATH`, as for `nasrank score`.
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Minibatch of every score (default: each score's paper batch).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    batch: Option<u32>,
    /// Channels of the first stage.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    channels: u32,
    /// Cells per stage.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    cells: u32,
    /// Seed of the weights and the minibatch.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Activation storage of the CUDA backend (`f16`, `bf16`), as for `nasrank score`.
    #[arg(long, default_value = "f32", value_parser = parse_storage)]
    storage: Storage,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &BenchArgs) -> Result<(), CliError> {
    let common = match &args.what {
        BenchWhat::Kernels(a) => &a.common,
        BenchWhat::Scores(a) => &a.common,
    };
    common.threads.install()?;
    let be = match &args.what {
        BenchWhat::Kernels(a) => common.device.backends(Some(1), a.storage)?.remove(0),
        BenchWhat::Scores(a) => common.device.backends(Some(1), a.storage)?.remove(0),
    };
    match &args.what {
        BenchWhat::Kernels(a) => {
            print_kernels(
                &bench::kernels(&be, a.batch as usize, common.repeat, a.storage),
                common.json,
            );
            Ok(())
        }
        BenchWhat::Scores(a) => bench_scores(&be, a),
    }
}

fn print_kernels(timings: &[KernelTiming], json: bool) {
    if json {
        for t in timings {
            println!(
                "{}",
                json!({
                    "kernel": t.kernel, "shape": t.shape, "seconds": t.seconds,
                    "gflops": t.flops.map(|f| f / t.seconds / 1e9),
                    "gbytes_per_s": t.bytes / t.seconds / 1e9,
                })
            );
        }
        return;
    }
    println!(
        "{:<24} {:<18} {:>10} {:>9} {:>8}",
        "kernel", "shape", "ms", "GFLOP/s", "GB/s"
    );
    for t in timings {
        let gflops = t
            .flops
            .map_or("-".to_string(), |f| format!("{:.1}", f / t.seconds / 1e9));
        println!(
            "{:<24} {:<18} {:>10.3} {:>9} {:>8.1}",
            t.kernel,
            t.shape,
            t.seconds * 1e3,
            gflops,
            t.bytes / t.seconds / 1e9
        );
    }
}

fn bench_scores(be: &AnyBackend, args: &ScoresArgs) -> Result<(), CliError> {
    let archs = parse_space_archs(args.space, &args.archs)?;
    let scores = parse_scores(&args.scores)?;
    check_space(
        args.space,
        &scores,
        args.channels as usize,
        args.cells as usize,
    )?;
    let data = parse_data(&args.data)?;
    let settings = data.settings(
        args.channels as usize,
        args.cells as usize,
        args.batch.map(|b| b as usize),
        args.seed,
    );
    settings
        .check(&scores)
        .map_err(|e| CliError::usage(anyhow::anyhow!(e)))?;
    let batch = data.minibatch(
        settings.images_needed(&scores),
        Seeds(args.seed).minibatch(),
    )?;
    let json = args.common.json;
    if !json {
        println!("{:>6} {:<20} {:>12}  arch", "index", "score", "seconds");
    }
    let mut totals = vec![0.0; scores.len()];
    bench::scores(
        be,
        &archs,
        &scores,
        &batch,
        &settings,
        args.common.repeat,
        &mut |t: ScoreTiming| {
            let k = scores
                .iter()
                .position(|&s| s == t.score)
                .expect("an asked score");
            totals[k] += t.seconds;
            let (index, arch, seconds) = (t.index, t.arch, t.seconds);
            if json {
                println!(
                    "{}",
                    json!({"index": index, "arch": arch.to_string(), "score": t.score.name(), "seconds": seconds})
                );
            } else {
                println!("{index:>6} {:<20} {seconds:>12.5}  {arch}", t.score.name());
            }
        },
    )?;
    if !json {
        for (score, total) in scores.iter().zip(&totals) {
            println!(
                "mean {:<20} {:>12.5} s per arch over {} archs",
                score.name(),
                total / archs.len() as f64,
                archs.len()
            );
        }
    }
    Ok(())
}
