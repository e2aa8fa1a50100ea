//! The zero-cost proxies (engine/proxy: synflow, saliency, grasp, jacob_cov, zen, counts)
//! against independent computations on tiny networks, mostly in f64: sums over plain
//! gradients, finite differences of the loss or of synflow's objective, a correlation matrix
//! and its spectrum computed without an eigensolver, a direct Zen computation; and against
//! PyTorch autograd (tests/golden/zero_cost/scores_zero_cost.json, made by
//! tests/golden/scores_zero_cost.py).
mod common;

use common::{golden_input, golden_labels};

use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::{Backend, BackwardOptions, BnStatistics, Executor, ParamGrads, Reduction};
use nasrank::data::{synthetic_batch, Batch, SplitMix64};
use nasrank::net::init::gaussian_params;
use nasrank::net::init::init_params;
use nasrank::net::{Layer, ParamKind, Plan};
use nasrank::proxy::grasp::{grasp, grasp_with_step};
use nasrank::proxy::jacob_cov::{input_jacobian, jacob_cov};
use nasrank::proxy::saliency::{saliency, saliency_with};
use nasrank::proxy::synflow::{synflow, synflow_with_params};
use nasrank::proxy::zen::zen;
use nasrank::proxy::{counts, upload_images};
use nasrank::space::{arch_of_index, Arch, Cell, MacroConfig, Op, OpSet};
use serde_json::Value;

type Be = CpuBackend<f64>;

/// Every op but `none`; node 0 feeds two conv edges.
const MIXED: &str =
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|";
/// Only convs: nothing pruned, every node live.
const CONVS: &str =
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_3x3~1|nor_conv_3x3~2|";

fn config(channels: usize) -> MacroConfig {
    MacroConfig {
        channels,
        cells_per_stage: 1,
        classes: 3,
        input_size: 8,
        input_channels: 3,
        stem: true,
    }
}

fn cell(arch: &str) -> Cell {
    Cell::from(arch.parse::<Arch>().expect("arch"))
}

fn plan(arch: &str, channels: usize) -> Plan {
    Plan::build(&cell(arch), &config(channels)).expect("plan")
}

fn batch(n: usize, seed: u64) -> Batch {
    synthetic_batch(n, 3, 8, 8, 3, seed)
}

fn scored(kind: ParamKind) -> bool {
    matches!(kind, ParamKind::ConvWeight | ParamKind::LinearWeight)
}

fn assert_close(what: &str, got: f64, want: f64, rtol: f64) {
    let err = (got - want).abs() / want.abs().max(1e-300);
    assert!(
        err <= rtol,
        "{what}: got {got:.12e}, want {want:.12e} (relative error {err:.2e} > {rtol:.0e})"
    );
}

/// Plain batched gradients of the mean cross-entropy.
fn gradients(plan: &Plan, params: &[Vec<f64>], batch: &Batch, n: usize) -> Vec<Vec<f64>> {
    let be = Be::new();
    let mut exec = Executor::new(&be, plan, params.to_vec());
    exec.forward(upload_images(&be, batch, n), n, BnStatistics::Batch);
    let mut d = be.alloc(n * plan.config.classes);
    let labels = &batch.labels[..n];
    be.softmax_cross_entropy(
        n,
        plan.config.classes,
        exec.logits(),
        labels,
        Reduction::Mean,
        &mut d,
    );
    exec.backward(d, &BackwardOptions::default(), ParamGrads::Batched)
        .params
        .unwrap()
}

/// `batch`'s first image `copies` times.
fn repeated(batch: &Batch, copies: usize) -> Batch {
    Batch {
        n: copies,
        images: (0..copies).flat_map(|_| batch.image(0).to_vec()).collect(),
        labels: vec![batch.labels[0]; copies],
        ..batch.clone()
    }
}

