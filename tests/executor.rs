//! The executor on a whole small network, in f64: gradients against central finite
//! differences, and per-sample gradients against the plain backward run one image at a time.

use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::{
    Backend, BackwardOptions, BnGrad, BnStatistics, Executor, ParamGrads, Reduction,
};
use nasrank::net::init::uniform_stream;
use nasrank::net::Plan;
use nasrank::space::{Arch, Cell, MacroConfig, Op, OpSet};

type Be = CpuBackend<f64>;

const TINY: MacroConfig = MacroConfig {
    channels: 2,
    cells_per_stage: 1,
    classes: 3,
    input_size: 8,
    input_channels: 3,
    stem: true,
};

/// A tiny network whose supernet cell uses every op on every edge.
fn tiny() -> (Plan, MacroConfig) {
    let all = OpSet::from_ops(&Op::ALL);
    let plan = Plan::build(&Cell { edges: [all; 6] }, &TINY).unwrap();
    (plan, TINY)
}

fn input(plan: &Plan, n: usize, seed: u64) -> Vec<f64> {
    uniform_stream(seed, 99, n * plan.slots[0].len())
        .map(|u| 2.0 * u - 1.0)
        .collect()
}

fn labels(n: usize) -> Vec<usize> {
    (0..n).map(|i| (i * 2 + 1) % 3).collect()
}

/// Loss of the network with given parameters and input.
fn loss(plan: &Plan, params: &[Vec<f64>], x: &[f64], n: usize, bn: BnStatistics) -> f64 {
    let be = Be::new();
    let mut exec = Executor::new(&be, plan, params.to_vec());
    exec.forward(x.to_vec(), n, bn);
    let mut d = be.alloc(n * 3);
    be.softmax_cross_entropy(n, 3, exec.logits(), &labels(n), Reduction::Mean, &mut d)
}

/// Checks analytic gradients of a few entries of every parameter, and of the input,
/// against central differences.
fn check_gradients(plan: &Plan, bn: BnStatistics) {
    let plan = plan.clone();
    let be = Be::new();
    let n = 3;
    let x = input(&plan, n, 5);
    let mut exec = Executor::with_init(&be, &plan, 11);
    let params: Vec<Vec<f64>> = exec.params().to_vec();
    exec.forward(x.clone(), n, bn);
    let mut dlogits = be.alloc(n * 3);
    be.softmax_cross_entropy(
        n,
        3,
        exec.logits(),
        &labels(n),
        Reduction::Mean,
        &mut dlogits,
    );
    let options = BackwardOptions {
        bn_grad: BnGrad::Full,
        input_grad: true,
    };
    let grads = exec.backward(dlogits, &options, ParamGrads::Batched);
    let param_grads = grads.params.unwrap();
    let h = 1e-6;
    let mut checked = 0;
    for (p, spec) in plan.params.iter().enumerate() {
        for e in [0, spec.len() / 2, spec.len() - 1] {
            let mut plus = params.clone();
            plus[p][e] += h;
            let mut minus = params.clone();
            minus[p][e] -= h;
            let fd = (loss(&plan, &plus, &x, n, bn) - loss(&plan, &minus, &x, n, bn)) / (2.0 * h);
            let an = param_grads[p][e];
            assert!(
                (fd - an).abs() <= 1e-6 + 1e-4 * fd.abs(),
                "{} [{e}]: analytic {an} vs finite difference {fd}",
                spec.name
            );
            checked += 1;
        }
    }
    let dx = grads.input.unwrap();
    for e in (0..x.len()).step_by(37) {
        let (mut plus, mut minus) = (x.clone(), x.clone());
        plus[e] += h;
        minus[e] -= h;
        let fd =
            (loss(&plan, &params, &plus, n, bn) - loss(&plan, &params, &minus, n, bn)) / (2.0 * h);
        assert!(
            (fd - dx[e]).abs() <= 1e-6 + 1e-4 * fd.abs(),
            "input [{e}]: {} vs {fd}",
            dx[e]
        );
    }
    assert!(checked > 50);
}

