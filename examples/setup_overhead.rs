//! What a scoring run spends per arch outside the network's passes: building the plan and
//! the executor with its initial weights (parameter draws and buffers), against the whole
//! NASWOT of the same archs. docs/PERF.md ("Whole-space NASWOT") has the figures.
//!
//! ```sh
//! cargo run --release --example setup_overhead -- [ARCHS]
//! ```
//! The first ARCHS (default 200) representatives of the codes-key classes, C=16, N=5,
//! batch 128 of synthetic images, on the CPU backend with every core.

use std::time::Instant;

use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::Executor;
use nasrank::data::Dataset;
use nasrank::net::Plan;
use nasrank::proxy::naswot::naswot;
use nasrank::space::{arch_of_index, codes_classes, Cell, MacroConfig};

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map_or(200, |s| s.parse().expect("ARCHS"));
    let config = MacroConfig::NB201_CIFAR10;
    let data = Dataset::Cifar10.synthetic_batch(128, 0);
    let be = CpuBackend::<f32>::new();
    let archs: Vec<Cell> = codes_classes()
        .iter()
        .take(count)
        .map(|class| Cell::from(arch_of_index(class.indices[0]).expect("index")))
        .collect();
    let (mut setup, mut total) = (0.0f64, 0.0f64);
    for cell in &archs {
        let start = Instant::now();
        let plan = Plan::build(cell, &config).expect("plan");
        let mut exec = Executor::with_init(&be, &plan, 0);
        let built = start.elapsed().as_secs_f64();
        std::hint::black_box(naswot(&mut exec, &data, 128));
        drop(exec);
        let all = start.elapsed().as_secs_f64();
        setup += built;
        total += all;
    }
    println!(
        "{} archs: plan + executor + initial weights {:.2} ms per arch, whole NASWOT {:.1} ms \
         per arch: setup {:.2} %",
        archs.len(),
        1e3 * setup / archs.len() as f64,
        1e3 * total / archs.len() as f64,
        100.0 * setup / total
    );
}
