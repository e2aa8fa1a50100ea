//! nasrank against PyTorch: the golden fixtures of tests/golden/ were made by
//! tests/golden/make_golden.py with an independent PyTorch TinyNetwork (tools/nb201_torch.py)
//! from the weights and inputs nasrank exports (examples/golden_export.rs). Each test rebuilds
//! the network here with the same seed, regenerates the same input, and compares what the
//! CPU backend (f32, or f64 for the full-size fixture; batch statistics) computes with what
//! PyTorch computed: logits, the
//! NASWOT kernel and ReLU code counts, the cross-entropy loss, every parameter gradient and
//! the input gradient. Every expected value comes from PyTorch.
mod common;

use common::{config_of, golden_input, golden_labels, usize_of};

use nasrank::backend::cpu::{ConvAlgo, CpuBackend};
use nasrank::backend::{
    Backend, BackwardOptions, BnGrad, BnStatistics, Executor, ParamGrads, Real, Reduction,
};
use nasrank::net::init::init_params;
use nasrank::net::{Layer, Plan};
use nasrank::space::{Arch, Cell, Op, OpSet};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Logits: `|a - b| <= LOGIT_TOL (|b| + max|b|)`; the loss: `|a - b| <= LOGIT_TOL |b|`.
const LOGIT_TOL: f64 = 1e-4;
/// Gradients, element by element: the difference may reach `RTOL |b|`, plus `ATOL` times
/// the largest `|b|` of the tensor, plus `FLOOR` times the largest `|b|` of every parameter
/// gradient. The floor covers tensors whose gradient is zero in exact arithmetic, where
/// PyTorch itself returns rounding noise: the BN shifts of the last cell, whose outputs
/// reach lastact's BN through sums and pools only. The same rule as make_golden.py's
/// `f32_noise`, where PyTorch's own f32 results stay within 2 % of it against f64.
const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-4;
const FLOOR: f64 = 1e-6;
/// ReLU codes: the largest difference allowed in any entry of K_H or of the ones counts
/// (bits of units whose input lies within rounding noise of 0 may flip).
const MAX_FLIPS: i64 = 4;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn load(name: &str) -> Value {
    let path = fixture_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_str().expect("a string").to_string())
        .collect()
}

/// Standard base64 (with `=` padding) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let bytes = text.as_bytes();
    assert_eq!(bytes.len() % 4, 0, "base64 length");
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        let word = chunk[..4 - pad]
            .iter()
            .enumerate()
            .fold(0u32, |w, (i, &c)| w | (value(c) << (18 - 6 * i)));
        out.extend_from_slice(&word.to_be_bytes()[1..4 - pad]);
    }
    out
}

/// A fixture gradient in the fixture's encoding: base64 of little-endian f32 values, or of
/// f64 values where `grads_encoding` says so.
fn blob(fx: &Value, v: &Value) -> Vec<f64> {
    if fx["grads_encoding"].as_str().unwrap_or("").contains("f64") {
        base64_decode(v.as_str().expect("a base64 string"))
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect()
    } else {
        f32_blob(v)
    }
}

/// Base64 of little-endian f32 values.
fn f32_blob(v: &Value) -> Vec<f64> {
    base64_decode(v.as_str().expect("a base64 string"))
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect()
}

fn cell_of(v: &Value) -> Cell {
    let edges: Vec<OpSet> = v
        .as_array()
        .expect("6 edges")
        .iter()
        .map(|ops| {
            let ops: Vec<Op> = strings(ops)
                .iter()
                .map(|n| Op::from_name(n).unwrap_or_else(|| panic!("op {n}")))
                .collect();
            OpSet::from_ops(&ops)
        })
        .collect();
    Cell {
        edges: edges.try_into().expect("6 edges"),
    }
}