#[test]
fn whole_network_gradients_match_finite_differences_with_batch_statistics() {
    check_gradients(&tiny().0, BnStatistics::Batch);
}

#[test]
fn gradients_through_a_sum_of_one_slot_twice_match_finite_differences() {
    // Node 1 is node 0 (skip), so node 2 = skip(node 0) + skip(node 1) sums one slot twice.
    use Op::*;
    let arch = Arch {
        ops: [
            SkipConnect,
            SkipConnect,
            SkipConnect,
            None,
            Conv3x3,
            AvgPool3x3,
        ],
    };
    let plan = Plan::build(&Cell::from(arch), &TINY).unwrap();
    assert!(plan.layers.iter().any(
        |l| matches!(l, nasrank::net::Layer::Sum { xs, .. } if xs.len() == 2 && xs[0] == xs[1])
    ));
    check_gradients(&plan, BnStatistics::Batch);
}

#[test]
fn whole_network_gradients_match_finite_differences_with_per_image_statistics() {
    check_gradients(&tiny().0, BnStatistics::PerSample);
}

/// Collects per-sample gradients into `[param][n][len]`.
fn per_sample(exec: &mut Executor<'_, Be>, dlogits: Vec<f64>, bn_grad: BnGrad) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::new(); exec.plan().params.len()];
    let mut visit = |p: usize, g: &Vec<f64>| out[p] = g.clone();
    let options = BackwardOptions {
        bn_grad,
        input_grad: false,
    };
    exec.backward(dlogits, &options, ParamGrads::PerSample(&mut visit));
    out
}

#[test]
fn per_sample_gradients_with_per_image_statistics_equal_one_image_at_a_time() {
    let (plan, _) = tiny();
    let be = Be::new();
    let n = 4;
    let x = input(&plan, n, 8);
    let mut exec = Executor::with_init(&be, &plan, 3);
    exec.forward(x.clone(), n, BnStatistics::PerSample);
    let mut dlogits = be.alloc(n * 3);
    be.softmax_cross_entropy(
        n,
        3,
        exec.logits(),
        &labels(n),
        Reduction::Sum,
        &mut dlogits,
    );
    let all = per_sample(&mut exec, dlogits, BnGrad::Full);
    let image_len = plan.slots[0].len();
    for i in 0..n {
        // The same image alone, as a batch of one, through the plain batched backward.
        let mut single = Executor::with_init(&be, &plan, 3);
        single.forward(
            x[i * image_len..(i + 1) * image_len].to_vec(),
            1,
            BnStatistics::Batch,
        );
        let mut d = be.alloc(3);
        be.softmax_cross_entropy(
            1,
            3,
            single.logits(),
            &labels(n)[i..=i],
            Reduction::Sum,
            &mut d,
        );
        let grads = single
            .backward(d, &BackwardOptions::default(), ParamGrads::Batched)
            .params
            .unwrap();
        for (p, spec) in plan.params.iter().enumerate() {
            let len = spec.len();
            for (e, (a, b)) in all[p][i * len..(i + 1) * len]
                .iter()
                .zip(&grads[p])
                .enumerate()
            {
                assert!(
                    (a - b).abs() <= 1e-10 + 1e-8 * b.abs(),
                    "{} image {i} [{e}]: {a} vs {b}",
                    spec.name
                );
            }
        }
    }
}

