//! `nasrank bench`: time the backend's primitives at NAS-Bench-201's shapes, and the
//! scores per arch. Generic over the backend, so that a GPU backend plugs in by name.

use crate::score::{parse_data, parse_scores};
use crate::spec::parse_archs;
use crate::threads::ThreadsArg;
use crate::CliError;
use clap::{Args, Subcommand};
use nasrank::backend::cuda::Storage;
use nasrank::backend::{Backend, BnGeom, BnGrad, ConvGeom, Real};
use nasrank::proxy::scorer::{score_arch, ScoreSettings};
use nasrank::run::device::{parse_device, parse_storage, with_backend, Device};
use nasrank::space::MacroConfig;
use serde_json::json;
use std::time::Instant;

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
    /// Archs, as `nasrank score --archs`.
    #[arg(long, default_value = "0..10")]
    archs: String,
    /// Comma list of scores, or `all`.
    #[arg(long, default_value = "naswot")]
    scores: String,
    /// `synthetic`, `cifar10:PATH` or `cifar100:PATH`, as for `nasrank score`.
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
    with_backend!(&be, be => match &args.what {
        BenchWhat::Kernels(a) => {
            print_kernels(
                &kernel_timings(be, a.batch as usize, common.repeat, a.storage),
                common.json,
            );
            Ok(())
        }
        BenchWhat::Scores(a) => bench_scores(be, a),
    })
}

