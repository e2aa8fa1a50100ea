//! Per-arch cost of the scores that issue targets compare with PyTorch: each iteration
//! builds the arch's executor with its initial weights and computes the score, as a
//! scoring run does arch after arch (the backend's buffer pool is warm after the first).
//! C=16, N=5, 32x32, CPU f32; NASWOT batch 128, NTK 32, MGM and the KNAS Gram 64. The PyTorch side is
//! tools/bench_scores_torch.py (docs/PERF.md).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::Executor;
use nasrank::data::Dataset;
use nasrank::net::Plan;
use nasrank::proxy::knas::{knas, mgm};
use nasrank::proxy::naswot::naswot;
use nasrank::proxy::ntk::{ntk_condition, NtkMode};
use nasrank::space::{arch_of_index, Cell, MacroConfig};

/// Benchmark indices: the median arch of benches/network.rs and the largest (all 3x3 convs).
const ARCHS: [(&str, usize); 2] = [("median", 5256), ("largest", 1462)];

fn bench_scores(c: &mut Criterion) {
    let be = CpuBackend::<f32>::new();
    let batch = Dataset::Cifar10.synthetic_batch(128, 0);
    let mut group = c.benchmark_group("scores");
    group.sample_size(10);
    for (name, index) in ARCHS {
        let cell = Cell::from(arch_of_index(index).unwrap());
        let plan = Plan::build(&cell, &MacroConfig::NB201_CIFAR10).unwrap();
        group.bench_function(BenchmarkId::new("naswot_128", name), |b| {
            b.iter(|| naswot(&mut Executor::with_init(&be, &plan, 0), &batch, 128))
        });
        group.bench_function(BenchmarkId::new("ntk_frozen_32", name), |b| {
            b.iter(|| {
                let mut exec = Executor::with_init(&be, &plan, 0);
                ntk_condition(&mut exec, &batch, 32, NtkMode::FrozenStats)
            })
        });
        group.bench_function(BenchmarkId::new("mgm_64", name), |b| {
            b.iter(|| mgm(&mut Executor::with_init(&be, &plan, 0), &batch, 64))
        });
        // The Gram that mgm_trace and mgm_eig need (and MGM needed before it had its own pass).
        group.bench_function(BenchmarkId::new("knas_gram_64", name), |b| {
            b.iter(|| knas(&mut Executor::with_init(&be, &plan, 0), &batch, 64).trace)
        });
    }
    group.finish();
}

criterion_group!(benches, bench_scores);
criterion_main!(benches);
