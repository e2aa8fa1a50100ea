//! The code-based scores (NASWOT, linear regions) against independent computations: a naive
//! kernel and naive patterns read from the executor's slots with bool loops, a determinant
//! by Gaussian elimination written here, and PyTorch fixtures (tests/golden/scores_codes/,
//! made by tests/golden/scores_codes.py).
mod common;

use common::{config_of, golden_batch, golden_fixture, usize_of};

use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::{Backend, BnStatistics, Executor};
use nasrank::data::random_crops;
use nasrank::data::{synthetic_batch, Batch};
use nasrank::net::{Layer, Plan};
use nasrank::proxy::linear_regions::{
    distinct_patterns, linear_regions_network, linear_regions_released, released_patterns,
    sign_patterns, ReleasedSettings,
};
use nasrank::proxy::naswot::{naswot, naswot_kernel, naswot_with, CodeCount};
use nasrank::proxy::upload_images;
use nasrank::space::{Arch, Cell, MacroConfig};
use std::collections::HashSet;

type Be = CpuBackend<f32>;

const SMALL: MacroConfig = MacroConfig {
    channels: 4,
    cells_per_stage: 1,
    classes: 10,
    input_size: 8,
    input_channels: 3,
    stem: true,
};

/// Every op but none, and node 0 feeding two conv edges.
const MIXED: &str =
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|";
/// Node 1 is zero: the convs 1->2 and 1->3 see a zero input (constant codes).
const ZERO_FED: &str =
    "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_3x3~2|";
/// No path to the output: only the first cell's conv has live codes.
const DEAD: &str = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|";
const ALL_CONV: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|";
/// No conv at all.
const NO_CONV: &str =
    "|skip_connect~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|avg_pool_3x3~1|none~2|";

fn cell(arch: &str) -> Cell {
    Cell::from(arch.parse::<Arch>().expect("arch string"))
}

/// Per image, per computed ReLU layer: the bits `input > 0`, with the layer's module
/// count, read from the slots after a plain forward pass.
fn naive_bits(
    be: &Be,
    exec: &Executor<'_, Be>,
    plan: &Plan,
    n: usize,
) -> Vec<(Vec<Vec<bool>>, u64, usize)> {
    plan.layers
        .iter()
        .enumerate()
        .filter_map(|(index, layer)| match layer {
            Layer::Relu { x, modules, .. } => {
                let len = plan.slots[*x].len();
                let values = be.download(exec.slot(*x));
                let bits = (0..n)
                    .map(|i| {
                        values[i * len..(i + 1) * len]
                            .iter()
                            .map(|&v| v > 0.0)
                            .collect()
                    })
                    .collect();
                Some((bits, u64::from(*modules), index))
            }
            _ => None,
        })
        .collect()
}

/// K from bool loops: per module, the units where two images agree; constant codes add
/// their units everywhere. `lastact_weight` / `other_weight` multiply the module counts.
fn naive_kernel(
    bits: &[(Vec<Vec<bool>>, u64, usize)],
    plan: &Plan,
    n: usize,
    released: bool,
) -> Vec<u64> {
    let lastact = plan.feature_slot();
    let mut k = vec![0u64; n * n];
    for (codes, modules, index) in bits {
        let is_lastact = matches!(plan.layers[*index], Layer::Relu { y, .. } if Some(y) == lastact);
        let weight = if released && !is_lastact {
            2 * modules
        } else {
            *modules
        };
        for i in 0..n {
            for j in 0..n {
                let agree = codes[i]
                    .iter()
                    .zip(&codes[j])
                    .filter(|(a, b)| a == b)
                    .count();
                k[i * n + j] += weight * agree as u64;
            }
        }
    }
    let mut constant: u64 = plan
        .constant_codes
        .iter()
        .map(|c| c.units as u64 * u64::from(c.modules) * if released { 2 } else { 1 })
        .sum();
    if released && lastact.is_none() {
        // Dead network: lastact's ReLU (4C x (size/4)^2 units) is constant, counted once.
        let s = plan.config.input_size / 4;
        constant -= (4 * plan.config.channels * s * s) as u64;
    }
    k.iter_mut().for_each(|e| *e += constant);
    k
}