#[test]
fn snip_and_grad_norm_are_sums_over_plain_gradients() {
    let plan = plan(MIXED, 3);
    let batch = batch(4, 1);
    let be = Be::new();
    let mut exec = Executor::with_init(&be, &plan, 5);
    let s = saliency(&mut exec, &batch, 4);
    let params = init_params(5, &plan);
    let grads = gradients(&plan, &params, &batch, 4);
    let (mut snip, mut grad_norm) = (0.0, 0.0);
    for ((spec, w), g) in plan.params.iter().zip(&params).zip(&grads) {
        if scored(spec.kind) {
            snip += w.iter().zip(g).map(|(w, g)| (w * g).abs()).sum::<f64>();
            grad_norm += g.iter().map(|g| g * g).sum::<f64>().sqrt();
        }
    }
    assert_close("snip", s.snip, snip, 1e-12);
    assert_close("grad_norm", s.grad_norm, grad_norm, 1e-12);
}

/// With one image, a conv channel's `sum_p a * dL/da` is `W[k] . dL/dW[k]` (no bias), and a
/// classifier unit's is `W[j] . dL/dW[j] + b[j] dL/db[j]`.
#[test]
fn fisher_of_one_image_is_the_squared_weight_gradient_projection() {
    let plan = plan(MIXED, 3);
    let batch = batch(1, 2);
    let be = Be::new();
    let mut exec = Executor::with_init(&be, &plan, 6);
    let got = saliency(&mut exec, &batch, 1).fisher;
    let params = init_params(6, &plan);
    let grads = gradients(&plan, &params, &batch, 1);
    let mut want = 0.0;
    for layer in &plan.layers {
        match layer {
            Layer::Conv { w, geom, .. } => {
                let per_channel = geom.weight_len() / geom.cout;
                for (wk, gk) in params[*w]
                    .chunks_exact(per_channel)
                    .zip(grads[*w].chunks_exact(per_channel))
                {
                    let s: f64 = wk.iter().zip(gk).map(|(w, g)| w * g).sum();
                    want += s * s / 2.0;
                }
            }
            Layer::Linear { w, b, .. } => {
                let fin = plan.params[*w].shape[1];
                for (j, (wj, gj)) in params[*w]
                    .chunks_exact(fin)
                    .zip(grads[*w].chunks_exact(fin))
                    .enumerate()
                {
                    let s: f64 = wj.iter().zip(gj).map(|(w, g)| w * g).sum::<f64>()
                        + params[*b][j] * grads[*b][j];
                    want += s * s / 2.0;
                }
            }
            _ => {}
        }
    }
    assert!(want > 0.0);
    assert_close("fisher (one image)", got, want, 1e-10);
}

/// `k` copies of one image: the same batch statistics, each copy's activation gradient
/// `1/k` of the single image's (mean loss), so fisher (a mean over the batch of squares)
/// is `1/k^2` of the single image's while snip and grad_norm are unchanged.
#[test]
fn fisher_averages_over_the_batch_and_the_loss_is_a_mean() {
    let plan = plan(CONVS, 2);
    let one = batch(1, 3);
    let three = repeated(&one, 3);
    let be = Be::new();
    let mut exec = Executor::with_init(&be, &plan, 7);
    let single = saliency(&mut exec, &one, 1);
    let triple = saliency(&mut exec, &three, 3);
    assert_close(
        "fisher of 3 copies",
        triple.fisher,
        single.fisher / 9.0,
        1e-9,
    );
    assert_close("snip of 3 copies", triple.snip, single.snip, 1e-9);
    assert_close(
        "grad_norm of 3 copies",
        triple.grad_norm,
        single.grad_norm,
        1e-9,
    );
}

/// synflow's objective `R`: |params|, BN bypassed, one all-ones image, sum of logits.
fn synflow_r(plan: &Plan, params: &[Vec<f64>]) -> f64 {
    let be = Be::new();
    let abs = params
        .iter()
        .map(|p| p.iter().map(|v| v.abs()).collect())
        .collect();
    let mut exec = Executor::new(&be, plan, abs);
    exec.forward(vec![1.0; plan.slots[0].len()], 1, BnStatistics::Bypass);
    exec.logits().iter().sum()
}

