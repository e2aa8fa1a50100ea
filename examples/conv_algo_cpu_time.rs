//! Process CPU time (not wall time, which a shared machine's load inflates) of the 3x3
//! stride-1 convolutions and of NASWOT per arch with im2col against Winograd, run
//! interleaved in one process, best of REPS. docs/PERF.md has the figures.
//!
//! ```sh
//! cargo run --release --example conv_algo_cpu_time -- [REPS]
//! ```
//! f32, batch 128; conv forward and backward data at 4-64 channels (cin = cout); NASWOT on
//! the median (5256) and largest (1462) archs of benches/scores.rs, synthetic inputs.

use nasrank::backend::cpu::{conv2d_backward_data_with, conv2d_forward_with, ConvAlgo, CpuBackend};
use nasrank::backend::{ConvGeom, Executor};
use nasrank::data::Dataset;
use nasrank::net::Plan;
use nasrank::proxy::naswot::naswot;
use nasrank::space::{arch_of_index, Cell, MacroConfig};

const N: usize = 128;
const ALGOS: [ConvAlgo; 2] = [ConvAlgo::Im2col, ConvAlgo::Winograd];

fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Best CPU time of `f(k)` for each algorithm index `k`, the algorithms interleaved.
fn best_of(reps: usize, mut f: impl FnMut(usize)) -> [f64; 2] {
    let mut best = [f64::MAX; 2];
    for _ in 0..reps {
        for (k, b) in best.iter_mut().enumerate() {
            let t = cpu_seconds();
            f(k);
            *b = b.min(cpu_seconds() - t);
        }
    }
    best
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .map_or(5, |s| s.parse().expect("REPS"));
    let data = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect()
    };
    println!("conv (ms, best of {reps}): shape  im2col fwd / winograd fwd  im2col bwd-data / winograd bwd-data");
    for (c, hw) in [(4, 32), (8, 32), (16, 32), (32, 16), (64, 8)] {
        let g = ConvGeom {
            cin: c,
            cout: c,
            h: hw,
            w: hw,
            k: 3,
            stride: 1,
            pad: 1,
        };
        let (x, w) = (data(N * g.in_len()), data(g.weight_len()));
        let (mut y, mut dx) = (vec![0.0f32; N * g.out_len()], vec![0.0f32; N * g.in_len()]);
        let fwd = best_of(reps, |k| {
            conv2d_forward_with(ALGOS[k], &g, N, &x, &w, &mut y)
        });
        let bwd = best_of(reps, |k| {
            conv2d_backward_data_with(ALGOS[k], &g, N, &y, &w, &mut dx)
        });
        println!(
            "  {c:2} ch {hw:2}x{hw:<2}  {:6.2} / {:6.2}  {:6.2} / {:6.2}",
            fwd[0] * 1e3,
            fwd[1] * 1e3,
            bwd[0] * 1e3,
            bwd[1] * 1e3
        );
    }
    let batch = Dataset::Cifar10.synthetic_batch(N, 0);
    let bes = ALGOS.map(CpuBackend::<f32>::with_conv_algo);
    println!("NASWOT (s per arch, best of {reps}): arch  im2col / winograd");
    for (name, index) in [("median", 5256), ("largest", 1462)] {
        let cell = Cell::from(arch_of_index(index).expect("index"));
        let plan = Plan::build(&cell, &MacroConfig::NB201_CIFAR10).expect("plan");
        let t = best_of(reps, |k| {
            std::hint::black_box(naswot(
                &mut Executor::with_init(&bes[k], &plan, 0),
                &batch,
                N,
            ));
        });
        println!("  {name}  {:.3} / {:.3}", t[0], t[1]);
    }
}