/// `log |det m|` by Gaussian elimination with partial pivoting (`-inf` when a pivot is 0).
fn log_abs_det_gauss(m: &[f64], n: usize) -> f64 {
    let mut a = m.to_vec();
    let mut total = 0.0;
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&r, &s| a[r * n + col].abs().total_cmp(&a[s * n + col].abs()))
            .unwrap();
        if a[pivot * n + col] == 0.0 {
            return f64::NEG_INFINITY;
        }
        for c in 0..n {
            a.swap(col * n + c, pivot * n + c);
        }
        let p = a[col * n + col];
        total += p.abs().ln();
        for r in col + 1..n {
            let f = a[r * n + col] / p;
            for c in col..n {
                a[r * n + c] -= f * a[col * n + c];
            }
        }
    }
    total
}

#[test]
fn streamed_kernel_equals_the_naive_kernel() {
    let be = Be::new();
    let n = 6;
    let batch = synthetic_batch(n, 3, 8, 8, 10, 21);
    for arch in [MIXED, ZERO_FED, DEAD, ALL_CONV, NO_CONV] {
        let plan = Plan::build(&cell(arch), &SMALL).unwrap();
        let mut exec = Executor::with_init(&be, &plan, 5);
        let paper = naswot_kernel(&mut exec, &batch, n, CodeCount::Paper);
        let released = naswot_kernel(&mut exec, &batch, n, CodeCount::ReleasedDoubleConv);

        let mut exec = Executor::with_init(&be, &plan, 5);
        exec.forward(upload_images(&be, &batch, n), n, BnStatistics::Batch);
        let bits = naive_bits(&be, &exec, &plan, n);
        assert_eq!(
            paper,
            naive_kernel(&bits, &plan, n, false),
            "{arch}: paper K"
        );
        assert_eq!(
            released,
            naive_kernel(&bits, &plan, n, true),
            "{arch}: released K"
        );
        // The diagonal is the code length N_A.
        for i in 0..n {
            assert_eq!(
                paper[i * n + i],
                plan.relu_units() as u64,
                "{arch}: K[{i}][{i}]"
            );
        }
        if arch == ZERO_FED || arch == DEAD {
            assert!(
                !plan.constant_codes.is_empty(),
                "{arch}: has constant codes"
            );
        }
    }
}

#[test]
fn naswot_is_log_abs_det_of_the_naive_kernel() {
    let be = Be::new();
    let n = 6;
    let batch = synthetic_batch(n, 3, 8, 8, 10, 22);
    for arch in [MIXED, ZERO_FED, DEAD, ALL_CONV] {
        let plan = Plan::build(&cell(arch), &SMALL).unwrap();
        let mut exec = Executor::with_init(&be, &plan, 6);
        let score = naswot(&mut exec, &batch, n);
        let released = naswot_with(&mut exec, &batch, n, CodeCount::ReleasedDoubleConv);
        exec.forward(upload_images(&be, &batch, n), n, BnStatistics::Batch);
        let bits = naive_bits(&be, &exec, &plan, n);
        for (got, is_released) in [(score, false), (released, true)] {
            let k: Vec<f64> = naive_kernel(&bits, &plan, n, is_released)
                .iter()
                .map(|&v| v as f64)
                .collect();
            let want = log_abs_det_gauss(&k, n);
            assert!(want.is_finite(), "{arch}: this batch gives a regular K");
            assert!(
                (got - want).abs() <= 1e-9 * want.abs(),
                "{arch} (released {is_released}): naswot {got} != {want}"
            );
        }
    }
}

#[test]
fn duplicated_images_make_k_singular() {
    let be = Be::new();
    let n = 4;
    let mut batch = synthetic_batch(n, 3, 8, 8, 10, 23);
    let size = 3 * 8 * 8;
    let first = batch.images[..size].to_vec();
    batch.images[size..2 * size].copy_from_slice(&first);
    let plan = Plan::build(&cell(MIXED), &SMALL).unwrap();
    let mut exec = Executor::with_init(&be, &plan, 7);
    let k = naswot_kernel(&mut exec, &batch, n, CodeCount::Paper);
    assert_eq!(k[..n], k[n..2 * n], "identical images, identical rows");
    let kf: Vec<f64> = k.iter().map(|&v| v as f64).collect();
    assert_eq!(log_abs_det_gauss(&kf, n), f64::NEG_INFINITY);
    let score = naswot(&mut exec, &batch, n);
    // Exactly singular in integers; the f64 factorisation may leave a rounding-size pivot.
    let regular = naswot(&mut exec, &synthetic_batch(n, 3, 8, 8, 10, 23), n);
    assert!(
        score == f64::NEG_INFINITY || score < regular - 20.0,
        "singular K: naswot {score} (regular batch {regular})"
    );
}