/// `sum W dR/dW` over the scored weights is `d/dt R(scored weights * (1 + t))` at 0.
#[test]
fn synflow_is_the_derivative_of_r_along_the_weights() {
    for arch in [MIXED, CONVS] {
        let plan = plan(arch, 3);
        let params = init_params(8, &plan);
        let scaled = |t: f64| -> Vec<Vec<f64>> {
            plan.params
                .iter()
                .zip(&params)
                .map(|(spec, p)| {
                    let f = if scored(spec.kind) { 1.0 + t } else { 1.0 };
                    p.iter().map(|v| v * f).collect()
                })
                .collect()
        };
        let h = 1e-5;
        let want = (synflow_r(&plan, &scaled(h)) - synflow_r(&plan, &scaled(-h))) / (2.0 * h);
        assert_close("synflow", synflow(&plan, 8), want, 1e-7);
        assert_close(
            "synflow_with_params",
            synflow_with_params(&plan, params.clone()),
            want,
            1e-7,
        );
    }
}

/// `-W^T H g` as a mixed second difference of the loss along W and g (scored weights
/// only), with the ReLU sign patterns of W held fixed (the Hessian autograd differentiates;
/// across a sign change the difference would jump).
#[test]
fn grasp_matches_a_mixed_second_difference_of_the_loss() {
    let plan = plan(MIXED, 3);
    let batch = batch(4, 9);
    let params = init_params(10, &plan);
    let g = gradients(&plan, &params, &batch, 4);
    let norm = |v: &[Vec<f64>]| -> f64 {
        v.iter()
            .zip(&plan.params)
            .filter(|(_, s)| scored(s.kind))
            .flat_map(|(p, _)| p.iter())
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt()
    };
    let s = 1e-5;
    let t = s * norm(&params) / norm(&g);
    let moved = |a: f64, b: f64| -> Vec<Vec<f64>> {
        plan.params
            .iter()
            .zip(params.iter().zip(&g))
            .map(|(spec, (w, g))| {
                if scored(spec.kind) {
                    w.iter()
                        .zip(g)
                        .map(|(w, g)| w + a * s * w + b * t * g)
                        .collect()
                } else {
                    w.clone()
                }
            })
            .collect()
    };
    let be = Be::new();
    let mut frozen = Executor::new(&be, &plan, params.clone());
    frozen.forward(upload_images(&be, &batch, 4), 4, BnStatistics::Batch);
    frozen.freeze_relu_masks();
    let mut l = |a, b| {
        for (p, w) in moved(a, b).into_iter().enumerate() {
            frozen.params_mut()[p] = w;
        }
        frozen.forward(upload_images(&be, &batch, 4), 4, BnStatistics::Batch);
        let mut d = be.alloc(4 * 3);
        be.softmax_cross_entropy(
            4,
            3,
            frozen.logits(),
            &batch.labels[..4],
            Reduction::Mean,
            &mut d,
        )
    };
    let want = -(l(1.0, 1.0) - l(1.0, -1.0) - l(-1.0, 1.0) + l(-1.0, -1.0)) / (4.0 * s * t);

    let mut exec = Executor::with_init(&be, &plan, 10);
    let got = grasp(&mut exec, &batch, 4);
    assert_close(
        "grasp (f64) vs mixed difference of the loss",
        got,
        want,
        1e-4,
    );
    // The weights are restored: a second call gives the same.
    assert_eq!(grasp(&mut exec, &batch, 4), got);
    // A different step agrees (the difference is O(h^2)).
    let other = grasp_with_step(&mut exec, &batch, 4, 1e-6);
    assert_close("grasp with step 1e-6", other, got, 1e-6);

    // f32 with its default step against f64.
    let be32 = CpuBackend::<f32>::new();
    let mut exec32 = Executor::with_init(&be32, &plan, 10);
    let got32 = grasp(&mut exec32, &batch, 4);
    assert_close("grasp f32 vs f64", got32, got, 5e-3);
}

/// `det` and the inverse by Gauss-Jordan elimination with partial pivoting.
fn log_det_and_inverse_trace(m: &[f64], n: usize) -> (f64, f64) {
    let mut a: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let mut row = m[i * n..(i + 1) * n].to_vec();
            row.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
            row
        })
        .collect();
    let mut log_det = 0.0;
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
            .unwrap();
        a.swap(col, pivot);
        let p = a[col][col];
        log_det += p.abs().ln();
        for v in a[col].iter_mut() {
            *v /= p;
        }
        for r in 0..n {
            if r != col {
                let f = a[r][col];
                let pivot_row = a[col].clone();
                for (v, pv) in a[r].iter_mut().zip(pivot_row) {
                    *v -= f * pv;
                }
            }
        }
    }
    let trace = (0..n).map(|i| a[i][n + i]).sum();
    (log_det, trace)
}

