//! Micro-benchmarks of the CPU primitives at NAS-Bench-201 shapes (batch 128, f32).
//! Convolution throughput is reported in FLOP (2 per multiply-accumulate), so `Gelem/s`
//! reads GFLOP/s; the `fwd` groups count elements of the input tensor.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nasrank::backend::cpu::*;
use nasrank::backend::{BnGeom, BnGrad, ConvGeom};

const N: usize = 128;

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                / (1u32 << 24) as f32
                - 0.5
        })
        .collect()
}

fn conv(c: &mut Criterion) {
    let shapes = [
        (
            "3x3 16ch 32x32",
            ConvGeom {
                cin: 16,
                cout: 16,
                h: 32,
                w: 32,
                k: 3,
                stride: 1,
                pad: 1,
            },
        ),
        (
            "3x3 64ch 8x8",
            ConvGeom {
                cin: 64,
                cout: 64,
                h: 8,
                w: 8,
                k: 3,
                stride: 1,
                pad: 1,
            },
        ),
        (
            "3x3 32ch 16x16",
            ConvGeom {
                cin: 32,
                cout: 32,
                h: 16,
                w: 16,
                k: 3,
                stride: 1,
                pad: 1,
            },
        ),
        (
            "1x1 16ch 32x32",
            ConvGeom {
                cin: 16,
                cout: 16,
                h: 32,
                w: 32,
                k: 1,
                stride: 1,
                pad: 0,
            },
        ),
    ];
    let mut group = c.benchmark_group("conv");
    group.sample_size(10);
    for (name, g) in shapes {
        let (x, w, dy) = (
            data(N * g.in_len(), 1),
            data(g.weight_len(), 2),
            data(N * g.out_len(), 3),
        );
        let (mut y, mut dx, mut dw) = (
            vec![0.0; N * g.out_len()],
            vec![0.0; N * g.in_len()],
            vec![0.0; g.weight_len()],
        );
        group.throughput(Throughput::Elements((2 * g.macs() * N) as u64));
        group.bench_function(format!("forward {name}"), |b| {
            b.iter(|| conv2d_forward(&g, N, &x, &w, &mut y))
        });
        group.bench_function(format!("backward data {name}"), |b| {
            b.iter(|| conv2d_backward_data(&g, N, &dy, &w, &mut dx))
        });
        group.bench_function(format!("backward weight {name}"), |b| {
            b.iter(|| conv2d_backward_weight(&g, N, &x, &dy, &mut dw))
        });
        let mut per_sample = vec![0.0; N * g.weight_len()];
        group.bench_function(format!("per-sample weight {name}"), |b| {
            b.iter(|| conv2d_weight_grad_per_sample(&g, N, &x, &dy, &mut per_sample))
        });
        // The im2col path, to compare where Auto picks Winograd.
        group.bench_function(format!("backward weight im2col {name}"), |b| {
            b.iter(|| conv2d_backward_weight_with(ConvAlgo::Im2col, &g, N, &x, &dy, &mut dw))
        });
    }
    group.finish();
}

fn batchnorm(c: &mut Criterion) {
    let g = BnGeom {
        n: N,
        c: 16,
        hw: 32 * 32,
        group: N,
    };
    let len = g.n * g.c * g.hw;
    let (x, dy, gamma, beta) = (
        data(len, 1),
        data(len, 2),
        vec![1.0f32; g.c],
        vec![0.0f32; g.c],
    );
    let (mut y, mut dx) = (vec![0.0; len], vec![0.0; len]);
    let (mut mean, mut inv) = (vec![0.0; g.c], vec![0.0; g.c]);
    let (mut dg, mut db) = (vec![0.0; g.c], vec![0.0; g.c]);
    let mut group = c.benchmark_group("batchnorm 16ch 32x32");
    group.sample_size(10);
    group.throughput(Throughput::Elements(len as u64));
    group.bench_function("forward", |b| {
        b.iter(|| batchnorm_forward(&g, 1e-5, &x, &gamma, &beta, &mut y, &mut mean, &mut inv))
    });
    group.bench_function("backward full", |b| {
        b.iter(|| {
            batchnorm_backward(
                &g,
                BnGrad::Full,
                &x,
                &gamma,
                &mean,
                &inv,
                &dy,
                Some(&mut dx),
                &mut dg,
                &mut db,
            )
        })
    });
    group.finish();
}