/// Naive patterns from the slots: per sample, the bools of every computed ReLU layer.
fn naive_patterns(be: &Be, exec: &Executor<'_, Be>, plan: &Plan, n: usize) -> Vec<Vec<bool>> {
    let bits = naive_bits(be, exec, plan, n);
    (0..n)
        .map(|i| {
            bits.iter()
                .flat_map(|(codes, _, _)| codes[i].clone())
                .collect()
        })
        .collect()
}

fn small_released(batches: usize, lastact: bool) -> ReleasedSettings {
    ReleasedSettings {
        batches,
        batch_size: 200,
        lastact,
        ..ReleasedSettings::default()
    }
}

#[test]
fn a_cell_without_convs_has_one_region() {
    let be = Be::new();
    let source = synthetic_batch(50, 3, 8, 8, 10, 24);
    for arch in [NO_CONV, "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"] {
        for lastact in [false, true] {
            let r =
                linear_regions_released(&be, &cell(arch), &source, 3, &small_released(2, lastact))
                    .unwrap();
            if !lastact || arch != NO_CONV {
                assert_eq!(r, 1.0, "{arch} lastact {lastact}");
            } else {
                // lastact's ReLU sees the (non-zero) cell output.
                assert!(r > 1.0, "{arch} with lastact: {r}");
            }
        }
    }
}

#[test]
fn released_count_equals_the_naive_count_and_grows_with_samples() {
    let be = Be::new();
    let source = synthetic_batch(300, 3, 8, 8, 10, 25);
    for arch in [MIXED, ZERO_FED, ALL_CONV] {
        for lastact in [false, true] {
            let settings = small_released(3, lastact);
            let c = cell(arch);
            let r = linear_regions_released(&be, &c, &source, 9, &settings).unwrap();

            let plan = if lastact {
                Plan::single_cell_with_lastact(&c, 1, 3).unwrap()
            } else {
                Plan::single_cell(&c, 1, 3).unwrap()
            };
            let crops = random_crops(&source, 600, 3, 1, 9);
            let mut exec = Executor::with_init(&be, &plan, 9);
            let mut naive: HashSet<Vec<bool>> = HashSet::new();
            for b in 0..3 {
                let part = Batch {
                    n: 200,
                    images: crops.images[b * 1800..(b + 1) * 1800].to_vec(),
                    labels: crops.labels[b * 200..(b + 1) * 200].to_vec(),
                    ..crops.clone()
                };
                exec.forward(upload_images(&be, &part, 200), 200, BnStatistics::Batch);
                naive.extend(naive_patterns(&be, &exec, &plan, 200));
            }
            assert_eq!(r, naive.len() as f64, "{arch} lastact {lastact}");
            assert!(r > 1.0 && r < 600.0, "{arch}: a count with collisions: {r}");

            let fewer =
                linear_regions_released(&be, &c, &source, 9, &small_released(1, lastact)).unwrap();
            assert!(fewer <= r, "{arch}: 200 samples {fewer} > 600 samples {r}");
        }
    }
}

#[test]
fn released_count_is_deterministic_in_the_seed() {
    let be = Be::new();
    let source = synthetic_batch(100, 3, 8, 8, 10, 26);
    let c = cell(ALL_CONV);
    let settings = small_released(2, true);
    let a = released_patterns(&be, &c, &source, 4, &settings).unwrap();
    let b = released_patterns(&be, &c, &source, 4, &settings).unwrap();
    let other = released_patterns(&be, &c, &source, 5, &settings).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, other);
    assert_eq!(distinct_patterns(&a), distinct_patterns(&b));
}

