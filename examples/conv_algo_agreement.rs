//! NASWOT with the CPU backend's convolutions by Winograd (`ConvAlgo::Auto`) against
//! im2col (`ConvAlgo::Im2col`) on evenly spaced NAS-Bench-201 archs: the score, and how
//! many entries of the code kernel K_H differ (codes flip only for units whose input lies
//! within rounding of 0). docs/PERF.md has the figures.
//!
//! ```sh
//! cargo run --release --example conv_algo_agreement -- [ARCHS] [CIFAR10_DIR]
//! ```
//! ARCHS archs (default 20), batch 128, real CIFAR-10 training images where a directory is
//! given (synthetic Gaussian inputs otherwise).

use nasrank::backend::cpu::{ConvAlgo, CpuBackend};
use nasrank::backend::Executor;
use nasrank::data::{Dataset, ImageSet, Split};
use nasrank::net::Plan;
use nasrank::proxy::naswot::naswot;
use nasrank::proxy::naswot::{naswot_kernel, CodeCount};
use nasrank::space::{arch_of_index, Cell, MacroConfig};

const BATCH: usize = 128;
const SPACE: usize = 15_625;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let archs: usize = args.get(1).map_or(20, |s| s.parse().expect("ARCHS"));
    let batch = match args.get(2) {
        Some(dir) => ImageSet::load(Dataset::Cifar10, dir, Split::Train)
            .expect("CIFAR-10 directory")
            .sample(BATCH, 0, None)
            .expect("batch"),
        None => Dataset::Cifar10.synthetic_batch(BATCH, 0),
    };
    let winograd = CpuBackend::<f32>::with_conv_algo(ConvAlgo::Auto);
    let im2col = CpuBackend::<f32>::with_conv_algo(ConvAlgo::Im2col);
    println!("index  naswot_winograd  naswot_im2col  difference  kernel_entries_differing  max_entry_difference");
    let (mut worst, mut flipped) = (0.0f64, 0usize);
    for a in 0..archs {
        let index = a * SPACE / archs;
        let cell = Cell::from(arch_of_index(index).expect("index"));
        let plan = Plan::build(&cell, &MacroConfig::NB201_CIFAR10).expect("plan");
        let run = |be: &CpuBackend<f32>| {
            let kernel = naswot_kernel(
                &mut Executor::with_init(be, &plan, 0),
                &batch,
                BATCH,
                CodeCount::Paper,
            );
            let score = naswot(&mut Executor::with_init(be, &plan, 0), &batch, BATCH);
            (score, kernel)
        };
        let ((sw, kw), (si, ki)) = (run(&winograd), run(&im2col));
        let differing = kw.iter().zip(&ki).filter(|(a, b)| a != b).count();
        let max_entry = kw
            .iter()
            .zip(&ki)
            .map(|(&a, &b)| a.abs_diff(b))
            .max()
            .unwrap_or(0);
        println!(
            "{index:5}  {sw:15.6}  {si:13.6}  {:10.3e}  {differing:24}  {max_entry:20}",
            sw - si
        );
        worst = worst.max((sw - si).abs());
        flipped += usize::from(differing > 0);
    }
    println!("largest |difference| {worst:.3e}; archs with any kernel entry differing: {flipped} of {archs}");
}