fn max_abs(values: &[f64]) -> f64 {
    values.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// The largest ratio of `|a - b|` to the gradient tolerance over a tensor, and where.
fn grad_ratio(got: &[f64], want: &[f64], floor_scale: f64) -> (f64, usize) {
    assert_eq!(got.len(), want.len(), "length");
    let scale = max_abs(want);
    got.iter()
        .zip(want)
        .enumerate()
        .map(|(i, (a, b))| {
            let tol = RTOL * b.abs() + ATOL * scale + FLOOR * floor_scale;
            let diff = (a - b).abs();
            let ratio = if diff == 0.0 { 0.0 } else { diff / tol };
            (ratio, i)
        })
        .fold((0.0, 0), |best, r| if r.0 > best.0 { r } else { best })
}

/// Checks a fixture with the CPU backend of its precision: f32, or f64 for a fixture PyTorch
/// computed in float64 (the full-size network, whose f32 rounding noise exceeds the
/// tolerances below).
fn check(name: &str, conv_algo: ConvAlgo) {
    match load(name)["dtype"].as_str() {
        Some("float32") => check_with::<f32>(name, conv_algo),
        Some("float64") => check_with::<f64>(name, conv_algo),
        other => panic!("{name}: unknown dtype {other:?}"),
    }
}

fn check_with<R: Real>(name: &str, conv_algo: ConvAlgo) {
    let fx = load(name);
    // The share of each tolerance a difference may use: all of it in f32; in f64 (the same
    // f32-rounded weights and inputs on both sides) a millionth, since only the order of
    // f64 sums can differ.
    let limit = if std::mem::size_of::<R>() == 8 {
        1e-6
    } else {
        1.0
    };
    let mut failures: Vec<String> = Vec::new();
    eprintln!(
        "golden {name} ({conv_algo:?} convs): {} (torch {})",
        fx["arch"].as_str().unwrap(),
        fx["torch_version"].as_str().unwrap()
    );

    // The network.
    let cell = cell_of(&fx["cell"]);
    let arch_text = fx["arch"].as_str().unwrap();
    if arch_text.starts_with('|') && cell.edges.iter().all(|e| e.len() == 1) {
        let arch: Arch = arch_text.parse().expect("nasrank parses the arch string");
        assert_eq!(
            Cell::from(arch),
            cell,
            "{name}: arch string vs fixture cell"
        );
    }
    let c = &fx["config"];
    let config = config_of(c);
    let plan = Plan::build(&cell, &config).expect("plan");
    let seed = fx["seed"].as_u64().unwrap();
    let n = usize_of(&fx["batch"]);
    let classes = config.classes;

    // Parameters: nasrank has exactly PyTorch's parameters but those of convs and BNs that
    // only ever see an identically zero input.
    let torch_names: BTreeSet<String> = strings(&fx["torch_param_names"]).into_iter().collect();
    let zero_input: BTreeSet<String> = strings(&fx["zero_input_params"]).into_iter().collect();
    let ours: BTreeSet<String> = plan.params.iter().map(|p| p.name.clone()).collect();
    let expected: BTreeSet<String> = torch_names.difference(&zero_input).cloned().collect();
    assert_eq!(
        ours,
        expected,
        "{name}: plan parameters vs PyTorch's parameters minus zero-input ones \
         (only ours: {:?}; only PyTorch's: {:?})",
        ours.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&ours).collect::<Vec<_>>()
    );

    // The input and labels, regenerated.
    let input = golden_input(seed, n * plan.slots[0].len());
    let shape: Vec<usize> = fx["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(usize_of)
        .collect();
    assert_eq!(
        shape.iter().product::<usize>(),
        input.len(),
        "{name}: input size"
    );
    let sum: f64 = input.iter().map(|&v| f64::from(v)).sum();
    let weighted: f64 = input
        .iter()
        .enumerate()
        .map(|(e, &v)| (e % 97 + 1) as f64 * f64::from(v))
        .sum();
    let cs = &fx["input_checksum"];
    for (got, want, what) in [
        (sum, cs["sum"].as_f64().unwrap(), "sum"),
        (
            weighted,
            cs["weighted_sum"].as_f64().unwrap(),
            "weighted sum",
        ),
    ] {
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{name}: input checksum ({what}) {got} != {want}: the input is not the exported one"
        );
    }
    let labels = golden_labels(seed, n, classes);
    let want_labels: Vec<usize> = fx["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(usize_of)
        .collect();
    assert_eq!(labels, want_labels, "{name}: labels");

    // Forward.
    let be = CpuBackend::<R>::with_conv_algo(conv_algo);
    // The exported weights: nasrank's initial values rounded to f32 (exactly the default
    // init's values on the f32 backend).
    let params = init_params(seed, &plan)
        .iter()
        .map(|values| {
            let rounded: Vec<R> = values
                .iter()
                .map(|&v| R::from_f64_rounded(f64::from(v as f32)))
                .collect();
            be.upload(&rounded)
        })
        .collect();
    let mut ex = Executor::new(&be, &plan, params);
    let input_r: Vec<R> = input
        .iter()
        .map(|&v| R::from_f64_rounded(f64::from(v)))
        .collect();
    ex.forward(be.upload(&input_r), n, BnStatistics::Batch);
    let logits: Vec<f64> = be
        .download(ex.logits())
        .iter()
        .map(|&v| v.to_f64_lossless())
        .collect();
    let want_logits: Vec<f64> = fx["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(f64s)
        .collect();
    assert_eq!(logits.len(), want_logits.len(), "{name}: logits");
    let scale = max_abs(&want_logits);
    let worst = logits
        .iter()
        .zip(&want_logits)
        .map(|(a, b)| (a - b).abs() / (LOGIT_TOL * (b.abs() + scale)))
        .fold(0.0, f64::max);
    eprintln!("  logits: worst ratio to tolerance {worst:.3e}");
    if worst > limit {
        failures.push(format!(
            "logits differ: ours {logits:?}\n  PyTorch {want_logits:?}"
        ));
    }

    // ReLU codes: every computed ReLU layer stands for `modules` modules; constant codes
    // are all-zero bits.
    let mut k = vec![vec![0i64; n]; n];
    let mut ones = vec![0i64; n];
    let mut modules = 0u64;
    for layer in &plan.layers {
        if let Layer::Relu { x, modules: m, .. } = layer {
            let len = plan.slots[*x].len();
            let values = be.download(ex.slot(*x));
            let bits: Vec<Vec<bool>> = (0..n)
                .map(|i| {
                    values[i * len..(i + 1) * len]
                        .iter()
                        .map(|&v| v.to_f64_lossless() > 0.0)
                        .collect()
                })
                .collect();
            for i in 0..n {
                ones[i] += i64::from(*m) * bits[i].iter().filter(|&&b| b).count() as i64;
                for j in 0..n {
                    let agree = bits[i].iter().zip(&bits[j]).filter(|(a, b)| a == b).count();
                    k[i][j] += i64::from(*m) * agree as i64;
                }
            }
            modules += u64::from(*m);
        }
    }
    for cc in &plan.constant_codes {
        let add = (cc.units * cc.modules as usize) as i64;
        k.iter_mut().flatten().for_each(|e| *e += add);
        modules += u64::from(cc.modules);
    }
    assert_eq!(
        modules,
        fx["relu_modules"].as_u64().unwrap(),
        "{name}: ReLU modules"
    );
    assert_eq!(
        plan.relu_units(),
        usize_of(&fx["relu_units"]),
        "{name}: ReLU units per image"
    );
    let want_k: Vec<Vec<i64>> = fx["naswot_kernel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect()
        })
        .collect();
    let want_ones: Vec<i64> = fx["relu_ones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let k_diff = k
        .iter()
        .flatten()
        .zip(want_k.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .max()
        .unwrap_or(0);
    let ones_diff = ones
        .iter()
        .zip(&want_ones)
        .map(|(a, b)| (a - b).abs())
        .max()
        .unwrap_or(0);
    eprintln!("  K_H: largest entry difference {k_diff}; ones: {ones_diff}");
    if k.len() != want_k.len() || k_diff > MAX_FLIPS || ones_diff > MAX_FLIPS {
        failures.push(format!(
            "ReLU codes differ: K_H ours {k:?}\n  PyTorch {want_k:?}\n  ones ours {ones:?} PyTorch {want_ones:?}"
        ));
    }

    // Backward through the mean cross-entropy.
    let mut dlogits = be.alloc(n * classes);
    let loss = be.softmax_cross_entropy(
        n,
        classes,
        ex.logits(),
        &labels,
        Reduction::Mean,
        &mut dlogits,
    );
    let want_loss = fx["loss"].as_f64().unwrap();
    let loss = loss.to_f64_lossless();
    eprintln!("  loss {loss} (PyTorch {want_loss})");
    if (loss - want_loss).abs() > limit * LOGIT_TOL * want_loss.abs() {
        failures.push(format!("loss {loss} != PyTorch {want_loss}"));
    }
    let grads = ex.backward(
        dlogits,
        &BackwardOptions {
            bn_grad: BnGrad::Full,
            input_grad: true,
        },
        ParamGrads::Batched,
    );
    let param_grads = grads.params.expect("batched gradients");
    let want_grads: BTreeMap<String, Vec<f64>> = fx["grads"]
        .as_object()
        .expect("grads by name")
        .iter()
        .map(|(k, v)| (k.clone(), blob(&fx, v)))
        .collect();
    // A full-size fixture keeps the gradients of some parameters only (`grads_of`: name
    // prefixes); every other fixture has them all.
    let prefixes: Option<Vec<String>> = fx.get("grads_of").map(strings);
    let kept = |name: &str| {
        prefixes
            .as_ref()
            .is_none_or(|p| p.iter().any(|x| name.starts_with(x.as_str())))
    };
    let floor_scale = want_grads.values().map(|g| max_abs(g)).fold(0.0, f64::max);
    let mut worst_param = (0.0, String::new());
    for (spec, buf) in plan.params.iter().zip(&param_grads) {
        if !kept(&spec.name) {
            continue;
        }
        let got: Vec<f64> = be
            .download(buf)
            .iter()
            .map(|&v| v.to_f64_lossless())
            .collect();
        let Some(want) = want_grads.get(&spec.name) else {
            failures.push(format!("no PyTorch gradient for {}", spec.name));
            continue;
        };
        if got.len() != want.len() {
            failures.push(format!(
                "{}: {} values, PyTorch {}",
                spec.name,
                got.len(),
                want.len()
            ));
            continue;
        }
        let (ratio, at) = grad_ratio(&got, want, floor_scale);
        if ratio > worst_param.0 {
            worst_param = (ratio, spec.name.clone());
        }
        if ratio > limit {
            failures.push(format!(
                "gradient of {} differs: element {at}: ours {} PyTorch {} (tensor max |g| {:.3e}, \
                 ratio to tolerance {ratio:.3e})",
                spec.name,
                got[at],
                want[at],
                max_abs(want)
            ));
        }
    }
    eprintln!(
        "  parameter gradients: worst ratio to tolerance {:.3e} ({})",
        worst_param.0, worst_param.1
    );
    assert_eq!(
        want_grads.len(),
        plan.params.iter().filter(|p| kept(&p.name)).count(),
        "{name}: gradient count"
    );

    let got_input: Vec<f64> = be
        .download(&grads.input.expect("input gradient"))
        .iter()
        .map(|&v| v.to_f64_lossless())
        .collect();
    let want_input = blob(&fx, &fx["input_grad"]);
    let input_scale = max_abs(&want_input);
    let (ratio, at) = grad_ratio(&got_input, &want_input, input_scale);
    eprintln!("  input gradient: worst ratio to tolerance {ratio:.3e}");
    if ratio > limit {
        failures.push(format!(
            "input gradient differs: element {at}: ours {} PyTorch {} (max |g| {input_scale:.3e})",
            got_input[at], want_input[at]
        ));
    }

    assert!(
        failures.is_empty(),
        "{name}: nasrank differs from PyTorch:\n{}",
        failures.join("\n")
    );
}

macro_rules! golden {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name), ConvAlgo::Auto);
            }
        )*
        /// The same fixtures with every 3x3 stride-1 conv (forward and backward data)
        /// through Winograd: `Auto` uses it from 16 channels only, and the fixtures have 4-16.
        mod winograd {
            use super::*;
            $(
                #[test]
                fn $name() {
                    check(stringify!($name), ConvAlgo::Winograd);
                }
            )*
        }
        const FIXTURES: &[&str] = &[$(stringify!($name)),*];
    };
}

golden!(
    mixed,
    zero_fed,
    shared_relu,
    dead_end,
    dead,
    supernet,
    stem32,
    full16
);

/// Every fixture in tests/golden/ has its test above (none is silently left out).
#[test]
fn every_fixture_is_checked() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(fixture_dir())
        .expect("tests/golden")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = FIXTURES.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "fixtures on disk vs tests in tests/golden.rs"
    );
}

#[test]
fn base64_decoder_round_trips_known_values() {
    assert_eq!(base64_decode("TWFu"), b"Man");
    assert_eq!(base64_decode("TWE="), b"Ma");
    assert_eq!(base64_decode("TQ=="), b"M");
    // 1.0f32 and -2.5f32, little-endian.
    assert_eq!(f32_blob(&Value::from("AACAPwAAIMA=")), vec![1.0, -2.5]);
}
