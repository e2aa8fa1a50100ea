//! Plans against the counts of ../shared/spec/nb201.md, for every arch of the space.

use nasrank::net::{Layer, Plan};
use nasrank::space::{Arch, Cell, DatasetShape, MacroConfig, Op, SizeArch, EDGES, NUM_ARCHS};

/// Decodes a product index (base 5, last edge fastest) without the library's parser.
fn arch_of_product(mut i: usize) -> Arch {
    let mut ops = [Op::None; 6];
    for slot in ops.iter_mut().rev() {
        *slot = Op::from_index(i % 5).unwrap();
        i /= 5;
    }
    Arch { ops }
}

/// Which nodes are identically zero (independent of the plan builder): node i is zero
/// when no incoming edge carries a non-`none` op from a non-zero node.
fn zero_nodes(arch: &Arch) -> [bool; 4] {
    let mut zero = [false; 4];
    for to in 1..4 {
        zero[to] = EDGES
            .iter()
            .zip(arch.ops)
            .filter(|((_, t), _)| *t == to)
            .all(|((from, _), op)| op == Op::None || zero[*from]);
    }
    zero
}

fn zero_output(arch: &Arch) -> bool {
    zero_nodes(arch)[3]
}

/// Conv edges (3x3, 1x1) whose input node is identically zero.
fn zero_input_convs(arch: &Arch) -> (usize, usize) {
    let zero = zero_nodes(arch);
    let mut dead = (0, 0);
    for ((from, _), op) in EDGES.iter().zip(arch.ops) {
        if zero[*from] {
            match op {
                Op::Conv3x3 => dead.0 += 1,
                Op::Conv1x1 => dead.1 += 1,
                _ => {}
            }
        }
    }
    dead
}

fn conv_counts(arch: &Arch) -> (usize, usize) {
    let n3 = arch.ops.iter().filter(|o| **o == Op::Conv3x3).count();
    let n1 = arch.ops.iter().filter(|o| **o == Op::Conv1x1).count();
    (n3, n1)
}

#[test]
fn plans_match_the_spec_counts_for_every_arch() {
    let config = MacroConfig::NB201_CIFAR10;
    for i in 0..NUM_ARCHS {
        let arch = arch_of_product(i);
        let plan = Plan::build(&Cell::from(arch), &config).unwrap();
        let (n3, n1) = conv_counts(&arch);
        let (d3, d1) = zero_input_convs(&arch);
        // Every ReLU module counts, including those with constant codes.
        assert_eq!(plan.relu_units(), 143_360 * (n3 + n1) + 40_960, "{arch:?}");
        if zero_output(&arch) {
            // Only the stem, the first cell's live convs and the classifier do any work.
            let (l3, l1) = (n3 - d3, n1 - d1);
            assert_eq!(
                plan.param_count(),
                464 + 2_336 * l3 + 288 * l1 + 650,
                "{arch:?}"
            );
            assert_eq!(
                plan.macs(),
                442_368 + 2_359_296 * l3 + 262_144 * l1 + 650,
                "{arch:?}"
            );
        } else {
            // Dead convs carry no parameters and no work in the plan.
            assert_eq!(
                plan.param_count() + 243_040 * d3 + 28_000 * d1,
                73_306 + 243_040 * n3 + 28_000 * n1,
                "{arch:?}"
            );
            assert_eq!(
                plan.macs() + 35_389_440 * d3 + 3_932_160 * d1,
                7_783_050 + 35_389_440 * n3 + 3_932_160 * n1,
                "{arch:?}"
            );
        }
        assert_eq!(plan.is_dead(), zero_output(&arch));
        let relu_modules: u32 = plan
            .layers
            .iter()
            .map(|l| match l {
                Layer::Relu { modules, .. } => *modules,
                _ => 0,
            })
            .sum::<u32>()
            + plan.constant_codes.iter().map(|c| c.modules).sum::<u32>();
        assert_eq!(relu_modules as usize, 15 * (n3 + n1) + 5);
    }
}

