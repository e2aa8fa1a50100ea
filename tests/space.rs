//! The search-space layer against the benchmark's own arch table and the facts of
//! shared/spec/nb201.md.

mod common;

use std::collections::HashSet;

use nasrank::space::{
    arch_of_index, benchmark_archs, codes_classes, codes_key, count_flops, count_params,
    index_of_arch, is_dead, iso_classes, iso_key, modules_classes, modules_key, relu_modules,
    relu_units, structure_classes, structure_key, Arch, ArchParseError, Cell, MacroConfig, Op,
    NUM_ARCHS,
};

const INDEX_1: &str =
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";

/// `(index, arch, unique)` rows of the benchmark's arch table.
fn arch_table() -> Option<Vec<(usize, String, String)>> {
    let path = common::shared_data("nb201 archs.csv")?.join("nb201/archs.csv");
    let text = std::fs::read_to_string(&path).expect("read archs.csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("index,arch,unique"));
    let rows: Vec<_> = lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 3, "row {line:?}");
            let index = fields[0].parse().expect("index");
            (index, fields[1].to_string(), fields[2].to_string())
        })
        .collect();
    assert_eq!(rows.len(), NUM_ARCHS);
    Some(rows)
}

fn parse(s: &str) -> Arch {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn parse_err(s: &str) -> ArchParseError {
    s.parse::<Arch>().expect_err(s)
}

#[test]
fn arch_strings_round_trip() {
    let arch = parse(INDEX_1);
    assert_eq!(
        arch.ops,
        [
            Op::Conv3x3,
            Op::Conv3x3,
            Op::AvgPool3x3,
            Op::SkipConnect,
            Op::Conv3x3,
            Op::SkipConnect
        ]
    );
    assert_eq!(arch.to_string(), INDEX_1);
    for product in 0..NUM_ARCHS as u32 {
        let arch = Arch::from_product_index(product);
        assert_eq!(parse(&arch.to_string()), arch);
    }
}

#[test]
fn parse_errors_say_what_and_where() {
    assert_eq!(parse_err(""), ArchParseError::Empty);
    assert_eq!(parse_err("").to_string(), "empty arch string");

    let e = parse_err("|none~0|+|none~0|none~1|");
    assert_eq!(e, ArchParseError::NodeCount { found: 2 });
    assert!(e.to_string().contains("expected 3 nodes"), "{e}");

    let e = parse_err("|none~0|+|none~0|+|none~0|none~1|none~2|");
    assert_eq!(
        e,
        ArchParseError::EdgeCount {
            node: 2,
            offset: 9,
            found: 1
        }
    );
    assert!(
        e.to_string().contains("node 2 (at offset 9) must have 2"),
        "{e}"
    );

    let e = parse_err("|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|");
    assert_eq!(
        e,
        ArchParseError::UnknownOp {
            name: "nor_conv_5x5".into(),
            offset: 1
        }
    );
    let msg = e.to_string();
    assert!(msg.contains("\"nor_conv_5x5\" at offset 1"), "{msg}");
    for op in Op::ALL {
        assert!(msg.contains(op.name()), "{msg} lacks {op}");
    }

    let e = parse_err("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|");
    assert_eq!(
        e,
        ArchParseError::WrongInput {
            to: 2,
            expected: 1,
            offset: 22,
            found: "0".into()
        }
    );
    assert!(
        e.to_string()
            .contains("edge 1->2 at offset 22: input must be `~1`, found `~0`"),
        "{e}"
    );

    let e = parse_err("|none|+|none~0|none~1|+|none~0|none~1|none~2|");
    assert!(matches!(
        e,
        ArchParseError::MalformedEdge {
            from: 0,
            to: 1,
            offset: 1,
            ..
        }
    ));
    assert!(
        e.to_string().contains("expected `op~0`, found \"none\""),
        "{e}"
    );

    let e = parse_err("|none~0|+none~0|none~1|+|none~0|none~1|none~2|");
    assert_eq!(e, ArchParseError::MissingBar { offset: 9 });
    assert!(e.to_string().contains("missing `|` at offset 9"), "{e}");
    let unclosed = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2";
    assert_eq!(
        parse_err(unclosed),
        ArchParseError::MissingBar {
            offset: unclosed.len()
        }
    );

    let e = parse_err(&format!("{INDEX_1}\n"));
    assert_eq!(
        e,
        ArchParseError::Stray {
            offset: INDEX_1.len(),
            text: "\n".into()
        }
    );
    let expected = format!("stray \"\\n\" at offset {}", INDEX_1.len());
    assert!(e.to_string().contains(&expected), "{e}");
}

#[test]
fn index_order_matches_the_benchmark_table() {
    let Some(rows) = arch_table() else { return };
    for (index, arch, _) in &rows {
        let parsed = parse(arch);
        assert_eq!(arch_of_index(*index), Some(parsed), "index {index}");
        assert_eq!(index_of_arch(&parsed), *index);
    }
    let listed: Vec<String> = benchmark_archs().map(|(_, a)| a.to_string()).collect();
    let table: Vec<String> = rows.into_iter().map(|(_, arch, _)| arch).collect();
    assert_eq!(listed, table);
}

#[test]
fn index_order_known_values() {
    let known = [
        (0, "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"),
        (1, INDEX_1),
        (9, "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"),
        (123, "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"),
    ];
    for (index, arch) in known {
        assert_eq!(arch_of_index(index), Some(parse(arch)), "index {index}");
        assert_eq!(index_of_arch(&parse(arch)), index);
    }
    assert_eq!(arch_of_index(NUM_ARCHS), None);
}

#[test]
fn iso_key_matches_the_benchmark_table() {
    let Some(rows) = arch_table() else { return };
    for (index, arch, unique) in &rows {
        assert_eq!(&iso_key(&parse(arch)), unique, "index {index}");
    }
    let keys: HashSet<&str> = rows.iter().map(|(_, _, unique)| unique.as_str()).collect();
    assert_eq!(keys.len(), 6_466);
}

#[test]
fn iso_classes_partition_the_benchmark() {
    let classes = iso_classes();
    assert_eq!(classes.len(), 6_466);
    let mut seen: Vec<usize> = classes.iter().flat_map(|c| c.indices.clone()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..NUM_ARCHS).collect::<Vec<_>>());
    for class in &classes {
        for &index in &class.indices {
            assert_eq!(iso_key(&arch_of_index(index).unwrap()), class.key);
        }
    }
}

