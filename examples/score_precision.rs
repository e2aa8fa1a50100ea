//! The gradient scores most sensitive to rounding (NTK condition numbers, MGM and its top
//! eigenvalue, grasp, snip) on the f32 CPU backend, with Winograd convolutions
//! (`ConvAlgo::Auto`: F(4x4, 3x3) at 32 and 16 pixels, F(2x2, 3x3) at 8) and with im2col,
//! each as its relative difference from the f64 backend (im2col). docs/PERF.md has the
//! figures.
//!
//! ```sh
//! cargo run --release --example score_precision -- [CIFAR10_DIR]
//! ```
//! Archs 0, 77, 5256, 1462, 3, 9999 at each score's paper batch, real CIFAR-10 training
//! images where a directory is given (synthetic Gaussian inputs otherwise).

use nasrank::backend::cpu::{ConvAlgo, CpuBackend};
use nasrank::data::{Dataset, ImageSet, Split};
use nasrank::proxy::scorer::{score_arch, ScoreSettings};
use nasrank::proxy::Score;
use nasrank::space::{arch_of_index, MacroConfig};

fn main() {
    let scores = [
        Score::Ntk,
        Score::NtkExact,
        Score::Mgm,
        Score::MgmEig,
        Score::Grasp,
        Score::Snip,
    ];
    let settings = ScoreSettings::paper_defaults(MacroConfig::NB201_CIFAR10);
    let images = settings.images_needed(&scores);
    let batch = match std::env::args().nth(1) {
        Some(dir) => ImageSet::load(Dataset::Cifar10, &dir, Split::Train)
            .expect("CIFAR-10 directory")
            .sample(images, 0, None)
            .expect("batch"),
        None => Dataset::Cifar10.synthetic_batch(images, 0),
    };
    let winograd = CpuBackend::<f32>::with_conv_algo(ConvAlgo::Auto);
    let im2col = CpuBackend::<f32>::with_conv_algo(ConvAlgo::Im2col);
    let reference = CpuBackend::<f64>::with_conv_algo(ConvAlgo::Im2col);
    println!("index  score  f64_value  winograd_f32_rel_diff  im2col_f32_rel_diff");
    for index in [0usize, 77, 5256, 1462, 3, 9999] {
        let arch = arch_of_index(index).expect("index");
        let run = |values: anyhow::Result<Vec<f64>>| values.expect("scores");
        let w = run(score_arch(&winograd, arch, &scores, &batch, &settings));
        let i = run(score_arch(&im2col, arch, &scores, &batch, &settings));
        let r = run(score_arch(&reference, arch, &scores, &batch, &settings));
        for (k, score) in scores.iter().enumerate() {
            let rel = |v: f64| (v - r[k]).abs() / r[k].abs();
            println!(
                "{index:5}  {}  {:.6e}  {:.2e}  {:.2e}",
                score.name(),
                r[k],
                rel(w[k]),
                rel(i[k])
            );
        }
    }
}