/// The three NAS-Bench-201 stage shapes (channels, side) at batch N.
const STAGES: [(usize, usize); 3] = [(16, 32), (32, 16), (64, 8)];

/// Process CPU time (all threads), for figures on a shared machine where wall time mostly
/// measures the other tenants: run with `RAYON_NUM_THREADS=1` for the single-core cost.
struct CpuTime;

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid clock id and a pointer to a live timespec.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
    fn end(&self, start: Duration) -> Duration {
        self.start() - start
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WallTime.formatter()
    }
}

fn forward_primitives(c: &mut Criterion) {
    forward_primitives_in("fwd", c);
}

fn forward_primitives_cpu(c: &mut Criterion<CpuTime>) {
    forward_primitives_in("fwd-cpu", c);
}

/// Memory-bound forward primitives at the stage shapes; throughput in elements of `x`.
fn forward_primitives_in<M: Measurement>(name: &str, c: &mut Criterion<M>) {
    let mut group = c.benchmark_group(name);
    group.sample_size(20);
    for (ch, side) in STAGES {
        let (hw, len) = (side * side, N * ch * side * side);
        let name = format!("{ch}@{side}x{side}");
        let (x, x2) = (data(len, 1), data(len, 2));
        let mut y = vec![0.0f32; len];
        group.throughput(Throughput::Elements(len as u64));
        group.bench_function(format!("avgpool3x3 {name}"), |b| {
            b.iter(|| avgpool3x3_forward(N, ch, side, side, &x, &mut y))
        });
        let mut dx = x2.clone();
        group.bench_function(format!("avgpool3x3 backward {name}"), |b| {
            b.iter(|| avgpool3x3_backward(N, ch, side, side, &x, &mut dx))
        });
        let g = BnGeom {
            n: N,
            c: ch,
            hw,
            group: N,
        };
        let (gamma, beta) = (vec![1.0f32; ch], vec![0.0f32; ch]);
        let (mut mean, mut inv) = (vec![0.0; ch], vec![0.0; ch]);
        group.bench_function(format!("batchnorm {name}"), |b| {
            b.iter(|| batchnorm_forward(&g, 1e-5, &x, &gamma, &beta, &mut y, &mut mean, &mut inv))
        });
        group.bench_function(format!("relu {name}"), |b| {
            b.iter(|| relu_forward(&x, &mut y))
        });
        let mut acc = x2.clone();
        group.bench_function(format!("add_assign {name}"), |b| {
            b.iter(|| add_assign(&mut acc, &x))
        });
        let units = ch * hw;
        let mut words = vec![0u64; N * codes::code_words(units)];
        group.bench_function(format!("pack_signs {name}"), |b| {
            b.iter(|| codes::pack_signs(&x, N, units, &mut words))
        });
        let mut k = vec![0u64; N * N];
        group.bench_function(format!("hamming_gram {name}"), |b| {
            b.iter(|| codes::hamming_gram_accumulate(&words, N, units, 1, &mut k))
        });
    }
    group.finish();
}

/// `G += A A^T` of per-sample gradients, 32 images (the NTK batch), over the weight
/// counts of one 3x3 conv of each stage.
fn gradient_gram(c: &mut Criterion) {
    let n = 32;
    let mut group = c.benchmark_group("gram");
    group.sample_size(20);
    for (ch, _) in STAGES {
        let len = ch * ch * 9;
        let a = data(n * len, 1);
        let mut g = vec![0.0f64; n * n];
        group.throughput(Throughput::Elements((n * len) as u64));
        group.bench_function(format!("gram_accumulate 32x{len}"), |b| {
            b.iter(|| gram::gram_accumulate(&a, n, len, &mut g))
        });
    }
    group.finish();
}

criterion_group!(benches, conv, batchnorm, forward_primitives, gradient_gram);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(CpuTime);
    targets = forward_primitives_cpu
}
criterion_main!(benches, cpu_time);