#[test]
fn crops_are_windows_of_the_source() {
    let source = synthetic_batch(5, 3, 8, 8, 10, 27);
    let crops = random_crops(&source, 40, 3, 1, 8);
    let mut positions = HashSet::new();
    for s in 0..40 {
        let image = source.image(s % 5);
        let crop = crops.image(s);
        let found: Vec<(usize, usize, usize)> = (0..3)
            .flat_map(|ch| (0..6).flat_map(move |t| (0..6).map(move |l| (ch, t, l))))
            .filter(|&(ch, t, l)| {
                (0..9).all(|e| crop[e] == image[ch * 64 + (t + e / 3) * 8 + l + e % 3])
            })
            .collect();
        assert_eq!(found.len(), 1, "sample {s}: one window matches");
        positions.insert(found[0]);
    }
    assert!(
        positions.len() > 20,
        "crops vary: {} positions",
        positions.len()
    );
}

#[test]
fn network_count_equals_the_naive_count() {
    let be = Be::new();
    // A narrow network on a tiny input so that patterns can coincide.
    let config = MacroConfig {
        channels: 1,
        input_size: 4,
        input_channels: 1,
        stem: false,
        ..SMALL
    };
    let n = 64;
    // 20 distinct images, repeated: repeats share a pattern (batch statistics are common),
    // so the count is at most 20; distinct images almost surely differ somewhere.
    let mut batch = synthetic_batch(n, 1, 4, 4, 10, 28);
    for i in 20..n {
        let (head, tail) = batch.images.split_at_mut(i * 16);
        tail[..16].copy_from_slice(&head[(i % 20) * 16..(i % 20 + 1) * 16]);
    }
    for arch in [MIXED, DEAD, NO_CONV] {
        let plan = Plan::build(&cell(arch), &config).unwrap();
        let mut exec = Executor::with_init(&be, &plan, 2);
        let r = linear_regions_network(&mut exec, &batch, n);
        exec.forward(upload_images(&be, &batch, n), n, BnStatistics::Batch);
        let naive: HashSet<Vec<bool>> = naive_patterns(&be, &exec, &plan, n).into_iter().collect();
        assert_eq!(r, naive.len() as f64, "{arch}");
        assert!(
            r > 1.0 && r <= 20.0,
            "{arch}: {r} regions for 20 distinct images"
        );
    }
}

#[test]
fn patterns_are_the_packed_relu_bits_of_every_layer() {
    let be = Be::new();
    // 12x12 so that layers span several words.
    let config = MacroConfig {
        channels: 2,
        input_size: 12,
        ..SMALL
    };
    let n = 5;
    let batch = synthetic_batch(n, 3, 12, 12, 10, 29);
    for arch in [MIXED, ZERO_FED, DEAD] {
        let plan = Plan::build(&cell(arch), &config).unwrap();
        let mut exec = Executor::with_init(&be, &plan, 3);
        let patterns = sign_patterns(&mut exec, upload_images(&be, &batch, n), n);
        exec.forward(upload_images(&be, &batch, n), n, BnStatistics::Batch);
        let bits = naive_bits(&be, &exec, &plan, n);
        for (i, pattern) in patterns.iter().enumerate() {
            let mut words = pattern.as_slice();
            let mut unpacked = Vec::new();
            let mut naive = Vec::new();
            for (codes, _, _) in &bits {
                let units = codes[i].len();
                let (layer, rest) = words.split_at(units.div_ceil(64));
                unpacked.extend((0..units).map(|u| layer[u / 64] >> (u % 64) & 1 == 1));
                assert!(
                    (units..layer.len() * 64).all(|u| layer[u / 64] >> (u % 64) & 1 == 0),
                    "{arch}: padding bits are zero"
                );
                naive.extend_from_slice(&codes[i]);
                words = rest;
            }
            assert!(
                words.is_empty(),
                "{arch}: one block per computed ReLU layer"
            );
            assert_eq!(unpacked, naive, "{arch}: image {i}");
        }
    }
}

// PyTorch fixtures.