#[test]
fn layers_read_only_slots_written_before_them() {
    let config = MacroConfig::NB201_CIFAR10;
    for i in (0..NUM_ARCHS).step_by(7) {
        let plan = Plan::build(&Cell::from(arch_of_product(i)), &config).unwrap();
        let mut written = vec![false; plan.slots.len()];
        written[0] = true;
        for layer in &plan.layers {
            assert!(layer.inputs().iter().all(|x| written[*x]), "{layer:?}");
            assert!(!written[layer.output()], "slot written twice: {layer:?}");
            written[layer.output()] = true;
        }
        assert!(written[plan.output]);
        assert_eq!(plan.slots[plan.output].len(), 10);
    }
}

#[test]
fn all_none_arch_is_dead_and_its_logits_are_the_bias() {
    let plan = Plan::build(&Cell::from(arch_of_product(0)), &MacroConfig::NB201_CIFAR10).unwrap();
    assert!(plan.is_dead());
    assert!(matches!(
        plan.layers[plan.layers.len() - 2],
        Layer::Zero { .. }
    ));
    // Stem only, then nothing reaches the classifier: stem conv + BN, classifier.
    assert_eq!(plan.param_count(), 464 + 650);
}

#[test]
fn supernet_edges_sum_their_ops_and_share_one_relu_per_node() {
    let config = MacroConfig {
        channels: 4,
        cells_per_stage: 1,
        ..MacroConfig::NB201_CIFAR10
    };
    let plan = Plan::build(&Cell::full_supernet(), &config).unwrap();
    // Per cell: nodes 0, 1, 2 each feed conv edges; 2 conv ops per edge; node 0 has 3 edges out.
    let cell_relus: Vec<u32> = plan
        .layers
        .iter()
        .filter_map(|l| match l {
            Layer::Relu { modules, .. } if *modules > 1 => Some(*modules),
            _ => None,
        })
        .collect();
    assert_eq!(cell_relus, [6, 4, 2].repeat(3));
    assert!(!plan.is_dead());
}

#[test]
fn bad_macro_configs_are_rejected() {
    let cell = Cell::from(arch_of_product(1234));
    let bad_size = MacroConfig {
        input_size: 30,
        ..MacroConfig::NB201_CIFAR10
    };
    assert!(Plan::build(&cell, &bad_size).is_err());
    let stemless = MacroConfig {
        stem: false,
        ..MacroConfig::NB201_CIFAR10
    };
    let err = Plan::build(&cell, &stemless).unwrap_err().to_string();
    assert!(err.contains("channels"), "{err}");
}

#[test]
fn single_cell_plans_count_one_relu_module_per_conv_edge() {
    for i in (0..NUM_ARCHS).step_by(13) {
        let arch = arch_of_product(i);
        let plan = Plan::single_cell(&Cell::from(arch), 1, 3).unwrap();
        let (n3, n1) = conv_counts(&arch);
        assert_eq!(plan.relu_units(), 9 * (n3 + n1), "{arch:?}");
        assert_eq!(plan.slots[plan.output].len(), 9);
        assert!(plan.feature_slot().is_none());
        assert_eq!(plan.is_dead(), zero_output(&arch));
    }
}