/// `f` takes one value on each class.
fn assert_constant_on<K: Eq + std::hash::Hash>(
    classes: &[nasrank::space::ArchClass],
    what: &str,
    f: impl Fn(&Arch) -> K,
) {
    for class in classes {
        let values: HashSet<K> = class
            .indices
            .iter()
            .map(|&i| f(&arch_of_index(i).unwrap()))
            .collect();
        assert_eq!(values.len(), 1, "class {} mixes {what}", class.key);
    }
}

/// Equal outputs, a conv of either kind into node 1, which feeds only `none` edges.
const DEAD_END_CONVS: [&str; 2] = [
    "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|none~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|none~2|",
];

#[test]
fn codes_classes_refine_iso_classes() {
    let classes = codes_classes();
    // Counted independently by tools/count_classes.py (a Python reimplementation of the
    // rule over ../shared/data/nb201/archs.csv).
    assert_eq!(classes.len(), 7_425);
    assert_constant_on(&classes, "iso keys", iso_key);
    // Members see the same number of ReLU modules and units (the codes' shapes).
    let cfg = MacroConfig::NB201_CIFAR10;
    assert_constant_on(&classes, "ReLU shapes", |arch| {
        let cell = Cell::from(*arch);
        (relu_modules(&cell, &cfg), relu_units(&cell, &cfg))
    });
    // A dead-end conv's ReLU sees node 0 whatever the conv's kind.
    let [a, b] = DEAD_END_CONVS.map(parse);
    assert_eq!(codes_key(&a), codes_key(&b));
    // The same conv feeding a ReLU (edge 1->2 is a conv): its kind is seen.
    let c =
        parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|none~2|");
    let d =
        parse("|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|none~2|");
    assert_eq!(iso_key(&c), iso_key(&d));
    assert_ne!(codes_key(&c), codes_key(&d));
}

#[test]
fn structure_classes_refine_codes_classes() {
    let classes = structure_classes();
    assert_eq!(classes.len(), 8_252); // nb201.md
    assert_constant_on(&classes, "codes keys", codes_key);
    let cfg = MacroConfig::NB201_CIFAR10;
    assert_constant_on(&classes, "params and FLOPs", |arch| {
        let cell = Cell::from(*arch);
        (count_params(&cell, &cfg), count_flops(&cell, &cfg))
    });
    // The structure key tells the dead-end convs' kinds apart.
    let [a, b] = DEAD_END_CONVS.map(parse);
    assert_ne!(structure_key(&a), structure_key(&b));
}