#[test]
fn frozen_statistics_per_sample_gradients_sum_to_the_frozen_batched_gradient() {
    let (plan, _) = tiny();
    let be = Be::new();
    let n = 5;
    let x = input(&plan, n, 9);
    let mut exec = Executor::with_init(&be, &plan, 4);
    exec.forward(x, n, BnStatistics::Batch);
    let mut dlogits = be.alloc(n * 3);
    be.softmax_cross_entropy(
        n,
        3,
        exec.logits(),
        &labels(n),
        Reduction::Mean,
        &mut dlogits,
    );
    let all = per_sample(&mut exec, dlogits.clone(), BnGrad::FrozenStats);
    let options = BackwardOptions {
        bn_grad: BnGrad::FrozenStats,
        input_grad: false,
    };
    let batched = exec
        .backward(dlogits, &options, ParamGrads::Batched)
        .params
        .unwrap();
    for (p, spec) in plan.params.iter().enumerate() {
        let len = spec.len();
        for e in 0..len {
            let sum: f64 = (0..n).map(|i| all[p][i * len + e]).sum();
            assert!(
                (sum - batched[p][e]).abs() <= 1e-12 + 1e-9 * sum.abs(),
                "{} [{e}]",
                spec.name
            );
        }
    }
    // Frozen statistics drop the gradient through the batch mean and variance, so the
    // stem conv (upstream of every BN) must see a different gradient than with Full.
    let mut dlogits = be.alloc(n * 3);
    be.softmax_cross_entropy(
        n,
        3,
        exec.logits(),
        &labels(n),
        Reduction::Mean,
        &mut dlogits,
    );
    let full = exec
        .backward(dlogits, &BackwardOptions::default(), ParamGrads::Batched)
        .params
        .unwrap();
    let conv = plan
        .params
        .iter()
        .position(|s| s.name == "stem.conv.weight")
        .unwrap();
    let diff: f64 = full[conv]
        .iter()
        .zip(&batched[conv])
        .map(|(a, b)| (a - b).abs())
        .sum();
    let size: f64 = full[conv].iter().map(|a| a.abs()).sum();
    assert!(
        diff > 1e-3 * size,
        "frozen and full gradients agree: {diff} vs {size}"
    );
}

#[test]
fn dead_arch_logits_are_the_classifier_bias() {
    let config = TINY;
    let dead = Arch {
        ops: [
            Op::Conv3x3,
            Op::None,
            Op::None,
            Op::None,
            Op::None,
            Op::AvgPool3x3,
        ],
    };
    let plan = Plan::build(&Cell::from(dead), &config).unwrap();
    assert!(plan.is_dead());
    let be = Be::new();
    let mut exec = Executor::with_init(&be, &plan, 2);
    exec.forward(input(&plan, 2, 1), 2, BnStatistics::Batch);
    let bias = plan
        .params
        .iter()
        .position(|s| s.name == "classifier.bias")
        .unwrap();
    let expected = exec.params()[bias].repeat(2);
    assert_eq!(exec.logits(), &expected);
}

#[test]
fn bypassed_batch_norm_gradients_match_finite_differences() {
    check_gradients(&tiny().0, BnStatistics::Bypass);
}

#[test]
fn bypassed_batch_norm_is_the_identity() {
    let arch = Arch {
        ops: [
            Op::Conv1x1,
            Op::None,
            Op::None,
            Op::None,
            Op::None,
            Op::SkipConnect,
        ],
    };
    let config = MacroConfig {
        stem: false,
        input_channels: 2,
        ..TINY
    };
    let plan = Plan::build(&Cell::from(arch), &config).unwrap();
    let be = Be::new();
    let mut exec = Executor::with_init(&be, &plan, 1);
    exec.forward(input(&plan, 2, 3), 2, BnStatistics::Bypass);
    for layer in &plan.layers {
        if let nasrank::net::Layer::BatchNorm { x, y, .. } = layer {
            assert_eq!(exec.slot(*x), exec.slot(*y));
        }
    }
    assert_eq!(exec.bn_statistics().count(), 0);
}

#[test]
fn the_gradient_observer_sees_each_layer_with_a_gradient_once() {
    let (plan, _) = tiny();
    let be = Be::new();
    let n = 2;
    let mut exec = Executor::with_init(&be, &plan, 1);
    exec.forward(input(&plan, n, 3), n, BnStatistics::Batch);
    let mut dlogits = be.alloc(n * 3);
    be.softmax_cross_entropy(
        n,
        3,
        exec.logits(),
        &labels(n),
        Reduction::Mean,
        &mut dlogits,
    );
    let expected_seed = dlogits.clone();
    let mut seen = Vec::new();
    let mut observe = |layer: usize, y: &Vec<f64>, dy: &Vec<f64>| {
        assert_eq!(y.len(), dy.len());
        if layer == plan.layers.len() - 1 {
            assert_eq!(dy, &expected_seed);
        }
        seen.push(layer);
    };
    exec.backward_observed(
        dlogits,
        &BackwardOptions::default(),
        ParamGrads::Skip,
        Some(&mut observe),
    );
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "a layer was shown twice");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "not in reverse order");
    assert_eq!(seen[0], plan.layers.len() - 1);
}