#[test]
fn naswot_and_network_regions_match_pytorch() {
    let fx = golden_fixture("scores_codes/cases.json");
    let be = Be::new();
    let cases = fx["naswot"].as_array().expect("naswot cases");
    assert!(cases.len() >= 3);
    for case in cases {
        let arch = case["arch"].as_str().unwrap();
        let config = config_of(&case["config"]);
        let (seed, n) = (case["seed"].as_u64().unwrap(), usize_of(&case["batch"]));
        let plan = Plan::build(&cell(arch), &config).unwrap();
        let batch = golden_batch(seed, n, config.input_channels, config.input_size);
        let mut exec = Executor::with_init(&be, &plan, seed);
        let k = naswot_kernel(&mut exec, &batch, n, CodeCount::Paper);
        let want_k: Vec<u64> = case["kernel"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
            .collect();
        assert_eq!(k, want_k, "{arch}: K vs PyTorch");
        let score = naswot(&mut exec, &batch, n);
        let want = case["naswot"].as_f64().unwrap();
        assert!(
            (score - want).abs() <= 1e-9 * want.abs(),
            "{arch}: naswot {score} != PyTorch {want}"
        );
        let released = naswot_with(&mut exec, &batch, n, CodeCount::ReleasedDoubleConv);
        let want = case["naswot_released"].as_f64().unwrap();
        assert!(
            (released - want).abs() <= 1e-9 * want.abs(),
            "{arch}: released naswot {released} != PyTorch {want}"
        );
        let r = linear_regions_network(&mut exec, &batch, n);
        assert_eq!(
            r,
            case["linear_regions"].as_f64().unwrap(),
            "{arch}: regions"
        );
    }
}

#[test]
fn released_regions_match_pytorch() {
    let fx = golden_fixture("scores_codes/cases.json");
    let be = Be::new();
    let cases = fx["released"].as_array().expect("released cases");
    assert!(cases.len() >= 3);
    for case in cases {
        let arch = case["arch"].as_str().unwrap();
        let seed = case["seed"].as_u64().unwrap();
        let s = &case["source"];
        let source = golden_batch(
            seed,
            usize_of(&s["n"]),
            usize_of(&s["c"]),
            usize_of(&s["size"]),
        );
        let settings = ReleasedSettings {
            batches: usize_of(&case["batches"]),
            batch_size: usize_of(&case["batch_size"]),
            lastact: true,
            ..ReleasedSettings::default()
        };
        let crops = random_crops(&source, settings.batches * settings.batch_size, 3, 1, seed);
        let sum: f64 = crops.images.iter().map(|&v| f64::from(v)).sum();
        let want_sum = case["crops_sum"].as_f64().unwrap();
        assert!(
            (sum - want_sum).abs() <= 1e-9 * want_sum.abs(),
            "{arch}: crops"
        );
        let r = linear_regions_released(&be, &cell(arch), &source, seed, &settings).unwrap();
        assert_eq!(
            r,
            case["linear_regions"].as_f64().unwrap(),
            "{arch}: released regions"
        );
    }
}

/// Network linear regions count distinct patterns, not images: PyTorch's count on a batch
/// whose images 4..7 repeat 0..3 (tests/golden/scores_codes.py, `regions`). The other
/// fixtures' batches give every image its own pattern, so there the count equals the
/// batch size and would not notice a count of images.
#[test]
fn network_regions_count_patterns_not_images() {
    let fx = golden_fixture("scores_codes/cases.json");
    let be = Be::new();
    let cases = fx["regions"].as_array().expect("regions cases");
    assert_eq!(cases.len(), 2);
    for case in cases {
        let arch = case["arch"].as_str().unwrap();
        let config = config_of(&case["config"]);
        let (seed, n) = (case["seed"].as_u64().unwrap(), usize_of(&case["batch"]));
        let first = usize_of(&case["repeat_first"]);
        let plan = Plan::build(&cell(arch), &config).unwrap();
        let mut batch = golden_batch(seed, n, config.input_channels, config.input_size);
        let image = batch.c * batch.h * batch.w;
        let head = batch.images[..first * image].to_vec();
        batch.images[first * image..].copy_from_slice(&head);
        let mut exec = Executor::with_init(&be, &plan, seed);
        let r = linear_regions_network(&mut exec, &batch, n);
        let want = case["linear_regions"].as_f64().unwrap();
        assert!(want < n as f64, "the fixture has repeated patterns");
        assert_eq!(r, want, "{arch}");
    }
}