/// The median of `repeat` timed runs of `f`, after one warm-up run; each run ends when the
/// backend has finished its work (a GPU's queued kernels included).
fn median_seconds<B: Backend>(be: &B, repeat: u32, mut f: impl FnMut()) -> f64 {
    f();
    be.synchronize();
    let mut t: Vec<f64> = (0..repeat)
        .map(|_| {
            let start = Instant::now();
            f();
            be.synchronize();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// One primitive's timing.
struct KernelTiming {
    kernel: String,
    shape: String,
    seconds: f64,
    /// Floating-point operations per call, where the kernel is arithmetic.
    flops: Option<f64>,
    /// Bytes read and written per call (each operand once).
    bytes: f64,
}

/// Uniform values in [-1, 1], uploaded as they are (parameters, per-sample gradients).
fn random<B: Backend>(be: &B, len: usize, seed: u64) -> B::Buf {
    let host: Vec<B::Real> = nasrank::net::init::uniform_stream(seed, 1, len)
        .map(|u| B::Real::from_f64_rounded(2.0 * u - 1.0))
        .collect();
    be.upload(&host)
}

/// [`random`] values `[n][c][hw][hw]` smoothed by a 3x3 average pool: a primitive's
/// output, so held in the backend's activation storage (an upload is read as an
/// activation through a converted copy, which the timings must not include).
fn random_activation<B: Backend>(be: &B, n: usize, c: usize, hw: usize, seed: u64) -> B::Buf {
    let uploaded = random(be, n * c * hw * hw, seed);
    let mut x = be.alloc(n * c * hw * hw);
    be.avgpool3x3_forward(n, c, hw, hw, &uploaded, &mut x);
    be.release(uploaded);
    x
}

/// Every primitive at NB-201's three stage shapes (C=16@32x32, 32@16x16, 64@8x8), `n`
/// images per call, activations held in `storage` (parameters, statistics and gradient
/// Gram inputs in the backend's scalar).
fn kernel_timings<B: Backend>(
    be: &B,
    n: usize,
    repeat: u32,
    storage: Storage,
) -> Vec<KernelTiming> {
    let size = std::mem::size_of::<B::Real>();
    // Bytes of an activation, and of a parameter (or per-sample gradient).
    let act = if storage == Storage::F32 {
        size
    } else {
        storage.value_bytes()
    };
    let mut out = Vec::new();
    let mut push = |kernel: &str, shape: String, seconds: f64, flops: Option<f64>, bytes: usize| {
        out.push(KernelTiming {
            kernel: kernel.to_string(),
            shape,
            seconds,
            flops,
            bytes: bytes as f64,
        })
    };
    for (c, hw) in [(16, 32), (32, 16), (64, 8)] {
        let shape = format!("{n}x{c}x{hw}x{hw}");
        let len = n * c * hw * hw;
        let x = random_activation(be, n, c, hw, 1);
        let dy = random_activation(be, n, c, hw, 2);
        let mut y = be.alloc(len);
        let mut dx = be.alloc(len);
        for k in [3, 1] {
            let g = ConvGeom {
                cin: c,
                cout: c,
                h: hw,
                w: hw,
                k,
                stride: 1,
                pad: k / 2,
            };
            let w = random(be, g.weight_len(), 3);
            let mut dw = be.alloc(g.weight_len());
            let flops = Some(2.0 * (g.macs() * n) as f64);
            let bytes = 2 * len * act + g.weight_len() * size;
            let name = format!("conv{k}x{k}");
            let t = median_seconds(be, repeat, || {
                be.conv_forward(&g, n, &x, &w, &mut y);
            });
            push(&format!("{name} forward"), shape.clone(), t, flops, bytes);
            let t = median_seconds(be, repeat, || {
                be.conv_backward_data(&g, n, &dy, &w, &mut dx);
            });
            push(
                &format!("{name} backward-data"),
                shape.clone(),
                t,
                flops,
                bytes,
            );
            let t = median_seconds(be, repeat, || {
                be.conv_backward_weight(&g, n, &x, &dy, &mut dw);
            });
            push(
                &format!("{name} backward-weight"),
                shape.clone(),
                t,
                flops,
                bytes,
            );
        }
        let bn = BnGeom {
            n,
            c,
            hw: hw * hw,
            group: n,
        };
        let gamma = random(be, c, 4);
        let beta = random(be, c, 5);
        let (mut mean, mut inv_std) = (be.alloc(c), be.alloc(c));
        let (mut dgamma, mut dbeta) = (be.alloc(c), be.alloc(c));
        let t = median_seconds(be, repeat, || {
            be.bn_forward(
                &bn,
                1e-5,
                &x,
                &gamma,
                &beta,
                &mut y,
                &mut mean,
                &mut inv_std,
            );
        });
        push("batch norm forward", shape.clone(), t, None, 2 * len * act);
        let t = median_seconds(be, repeat, || {
            be.bn_backward(
                &bn,
                BnGrad::Full,
                &x,
                &gamma,
                &mean,
                &inv_std,
                &dy,
                Some(&mut dx),
                &mut dgamma,
                &mut dbeta,
            );
        });
        push("batch norm backward", shape.clone(), t, None, 3 * len * act);
        let t = median_seconds(be, repeat, || {
            be.avgpool3x3_forward(n, c, hw, hw, &x, &mut y);
        });
        push(
            "avg pool 3x3 forward",
            shape.clone(),
            t,
            Some(9.0 * len as f64),
            2 * len * act,
        );
        let t = median_seconds(be, repeat, || {
            be.avgpool3x3_backward(n, c, hw, hw, &dy, &mut dx);
        });
        push(
            "avg pool 3x3 backward",
            shape.clone(),
            t,
            Some(9.0 * len as f64),
            2 * len * act,
        );
        let mut half = be.alloc(len / 4);
        let t = median_seconds(be, repeat, || {
            be.avgpool2x2_forward(n, c, hw, hw, &x, &mut half);
        });
        push(
            "avg pool 2x2 forward",
            shape.clone(),
            t,
            Some(len as f64),
            (len + len / 4) * act,
        );
        let units = c * hw * hw;
        let words = units.div_ceil(64);
        let mut codes = be.alloc_words(n * words);
        let t = median_seconds(be, repeat, || {
            be.relu_forward(&x, &mut y);
            be.pack_signs(&y, n, units, &mut codes);
        });
        // ReLU reads and writes the tensor, packing reads it and writes n * words words.
        let code_bytes = n * words * 8;
        push(
            "relu + code packing",
            shape.clone(),
            t,
            None,
            3 * len * act + code_bytes,
        );
        let mut k = be.alloc_words(n * n);
        let t = median_seconds(be, repeat, || {
            be.hamming_gram_accumulate(&codes, n, units, 1, &mut k);
        });
        // Counted as one operation per bit pair (XOR and popcount over the codes).
        push(
            "hamming gram",
            format!("{n}x{units} bits"),
            t,
            Some((n * n * units) as f64),
            code_bytes,
        );
    }
    // Per-image gradients of a 16-channel NB-201 network's size (the gradient Gram matrix
    // of NTK, MGM): n rows of 2^17 values.
    let len = 1 << 17;
    let grads = random(be, n * len, 6);
    let mut g = be.alloc_acc(n * n);
    let t = median_seconds(be, repeat, || {
        be.gram_accumulate(&grads, n, len, &mut g);
    });
    push(
        "gradient gram",
        format!("{n}x{len}"),
        t,
        Some(2.0 * (n * n * len) as f64),
        n * len * size,
    );
    out
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

fn bench_scores<B: Backend>(be: &B, args: &ScoresArgs) -> Result<(), CliError> {
    let archs = parse_archs(&args.archs)?;
    let scores = parse_scores(&args.scores)?;
    let data = parse_data(&args.data)?;
    let dataset = data.dataset;
    let mut settings = ScoreSettings::paper_defaults(MacroConfig {
        channels: args.channels as usize,
        cells_per_stage: args.cells as usize,
        classes: dataset.classes(),
        input_size: dataset.image_size(),
        input_channels: 3,
        stem: true,
    });
    settings.seed = args.seed;
    if let Some(b) = args.batch {
        settings.set_batch(b as usize);
    }
    let batch = data.minibatch(settings.images_needed(&scores), args.seed)?;
    let json = args.common.json;
    if !json {
        println!("{:>6} {:<20} {:>12}  arch", "index", "score", "seconds");
    }
    let mut totals = vec![0.0; scores.len()];
    for (index, arch) in &archs {
        for (score, total) in scores.iter().zip(&mut totals) {
            let mut failure = None;
            let seconds = median_seconds(be, args.common.repeat, || {
                if let Err(e) = score_arch(be, arch, &[*score], &batch, &settings) {
                    failure = Some(e);
                }
            });
            if let Some(e) = failure {
                return Err(CliError::Run(e.context(format!("scoring arch {index}"))));
            }
            *total += seconds;
            if json {
                println!(
                    "{}",
                    json!({"index": index, "arch": arch.to_string(), "score": score.name(), "seconds": seconds})
                );
            } else {
                println!("{index:>6} {:<20} {seconds:>12.5}  {arch}", score.name());
            }
        }
    }
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

#[cfg(all(test, feature = "emu"))]
mod tests {
    use super::*;
    use nasrank::backend::cuda::emu::EmuLauncher;
    use nasrank::backend::cuda::CudaBackend;

    /// GB/s counts an activation at its storage's bytes and a parameter at 4: the rows'
    /// bytes in bf16 against those in f32, operand by operand.
    #[test]
    fn kernel_bytes_count_activations_in_their_storage() {
        let n = 1;
        let f32s = kernel_timings(&CudaBackend::new(EmuLauncher::new()), n, 1, Storage::F32);
        let bf16 = CudaBackend::new(EmuLauncher::new()).with_storage(Storage::Bf16);
        let halves = kernel_timings(&bf16, n, 1, Storage::Bf16);
        assert_eq!(f32s.len(), halves.len());
        let bytes = |rows: &[KernelTiming], kernel: &str, shape: &str| {
            rows.iter()
                .find(|t| t.kernel == kernel && t.shape == shape)
                .unwrap_or_else(|| panic!("no row {kernel} {shape}"))
                .bytes
        };
        let len = (16 * 32 * 32) as f64;
        let shape = "1x16x32x32";
        let weights = (16 * 16 * 9) as f64;
        assert_eq!(
            bytes(&f32s, "conv3x3 forward", shape),
            4.0 * (2.0 * len + weights)
        );
        assert_eq!(
            bytes(&halves, "conv3x3 forward", shape),
            2.0 * 2.0 * len + 4.0 * weights
        );
        assert_eq!(
            bytes(&halves, "batch norm backward", shape),
            2.0 * 3.0 * len
        );
        // Codes are words whatever the storage; per-sample gradients stay f32.
        let codes = 8.0 * (len / 64.0);
        assert_eq!(
            bytes(&halves, "relu + code packing", shape),
            6.0 * len + codes
        );
        assert_eq!(
            bytes(&halves, "hamming gram", "1x16384 bits"),
            bytes(&f32s, "hamming gram", "1x16384 bits")
        );
        assert_eq!(bytes(&halves, "gradient gram", "1x131072"), 4.0 * 131072.0);
    }
}