/// The codes of every ReLU, concatenated in stream order, and the logits.
fn codes_and_logits(
    be: &CpuBackend<f32>,
    plan: &Plan,
    x: &[f32],
    n: usize,
) -> (Vec<u64>, Vec<f32>) {
    let mut exec = Executor::with_init(be, plan, 3);
    let mut codes = Vec::new();
    exec.forward_with_codes(x.to_vec(), n, BnStatistics::Batch, &mut |block| {
        codes.extend(be.download_words(block.codes))
    });
    (codes, be.download(exec.logits()))
}

#[test]
fn forward_only_pass_streams_the_codes_and_logits_of_a_full_forward() {
    // The forward-only pass releases slots as it goes and reuses pooled buffers without
    // zeroing them; a full forward keeps every slot. Both must compute the same values, also
    // on a backend whose pool holds stale buffers of another arch.
    let config = MacroConfig {
        channels: 4,
        cells_per_stage: 2,
        classes: 3,
        input_size: 8,
        input_channels: 3,
        stem: true,
    };
    let other: Arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|nor_conv_3x3~1|skip_connect~2|"
        .parse()
        .unwrap();
    // Sums of two and three terms, and one whose terms repeat a slot (node 1 = node 0),
    // since a sum may take over a term's buffer in place.
    for arch in [
        "|nor_conv_1x1~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
        "|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|avg_pool_3x3~1|nor_conv_1x1~2|",
        "|skip_connect~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|skip_connect~1|nor_conv_1x1~2|",
    ] {
        let arch: Arch = arch.parse().unwrap();
        streamed_codes_and_logits_match_a_full_forward(&config, arch, other);
    }
}

fn streamed_codes_and_logits_match_a_full_forward(config: &MacroConfig, arch: Arch, other: Arch) {
    let plan = Plan::build(&Cell::from(arch), config).unwrap();
    let other_plan = Plan::build(&Cell::from(other), config).unwrap();
    let n = 5;
    let x: Vec<f32> = uniform_stream(7, 99, n * plan.slots[0].len())
        .map(|u| (2.0 * u - 1.0) as f32)
        .collect();

    let fresh = CpuBackend::<f32>::new();
    let mut full = Executor::with_init(&fresh, &plan, 3);
    full.forward(x.clone(), n, BnStatistics::Batch);
    let full_logits = fresh.download(full.logits());
    let mut full_codes = Vec::new();
    for layer in &plan.layers {
        if let nasrank::net::Layer::Relu { x: input, .. } = layer {
            let units = plan.slots[*input].len();
            let mut words = fresh.alloc_words(n * units.div_ceil(64));
            fresh.pack_signs(full.slot(*input), n, units, &mut words);
            full_codes.extend(words);
        }
    }
    drop(full);

    let used = CpuBackend::<f32>::new();
    let _ = codes_and_logits(&used, &other_plan, &x, n);
    let _ = codes_and_logits(&used, &plan, &x, n);
    let (codes, logits) = codes_and_logits(&used, &plan, &x, n);
    assert_eq!(logits, full_logits, "{arch}");
    assert!(codes.starts_with(&full_codes), "layer codes differ: {arch}");
    assert!(
        codes[full_codes.len()..].iter().all(|&w| w == 0),
        "constant codes are zero"
    );
}

#[test]
#[should_panic(expected = "forward-only")]
fn backward_after_a_forward_only_pass_is_refused() {
    let be = CpuBackend::<f32>::new();
    let (plan, _) = tiny();
    let n = 2;
    let x = vec![0.5f32; n * plan.slots[0].len()];
    let mut exec = Executor::with_init(&be, &plan, 1);
    exec.forward_with_codes(x, n, BnStatistics::Batch, &mut |_| {});
    let seed = be.alloc(n * 3);
    exec.backward(seed, &BackwardOptions::default(), ParamGrads::Skip);
}

