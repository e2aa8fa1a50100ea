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
use nasrank::proxy::counts::params_of;
use nasrank::proxy::scorer::{score_arch, ScoreSettings};
use nasrank::proxy::swap::{distinct_neuron_patterns, swap, SwapRegularizer};
use nasrank::proxy::{upload_images, Score};
use nasrank::space::{AnyArch, Arch, Cell, MacroConfig, Space};
use std::collections::HashSet;

type Be = CpuBackend<f32>;

fn cell(arch: &str) -> Cell {
    Cell::from(arch.parse::<Arch>().expect("arch string"))
}

/// A small network with a stem: C=4, one cell per stage, 8x8 inputs.
fn small_config() -> MacroConfig {
    MacroConfig {
        channels: 4,
        cells_per_stage: 1,
        classes: 10,
        input_size: 8,
        input_channels: 3,
        stem: true,
    }
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
    let config = small_config();
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

/// swap_reg's factor against the released `cal_regular_factor` on the fixture's PyTorch
/// networks: the parameter count (PyTorch's `named_parameters`) and exp(-(Θ - mu)^2 /
/// sigma) for the fixture's mu and sigma. Catches params counted otherwise than the
/// released code counts them (BN's affine terms, the classifier's bias), Θ in the wrong
/// unit, or sigma taken as a standard deviation.
#[test]
fn swap_reg_factor_matches_the_released_regular_factor() {
    let fx = golden_fixture("scores_swap/cases.json");
    for case in fx["swap"].as_array().expect("swap cases") {
        let arch = case["arch"].as_str().unwrap();
        let config = config_of(&case["config"]);
        let any = AnyArch::Tss(arch.parse().unwrap());
        let params = params_of(&any, &config);
        assert_eq!(params, case["params"].as_f64().unwrap(), "{arch}: params");
        let regularizer = SwapRegularizer::new(
            case["swap_reg_mu"].as_f64().unwrap(),
            case["swap_reg_sigma"].as_f64().unwrap(),
        )
        .unwrap();
        let want = case["swap_reg_factor"].as_f64().unwrap();
        let got = regularizer.factor(params);
        assert!(
            (got - want).abs() <= 1e-12 * want,
            "{arch}: factor {got}, released {want}"
        );
    }
}

/// Through the registry: swap_reg is swap times the settings' factor, or the space's
/// default factor when the settings give none, from the one SWAP pass both share.
#[test]
fn swap_reg_is_swap_times_its_factor() {
    let be = Be::new();
    let config = small_config();
    let mut settings = ScoreSettings::paper_defaults(config);
    settings.swap_batch = 4;
    let batch = golden_batch(9, 4, 3, 8);
    let arch: Arch = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
        .parse()
        .unwrap();
    let params = params_of(&AnyArch::Tss(arch), &config);
    let given = SwapRegularizer::new(3.0, 50.0).unwrap();
    let default = SwapRegularizer::space_default(Space::Tss, &config);
    for regularizer in [Some(given), None] {
        settings.swap_regularizer = regularizer;
        let scores = [Score::Swap, Score::SwapReg];
        let values = score_arch(&be, arch, &scores, &batch, &settings).unwrap();
        let factor = regularizer.unwrap_or(default).factor(params);
        assert!(
            factor > 0.0 && factor < 1.0,
            "a factor that tells: {factor}"
        );
        assert_eq!(values[1], values[0] * factor, "{regularizer:?}");
        // Asked alone, swap_reg computes the same SWAP.
        let alone = score_arch(&be, arch, &[Score::SwapReg], &batch, &settings).unwrap();
        assert_eq!(alone[0], values[1]);
    }
}

/// The default regulariser against the space's sizes by brute force: mu is the largest
/// network's Θ and sigma the squared span, so the factor is 1 at the largest network
/// and 1/e at the smallest, on both spaces and for each dataset's classifier.
#[test]
fn swap_reg_default_spans_the_spaces_sizes() {
    for classes in [10, 100, 120] {
        let config = MacroConfig {
            classes,
            ..MacroConfig::NB201_CIFAR10
        };
        for space in Space::ALL {
            let (low, high) = space
                .archs()
                .map(|(_, arch)| params_of(&arch, &config))
                .fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
                    (lo.min(p), hi.max(p))
                });
            let r = SwapRegularizer::space_default(space, &config);
            assert_eq!(r.mu, high / 1e3, "{space}, {classes} classes");
            assert!(
                (r.factor(low) - (-1.0f64).exp()).abs() < 1e-12,
                "{space}, {classes} classes"
            );
            assert_eq!(r.factor(high), 1.0);
        }
    }
}
