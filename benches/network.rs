//! Whole-network forward, and forward + backward, at the benchmark's size:
//! C=16, N=5, batch 128, 32x32, 10 classes, batch-norm in training mode.
//! The PyTorch side of the comparison is tools/bench_torch.py (docs/PERF.md).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::{
    Backend, BackwardOptions, BnGrad, BnStatistics, Executor, ParamGrads, Reduction,
};
use nasrank::net::init::uniform_stream;
use nasrank::net::Plan;
use nasrank::space::{Arch, Cell, MacroConfig, Op};

const BATCH: usize = 128;

/// The smallest live arch (one skip), a median one and the largest (all 3x3 convs).
fn archs() -> [(&'static str, Arch); 3] {
    use Op::*;
    [
        (
            "smallest",
            Arch {
                ops: [None, None, None, SkipConnect, None, None],
            },
        ),
        (
            "median",
            Arch {
                ops: [
                    Conv3x3,
                    Conv1x1,
                    AvgPool3x3,
                    SkipConnect,
                    Conv3x3,
                    AvgPool3x3,
                ],
            },
        ),
        ("largest", Arch { ops: [Conv3x3; 6] }),
    ]
}

fn input(plan: &Plan) -> Vec<f32> {
    uniform_stream(1, 1, BATCH * plan.slots[0].len())
        .map(|u| (2.0 * u - 1.0) as f32)
        .collect()
}

fn bench_network(c: &mut Criterion) {
    let be = CpuBackend::<f32>::new();
    let config = MacroConfig::NB201_CIFAR10;
    let labels: Vec<usize> = (0..BATCH).map(|i| i % 10).collect();
    let mut group = c.benchmark_group("network");
    group.sample_size(10);
    for (name, arch) in archs() {
        let plan = Plan::build(&Cell::from(arch), &config).unwrap();
        let x = input(&plan);
        let mut exec = Executor::with_init(&be, &plan, 0);
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| exec.forward(be.upload(&x), BATCH, BnStatistics::Batch))
        });
        group.bench_function(BenchmarkId::new("forward_backward", name), |b| {
            b.iter(|| {
                exec.forward(be.upload(&x), BATCH, BnStatistics::Batch);
                let mut dlogits = be.alloc(BATCH * 10);
                be.softmax_cross_entropy(
                    BATCH,
                    10,
                    exec.logits(),
                    &labels,
                    Reduction::Mean,
                    &mut dlogits,
                );
                let options = BackwardOptions {
                    bn_grad: BnGrad::Full,
                    input_grad: false,
                };
                exec.backward(dlogits, &options, ParamGrads::Batched)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_network);
criterion_main!(benches);