#[test]
fn executors_one_after_another_do_not_grow_the_pool() {
    // Each executor returns its parameters, input and activations to the backend on drop;
    // the next one of the same arch must take them back, not leave them to pile up.
    let be = CpuBackend::<f32>::new();
    let (plan, _) = tiny();
    let n = 3;
    let x = vec![0.25f32; n * plan.slots[0].len()];
    let mut held = Vec::new();
    for seed in 0..3 {
        let mut exec = Executor::with_init(&be, &plan, seed);
        exec.forward(be.upload(&x), n, BnStatistics::Batch);
        drop(exec);
        held.push(be.pooled_bytes());
    }
    assert!(held[0] > 0, "nothing was released");
    assert_eq!(held[1], held[0], "the pool grew: {held:?}");
    assert_eq!(held[2], held[0], "the pool grew: {held:?}");
}

#[test]
fn backward_each_gives_every_seed_its_own_backward_pass() {
    // Lanes side by side (three threads: three lanes for five seeds, unevenly) and one
    // lane: each seed's gradients must be those of a lone backward pass, bit for bit.
    let (plan, _) = tiny();
    let n = 4;
    let x = input(&plan, n, 7);
    let seeds: Vec<Vec<f64>> = (0..5)
        .map(|s| input(&plan, 1, 20 + s)[..n * 3].to_vec())
        .collect();
    for threads in [3, 1] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let be = Be::new();
            assert_eq!(be.parallel_passes(), threads);
            let mut exec = Executor::with_init(&be, &plan, 3);
            exec.forward(x.clone(), n, BnStatistics::Batch);
            let seen = std::sync::Mutex::new(vec![None; seeds.len()]);
            exec.backward_each(seeds.clone(), &BackwardOptions::default(), &|k, grads| {
                let mut seen = seen.lock().unwrap();
                assert!(seen[k].is_none(), "seed {k} twice");
                seen[k] = Some(grads.to_vec());
            });
            for (k, seed) in seeds.iter().enumerate() {
                let alone = exec
                    .backward(
                        seed.clone(),
                        &BackwardOptions::default(),
                        ParamGrads::Batched,
                    )
                    .params
                    .unwrap();
                let each = seen.lock().unwrap()[k].take().expect("every seed");
                assert_eq!(each, alone, "seed {k}, {threads} threads");
            }
        });
    }
}

/// GraSP's scoped perturbation: the closure sees the moved weights, and afterwards the
/// executor holds its own weights again, bit for bit.
#[test]
fn with_params_replaced_shows_the_moved_weights_then_restores_the_own() {
    let be = CpuBackend::<f64>::new();
    let arch = nasrank::space::arch_of_index(6111).unwrap();
    let plan = Plan::build(&Cell::from(arch), &MacroConfig::NB201_CIFAR10).unwrap();
    let mut exec = nasrank::backend::Executor::with_init(&be, &plan, 3);
    let own: Vec<Vec<f64>> = exec.params().iter().map(|b| be.download(b)).collect();
    let ids = [0, plan.params.len() - 1];
    let moved: Vec<_> = ids
        .iter()
        .map(|&p| be.upload(&vec![7.0; own[p].len()]))
        .collect();
    let seen = exec.with_params_replaced(&ids, moved, |e| ids.map(|p| be.download(&e.params()[p])));
    for (values, &p) in seen.iter().zip(&ids) {
        assert_eq!(values.len(), own[p].len());
        assert!(values.iter().all(|&v| v == 7.0), "param {p}");
    }
    let after: Vec<Vec<f64>> = exec.params().iter().map(|b| be.download(b)).collect();
    assert_eq!(after, own);
}