/// J against finite differences of the summed logits; then the score without an eigensolver:
/// `sum ln(l + k) = ln det(C + kI)` and `sum 1/(l + k) = trace((C + kI)^-1)`, with `C` the
/// Pearson correlations computed from means and standard deviations.
#[test]
fn jacob_cov_matches_finite_differences_and_a_spectrum_free_formula() {
    let plan = plan(MIXED, 3);
    let n = 4;
    let batch = batch(n, 11);
    let be = Be::new();
    let mut exec = Executor::with_init(&be, &plan, 12);
    let j = input_jacobian(&mut exec, &batch, n);
    let d = 3 * 8 * 8;
    let x: Vec<f64> = batch.images.iter().map(|&v| f64::from(v)).collect();
    let summed = |x: Vec<f64>| -> f64 {
        let mut e = Executor::with_init(&be, &plan, 12);
        e.forward(x, n, BnStatistics::Batch);
        e.logits().iter().sum()
    };
    let h = 1e-6;
    for i in 0..n {
        for e in [0, 37, d / 2, d - 1] {
            let mut plus = x.clone();
            plus[i * d + e] += h;
            let mut minus = x.clone();
            minus[i * d + e] -= h;
            let fd = (summed(plus) - summed(minus)) / (2.0 * h);
            let got = j[i * d + e];
            assert!(
                (got - fd).abs() <= 1e-6 * (fd.abs() + 1e-3),
                "J[{i}][{e}]: {got} vs finite difference {fd}"
            );
        }
    }
    let k = 1e-5;
    let mut c = vec![0.0; n * n];
    let stats: Vec<(f64, f64)> = j
        .chunks_exact(d)
        .map(|r| {
            let mean = r.iter().sum::<f64>() / d as f64;
            let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            (mean, var.sqrt())
        })
        .collect();
    for a in 0..n {
        for b in 0..n {
            let (ra, rb) = (&j[a * d..(a + 1) * d], &j[b * d..(b + 1) * d]);
            let cov = ra
                .iter()
                .zip(rb)
                .map(|(x, y)| (x - stats[a].0) * (y - stats[b].0))
                .sum::<f64>()
                / d as f64;
            c[a * n + b] = cov / (stats[a].1 * stats[b].1) + if a == b { k } else { 0.0 };
        }
    }
    let (log_det, trace_inv) = log_det_and_inverse_trace(&c, n);
    let want = -(log_det + trace_inv);
    let got = jacob_cov(&mut exec, &batch, n);
    assert_close("jacob_cov", got, want, 1e-9);
}

