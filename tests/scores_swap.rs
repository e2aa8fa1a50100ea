//! SWAP against the PyTorch fixture of its released formulation (tests/golden/scores_swap/,
//! made by tests/golden/scores_swap.py: the released hook rule and `torch.unique` over the
//! transposed signs, on nasrank's N(0, 1) weights of each re-initialisation), and its
//! counting against a naive pattern set read from the executor's slots.
mod common;

use common::{config_of, golden_batch, golden_fixture, usize_of};

use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::{Backend, BnStatistics, Executor};
use nasrank::data::Seeds;
use nasrank::net::init::gaussian_params;
use nasrank::net::{Layer, Plan};
use nasrank::proxy::swap::{distinct_neuron_patterns, swap};
use nasrank::proxy::upload_images;
use nasrank::space::{Arch, Cell, MacroConfig};
use std::collections::HashSet;

type Be = CpuBackend<f32>;

fn cell(arch: &str) -> Cell {
    Cell::from(arch.parse::<Arch>().expect("arch string"))
}

fn gaussian_executor<'a>(be: &'a Be, plan: &'a Plan, seed: u64) -> Executor<'a, Be> {
    Executor::with_values(be, plan, &gaussian_params(seed, plan))
}

/// Every case of the fixture (a mixed arch, a zero-fed node, a dead arch, the all-skip
/// arch, all convs): each re-initialisation's count, the seeds that draw its weights, and
/// the mean through the public `swap`. Catches a wrong hook set (a ReLU layer missed or a
/// zero-fed module dropped), patterns built over the wrong axis, a padding bit counted as
/// a neuron, or a re-initialisation seeded differently from `Seeds::swap_weights`.
#[test]
fn swap_matches_pytorch() {
    let fx = golden_fixture("scores_swap/cases.json");
    let be = Be::new();
    let cases = fx["swap"].as_array().expect("swap cases");
    assert_eq!(cases.len(), 5);
    for case in cases {
        let arch = case["arch"].as_str().unwrap();
        let config = config_of(&case["config"]);
        let (seed, n) = (case["seed"].as_u64().unwrap(), usize_of(&case["batch"]));
        let reinits = usize_of(&case["reinits"]);
        let plan = Plan::build(&cell(arch), &config).unwrap();
        let batch = golden_batch(seed, n, config.input_channels, config.input_size);
        let flips = case["relu_bit_flips_f32_vs_f64"].as_u64().unwrap();
        assert_eq!(
            flips, 0,
            "{arch}: the fixture's signs are not rounding-sensitive"
        );
        for r in 0..reinits {
            let want_seed: u64 = case["weight_seeds"][r].as_str().unwrap().parse().unwrap();
            assert_eq!(
                Seeds(seed).swap_weights(r),
                want_seed,
                "{arch}: seed of reinit {r}"
            );
            let mut exec = gaussian_executor(&be, &plan, want_seed);
            let count = distinct_neuron_patterns(&mut exec, upload_images(&be, &batch, n), n);
            assert_eq!(
                count as u64,
                case["counts"][r].as_u64().unwrap(),
                "{arch}: reinit {r}"
            );
        }
        let mean = swap(&be, &plan, &batch, n, Seeds(seed), reinits);
        assert_eq!(mean, case["swap"].as_f64().unwrap(), "{arch}: mean");
    }
}

/// The count against patterns built naively: after a plain forward pass, every unit of
/// every ReLU input slot read as bools image by image, a zero-fed module adding the
/// all-zero pattern. Also for more images than the bitmap holds (the hashed set).
#[test]
fn counting_matches_a_naive_pattern_set() {
    let be = Be::new();
    let config = MacroConfig {
        channels: 4,
        cells_per_stage: 1,
        classes: 10,
        input_size: 8,
        input_channels: 3,
        stem: true,
    };
    let archs = [
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|",
        "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_3x3~2|",
    ];
    for arch in archs {
        let plan = Plan::build(&cell(arch), &config).unwrap();
        for n in [5, 16, 24] {
            let batch = golden_batch(7, n, 3, 8);
            let mut exec = gaussian_executor(&be, &plan, 3);
            let count = distinct_neuron_patterns(&mut exec, upload_images(&be, &batch, n), n);
            // The same weights, a plain forward, every ReLU layer's input read back.
            let mut exec = gaussian_executor(&be, &plan, 3);
            exec.forward(upload_images(&be, &batch, n), n, BnStatistics::Batch);
            let mut naive: HashSet<Vec<bool>> = HashSet::new();
            for layer in &plan.layers {
                let Layer::Relu { x, .. } = layer else {
                    continue;
                };
                let units = plan.slots[*x].len();
                let values = be.download(exec.slot(*x));
                for u in 0..units {
                    naive.insert((0..n).map(|i| values[i * units + u] > 0.0).collect());
                }
            }
            if !plan.constant_codes.is_empty() {
                naive.insert(vec![false; n]);
            }
            assert_eq!(count, naive.len(), "{arch}, {n} images");
        }
    }
}