/// The plan's answers to the scores' questions, against the layer list itself.
#[test]
fn plan_names_lastact_and_weighted_layers() {
    let config = MacroConfig::NB201_CIFAR10;
    let live = Plan::build(
        &Cell::from(nasrank::space::arch_of_index(6111).unwrap()),
        &config,
    )
    .unwrap();
    let dead = Plan::build(
        &Cell::from(nasrank::space::arch_of_index(1651).unwrap()),
        &config,
    )
    .unwrap();
    assert_eq!(live.input_len(), 3 * 32 * 32);
    assert_eq!(live.output_len(), 10);
    let lastact = live.lastact_layer().expect("a live network ends in a ReLU");
    assert!(matches!(
        live.layers[lastact],
        nasrank::net::Layer::Relu { .. }
    ));
    assert!(live.layers[lastact + 1..]
        .iter()
        .all(|l| !matches!(l, nasrank::net::Layer::Relu { .. })));
    assert_eq!(dead.lastact_layer(), None);
    // One conv or linear layer per conv or linear weight tensor.
    let weights = live
        .params
        .iter()
        .filter(|p| {
            matches!(
                p.kind,
                nasrank::net::plan::ParamKind::ConvWeight
                    | nasrank::net::plan::ParamKind::LinearWeight
            )
        })
        .count();
    assert_eq!(live.weighted_layers().len(), weights);
    assert!(matches!(
        live.layers[live.weighted_layers().last().unwrap().0],
        nasrank::net::Layer::Linear { .. }
    ));
}

/// `vjp` from a cell-boundary feature map to the input against central differences of
/// `<dy, feature(x)>` in the input (batch statistics, full BN gradient), and cell by cell:
/// the VJP from feature k to feature k-1, then on to the input, equals the VJP from
/// feature k to the input (the segment stops where it should and misses no path).
#[test]
fn vjp_between_feature_maps_matches_finite_differences_and_chains() {
    let (plan, _) = tiny();
    let be = Be::new();
    let n = 2;
    let x = input(&plan, n, 8);
    let mut exec = Executor::with_init(&be, &plan, 4);
    let slots: Vec<usize> = plan.features.iter().map(|f| f.slot.unwrap()).collect();
    assert_eq!(slots.len(), 6);
    let feature_at = |exec: &mut Executor<'_, Be>, x: &[f64], slot: usize| {
        exec.forward(x.to_vec(), n, BnStatistics::Batch);
        exec.slot(slot).clone()
    };
    for (k, &slot) in slots.iter().enumerate().skip(1) {
        let len = n * plan.slots[slot].len();
        let dy: Vec<f64> = uniform_stream(k as u64, 7, len).map(|u| u - 0.5).collect();
        exec.forward(x.clone(), n, BnStatistics::Batch);
        let to_input = exec.vjp(slot, dy.clone(), 0, BnGrad::Full).unwrap();
        // Central differences of <dy, f_k(x)> in a few input entries.
        for i in (0..x.len()).step_by(37) {
            let h = 1e-5;
            let mut xp = x.clone();
            xp[i] += h;
            let mut xm = x.clone();
            xm[i] -= h;
            let fp = feature_at(&mut exec, &xp, slot);
            let fm = feature_at(&mut exec, &xm, slot);
            let fd: f64 = dy
                .iter()
                .zip(fp.iter().zip(&fm))
                .map(|(d, (p, m))| d * (p - m) / (2.0 * h))
                .sum();
            assert!(
                (fd - to_input[i]).abs() <= 1e-6 * (1.0 + fd.abs()),
                "feature {k}, input {i}: vjp {} vs differences {fd}",
                to_input[i]
            );
        }
        exec.forward(x.clone(), n, BnStatistics::Batch);
        let to_previous = exec.vjp(slot, dy, slots[k - 1], BnGrad::Full).unwrap();
        let chained = exec
            .vjp(slots[k - 1], to_previous, 0, BnGrad::Full)
            .unwrap();
        for (a, b) in chained.iter().zip(&to_input) {
            assert!(
                (a - b).abs() <= 1e-10 * (1.0 + b.abs()),
                "feature {k}: {a} vs {b}"
            );
        }
    }
    // A slot to itself is the identity.
    let dy = vec![1.5; n * plan.slots[slots[2]].len()];
    assert_eq!(
        exec.vjp(slots[2], dy.clone(), slots[2], BnGrad::Full),
        Some(dy)
    );
}