#[test]
fn zen_matches_a_direct_computation() {
    let plan = plan(MIXED, 3);
    let n = 4;
    let seed = 13;
    let be = Be::new();
    let mut exec = Executor::with_init(&be, &plan, 14);
    let got = zen(&mut exec, n, seed);

    // The inputs: x then e, standard normal pairs from SplitMix64.
    let len = n * 3 * 8 * 8;
    let mut rng = SplitMix64::new(seed);
    let mut normals = Vec::new();
    while normals.len() < 2 * len {
        let (a, b) = rng.normal_pair();
        normals.extend([a, b]);
    }
    let x = normals[..len].to_vec();
    let xp: Vec<f64> = x
        .iter()
        .zip(&normals[len..2 * len])
        .map(|(x, e)| x + 0.01 * e)
        .collect();

    let feature = plan.feature_slot().unwrap();
    // Zen's own N(0, 1) weights, drawn with the input seed.
    let mut e = Executor::new(&be, &plan, gaussian_params(seed, &plan));
    e.forward(x, n, BnStatistics::Batch);
    let f1 = e.slot(feature).clone();
    // BN variance straight from each BN layer's input slot.
    let mut correction = 0.0;
    for layer in &plan.layers {
        if let Layer::BatchNorm { x, .. } = layer {
            let s = plan.slots[*x];
            let a = e.slot(*x);
            let mut mean_var = 0.0;
            for ch in 0..s.c {
                let values: Vec<f64> = (0..n)
                    .flat_map(|i| a[(i * s.c + ch) * s.hw()..(i * s.c + ch + 1) * s.hw()].to_vec())
                    .collect();
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                mean_var +=
                    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
            }
            correction += (mean_var / s.c as f64).sqrt().ln();
        }
    }
    e.forward(xp, n, BnStatistics::Batch);
    let f2 = e.slot(feature);
    let d = f1.len() / n;
    let mean_norm = (0..n)
        .map(|i| {
            (i * d..(i + 1) * d)
                .map(|k| (f1[k] - f2[k]).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .sum::<f64>()
        / n as f64;
    assert_close("zen", got, mean_norm.ln() + correction, 1e-9);
}

#[test]
fn networks_ignoring_the_input_give_nan_jacob_cov_and_minus_infinite_zen() {
    let dead = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|";
    let plan = plan(dead, 2);
    let be = Be::new();
    let mut exec = Executor::with_init(&be, &plan, 1);
    assert!(jacob_cov(&mut exec, &batch(3, 1), 3).is_nan());
    assert_eq!(zen(&mut exec, 3, 1), f64::NEG_INFINITY);
}

#[test]
fn params_and_flops_are_the_benchmark_counts() {
    // Benchmark index 1 on CIFAR-10: 0.802426 M parameters, 113.95137 M FLOPs.
    let cifar10 = MacroConfig::NB201_CIFAR10;
    let spot = Cell::from(arch_of_index(1).unwrap());
    assert_eq!(counts::params(&spot, &cifar10), 802_426.0);
    assert_eq!(counts::flops(&spot, &cifar10), 113_951_370.0);
    // With nothing pruned they are also what the built network holds and computes.
    let plan = plan(CONVS, 3);
    let convs = cell(CONVS);
    assert_eq!(
        counts::params(&convs, &config(3)),
        plan.param_count() as f64
    );
    assert_eq!(counts::flops(&convs, &config(3)), plan.macs() as f64);
    // A supernet edge counts both convs.
    let mut both = convs;
    both.edges[0] = OpSet::from_ops(&[Op::Conv3x3, Op::Conv1x1]);
    assert!(counts::params(&both, &config(3)) > counts::params(&convs, &config(3)));
}

// ---------------------------------------------------------------- PyTorch golden values

/// Each case's scores from nasrank in f64 (tight tolerance) and f32 (loose) against
/// PyTorch autograd in float64 on the same f32-exact weights and input.
#[test]
fn scores_match_pytorch() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/zero_cost/scores_zero_cost.json"
    );
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let c = &case["config"];
        let u = |k: &str| c[k].as_u64().unwrap() as usize;
        let config = MacroConfig {
            channels: u("channels"),
            cells_per_stage: u("cells_per_stage"),
            classes: u("classes"),
            input_size: u("input_size"),
            input_channels: u("input_channels"),
            stem: c["stem"].as_bool().unwrap(),
        };
        let plan = Plan::build(&cell(case["arch"].as_str().unwrap()), &config).unwrap();
        let seed = case["seed"].as_u64().unwrap();
        let n = case["batch"].as_u64().unwrap() as usize;
        let side = config.input_size;
        let batch = Batch {
            n,
            c: config.input_channels,
            h: side,
            w: side,
            images: golden_input(seed, n * config.input_channels * side * side),
            labels: golden_labels(seed, n, config.classes),
        };
        let params: Vec<Vec<f64>> = init_params(seed, &plan)
            .into_iter()
            .map(|p| p.into_iter().map(|v| f64::from(v as f32)).collect())
            .collect();
        let want = |k: &str| case["scores"][k].as_f64().unwrap();

        let be = Be::new();
        let mut exec = Executor::new(&be, &plan, params.clone());
        let s = saliency(&mut exec, &batch, n);
        // Without fisher: the same snip and grad_norm, and no made-up fisher.
        let lean = saliency_with(&mut exec, &batch, n, false);
        assert_eq!((lean.snip, lean.grad_norm), (s.snip, s.grad_norm), "{name}");
        assert!(lean.fisher.is_nan(), "{name}");
        let got = [
            ("synflow", synflow_with_params(&plan, params.clone()), 1e-10),
            ("snip", s.snip, 1e-10),
            ("grad_norm", s.grad_norm, 1e-10),
            ("fisher", s.fisher, 1e-9),
            ("grasp", grasp(&mut exec, &batch, n), 1e-7),
            ("jacob_cov", jacob_cov(&mut exec, &batch, n), 1e-8),
        ];
        for (score, value, rtol) in got {
            assert_close(&format!("{name} {score} (f64)"), value, want(score), rtol);
        }

        let be32 = CpuBackend::<f32>::new();
        let params32 = params
            .iter()
            .map(|p| be32.upload(&p.iter().map(|&v| v as f32).collect::<Vec<_>>()))
            .collect();
        let mut exec32 = Executor::new(&be32, &plan, params32);
        let s = saliency(&mut exec32, &batch, n);
        let got = [
            ("snip", s.snip, 1e-4),
            ("grad_norm", s.grad_norm, 1e-4),
            ("fisher", s.fisher, 1e-3),
            ("grasp", grasp(&mut exec32, &batch, n), 5e-3),
            ("jacob_cov", jacob_cov(&mut exec32, &batch, n), 1e-3),
        ];
        for (score, value, rtol) in got {
            assert_close(&format!("{name} {score} (f32)"), value, want(score), rtol);
        }
    }
}