/// The plan's cell-boundary features (what AZ-NAS reads): the stem's output, then every
/// reduction block's and cell's output, with each stage's shape; the last is what lastact's
/// batch norm reads. Their slots hold those values: in the all-skip arch each cell computes
/// node 3 = x + x + (x + x) = 4x, so every cell's feature is 4 times the one before, which
/// a feature pointing at the wrong slot (a node inside the cell, the previous cell) breaks.
/// A dead arch's cell outputs are identically zero: no slot.
#[test]
fn features_are_the_cell_boundaries() {
    use nasrank::backend::cpu::CpuBackend;
    use nasrank::backend::{Backend, BnStatistics, Executor};
    use nasrank::net::FeatureKind::{self, Reduction, Stem};
    let config = MacroConfig {
        channels: 4,
        cells_per_stage: 2,
        classes: 10,
        input_size: 8,
        input_channels: 3,
        stem: true,
    };
    let all_skip: Arch =
        "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
            .parse()
            .unwrap();
    let plan = Plan::build(&Cell::from(all_skip), &config).unwrap();
    let cell = FeatureKind::Cell;
    let kinds: Vec<FeatureKind> = plan.features.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [Stem, cell, cell, Reduction, cell, cell, Reduction, cell, cell]
    );
    let sizes: Vec<(usize, usize)> = plan
        .features
        .iter()
        .map(|f| (f.shape.c, f.shape.h))
        .collect();
    assert_eq!(
        sizes,
        [
            (4, 8),
            (4, 8),
            (4, 8),
            (8, 4),
            (8, 4),
            (8, 4),
            (16, 2),
            (16, 2),
            (16, 2)
        ]
    );
    let lastact_input = plan.layers.iter().find_map(|l| match l {
        Layer::BatchNorm { x, gamma, .. } if plan.params[*gamma].name == "lastact.bn.weight" => {
            Some(*x)
        }
        _ => None,
    });
    assert_eq!(plan.features.last().unwrap().slot, lastact_input);

    let be = CpuBackend::<f64>::new();
    let mut exec = Executor::with_init(&be, &plan, 3);
    let input: Vec<f64> = (0..2 * 3 * 64)
        .map(|i| ((i * 37) % 11) as f64 - 5.0)
        .collect();
    exec.forward(be.upload(&input), 2, BnStatistics::Batch);
    let value = |k: usize| be.download(exec.slot(plan.features[k].slot.unwrap()));
    for k in 1..plan.features.len() {
        if plan.features[k].kind != cell {
            continue;
        }
        let (before, after) = (value(k - 1), value(k));
        for (a, b) in after.iter().zip(&before) {
            assert!(
                (a - 4.0 * b).abs() <= 1e-12 * (1.0 + b.abs()),
                "feature {k}"
            );
        }
    }

    let dead: Arch = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|"
        .parse()
        .unwrap();
    let plan = Plan::build(&Cell::from(dead), &config).unwrap();
    assert!(plan.features[0].slot.is_some());
    assert!(plan.features[1..].iter().all(|f| f.slot.is_none()));
}

/// The NATS-Bench size-space network counts what the benchmark counts: its parameters and
/// FLOPs equal the space layer's layer-by-layer counts (`SizeArch::params` / `flops`, which
/// tests/space_sss.rs checks against the spec's closed form and the dev sample) on every
/// one of the 32,768 archs for CIFAR-10 (a stride of them for CIFAR-100 and
/// ImageNet16-120), and the spec's anchor values (A5).
#[test]
fn size_space_plans_count_what_the_benchmark_counts() {
    let widths_of = |i: usize| SizeArch::from_index(i).unwrap().widths();
    for (classes, input_size, step) in [(10, 32, 1), (100, 32, 97), (120, 16, 89)] {
        let shape = DatasetShape {
            classes,
            input_size,
        };
        for i in (0..32_768).step_by(step) {
            let arch = SizeArch::from_index(i).unwrap();
            let plan = Plan::build_sized(arch.widths(), classes, input_size).unwrap();
            let counted = (plan.param_count() as u64, plan.macs() as u64);
            assert_eq!(counted, (arch.params(shape), arch.flops(shape)), "{arch}");
            assert_eq!(plan.features.len(), 6);
        }
    }
    // A5: (index, params, FLOPs) on CIFAR-10; 12 = 8:8:8:16:40.
    for (i, params, flops) in [
        (0, 11_714, 4_481_114),
        (12, 67_378, 7_991_706),
        (284, 144_834, 21_827_994),
        (32_767, 713_674, 274_399_882),
    ] {
        let plan = Plan::build_sized(widths_of(i), 10, 32).unwrap();
        assert_eq!(
            (plan.param_count(), plan.macs()),
            (params, flops),
            "index {i}"
        );
    }
    assert_eq!(widths_of(12), [8, 8, 8, 16, 40]);
    // ImageNet16-120 anchors of index 0 and 284.
    for (i, params, flops) in [(0, 12_704, 1_121_336), (284, 149_344, 5_461_816)] {
        let plan = Plan::build_sized(widths_of(i), 120, 16).unwrap();
        assert_eq!(
            (plan.param_count(), plan.macs()),
            (params, flops),
            "index {i}"
        );
    }
}