#[test]
fn modules_classes_refine_structure_classes() {
    let classes = modules_classes();
    assert_eq!(classes.len(), 11_185); // tools/count_classes.py
    assert_constant_on(&classes, "structure keys", structure_key);
    // Members have the same non-zero module outputs (shapes and multiplicities).
    let config = MacroConfig {
        channels: 4,
        cells_per_stage: 1,
        classes: 10,
        input_size: 8,
        input_channels: 3,
        stem: true,
    };
    assert_constant_on(&classes, "module outputs", |arch| {
        let plan = nasrank::net::Plan::build(&Cell::from(*arch), &config).unwrap();
        let mut outputs: Vec<_> = plan
            .module_outputs
            .iter()
            .filter(|m| m.slot.is_some())
            .map(|m| (m.shape.c, m.shape.h, m.modules))
            .collect();
        outputs.sort_unstable();
        outputs
    });
    // A dead-end pool and a dead-end skip output different tensors ...
    let pool = parse("|avg_pool_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|none~2|");
    let skip = parse("|skip_connect~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|none~2|");
    assert_eq!(structure_key(&pool), structure_key(&skip));
    assert_ne!(modules_key(&pool), modules_key(&skip));
    // ... but a pool of a zero and a skip of a zero both output zeros.
    let pool = parse("|none~0|+|skip_connect~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|");
    let skip = parse("|none~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|none~1|none~2|");
    assert_eq!(modules_key(&pool), modules_key(&skip));
}

#[test]
fn dead_archs() {
    let dead: Vec<usize> = benchmark_archs()
        .filter(|(_, arch)| is_dead(arch))
        .map(|(index, _)| index)
        .collect();
    assert_eq!(dead.len(), 341);
    // Deadness is a property of the function, so of the whole iso class.
    for class in iso_classes() {
        let first = is_dead(&arch_of_index(class.indices[0]).unwrap());
        for &index in &class.indices {
            assert_eq!(
                is_dead(&arch_of_index(index).unwrap()),
                first,
                "{}",
                class.key
            );
        }
    }
    assert!(is_dead(&parse(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|"
    )));
    assert!(!is_dead(&parse(
        "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    )));
}

fn conv_counts(arch: &Arch) -> (u64, u64) {
    let count = |op| arch.ops.iter().filter(|&&o| o == op).count() as u64;
    (count(Op::Conv3x3), count(Op::Conv1x1))
}

#[test]
fn counts_follow_the_benchmark_formulas() {
    let cfg = MacroConfig::NB201_CIFAR10;
    for product in 0..NUM_ARCHS as u32 {
        let arch = Arch::from_product_index(product);
        let cell = Cell::from(arch);
        let (n3, n1) = conv_counts(&arch);
        assert_eq!(
            count_params(&cell, &cfg),
            73_306 + 243_040 * n3 + 28_000 * n1
        );
        assert_eq!(
            count_flops(&cell, &cfg),
            7_783_050 + 35_389_440 * n3 + 3_932_160 * n1
        );
        assert_eq!(relu_modules(&cell, &cfg), 15 * (n3 + n1) + 5);
        assert_eq!(relu_units(&cell, &cfg), 143_360 * (n3 + n1) + 40_960);
    }
}

#[test]
fn counts_for_other_datasets_and_spot_values() {
    let empty = Cell::from(Arch::from_product_index(0));
    let cifar10 = MacroConfig::NB201_CIFAR10;
    assert_eq!(count_params(&empty, &cifar10.with_classes(100)), 79_156);
    let imagenet16 = MacroConfig {
        input_size: 16,
        ..cifar10.with_classes(120)
    };
    assert_eq!(count_params(&empty, &imagenet16), 80_456);

    let spot = |index| Cell::from(arch_of_index(index).unwrap());
    assert_eq!(count_params(&spot(0), &cifar10), 129_306);
    assert_eq!(count_flops(&spot(0), &cifar10), 15_647_370);
    assert_eq!(count_params(&spot(1), &cifar10), 802_426);
    assert_eq!(count_flops(&spot(1), &cifar10), 113_951_370);
    assert_eq!(count_params(&spot(6111), &cifar10), 1_073_466);
}

#[test]
fn supernet_counts_every_op_of_an_edge() {
    // The supernet carries one 3x3 and one 1x1 conv on each of the 6 edges.
    let cfg = MacroConfig::NB201_CIFAR10;
    let supernet = Cell::full_supernet();
    assert_eq!(
        count_params(&supernet, &cfg),
        73_306 + 6 * (243_040 + 28_000)
    );
    assert_eq!(relu_modules(&supernet, &cfg), 15 * 12 + 5);
}