/// Zen against an independent PyTorch computation of its definition
/// (tests/golden/scores_zen.py: nb201_torch's TinyNetwork in float64 with nasrank's N(0, 1)
/// weights rounded to f32, the SplitMix64 Box-Muller inputs reimplemented in Python, BN
/// variances hooked from the modules' inputs, `lastact`'s output as the feature). Four archs
/// incl. a zero-fed node (its pruned BNs left out on both sides) and the all-skip arch.
/// Catches a wrong feature map, a BN layer missed or counted twice, the L1 norm, the
/// perturbation drawn from the wrong stream, an unbiased variance.
#[test]
fn zen_matches_an_independent_pytorch_reference() {
    use nasrank::backend::executor::to_real;
    use nasrank::proxy::zen::{zen_from_inputs, zen_inputs, ZEN_ALPHA};
    let fx = common::golden_fixture("scores_zen/cases.json");
    let cases = fx["zen"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    let be = nasrank::backend::cpu::CpuBackend::<f64>::new();
    for case in cases {
        let arch: nasrank::space::Arch = case["arch"].as_str().unwrap().parse().unwrap();
        let config = common::config_of(&case["config"]);
        let (seed, n) = (
            case["seed"].as_u64().unwrap(),
            common::usize_of(&case["batch"]),
        );
        let plan = nasrank::net::Plan::build(&nasrank::space::Cell::from(arch), &config).unwrap();
        let bns = plan
            .layers
            .iter()
            .filter(|l| matches!(l, Layer::BatchNorm { .. }))
            .count();
        assert_eq!(
            bns as u64,
            case["bn_layers_counted"].as_u64().unwrap(),
            "{arch}"
        );
        // The exporter's values: gaussian_params(seed) rounded to f32.
        let params = gaussian_params(seed, &plan)
            .iter()
            .map(|v| {
                let rounded: Vec<f64> = v.iter().map(|&x| f64::from(x as f32)).collect();
                be.upload(&to_real::<f64>(&rounded))
            })
            .collect();
        let mut exec = Executor::new(&be, &plan, params);
        let (x, e) = zen_inputs(&plan, n, seed);
        let perturbed: Vec<f64> = x.iter().zip(&e).map(|(x, e)| x + ZEN_ALPHA * e).collect();
        let got = zen_from_inputs(&mut exec, n, &x, &perturbed);
        let want = case["zen"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-9 * want.abs(),
            "{arch}: zen {got} != PyTorch {want}"
        );
    }
}
