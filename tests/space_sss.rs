//! The NATS-Bench size space (SSS) and the `Space` layer against shared/spec/nats_sss.md
//! (section A) and the benchmark's dev sample in shared/data/nats_sss.

mod common;

use std::collections::HashSet;

use nasrank::space::{
    benchmark_archs, index_of_arch, size_benchmark_archs, AnyArch, ClassKey, DatasetShape,
    SizeArch, SizeArchParseError, Space, SpaceParseError, SSS_CELL, SSS_NUM_ARCHS,
};

/// The candidate widths of every position, ascending (A1).
const WIDTHS: [usize; 8] = [8, 16, 24, 32, 40, 48, 56, 64];

const CIFAR10: DatasetShape = DatasetShape {
    classes: 10,
    input_size: 32,
};
const CIFAR100: DatasetShape = DatasetShape {
    classes: 100,
    input_size: 32,
};
const IMAGENET16_120: DatasetShape = DatasetShape {
    classes: 120,
    input_size: 16,
};

fn parse(s: &str) -> SizeArch {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn sss(index: usize) -> SizeArch {
    SizeArch::from_index(index).unwrap_or_else(|| panic!("index {index}"))
}

#[test]
fn index_order_known_values() {
    // A1.
    let known = [
        (0, "8:8:8:8:8"),
        (1, "8:8:8:8:16"),
        (8, "8:8:8:16:8"),
        (12, "8:8:8:16:40"),
        (1234, "8:24:32:24:24"),
        (32767, "64:64:64:64:64"),
    ];
    for (index, arch) in known {
        assert_eq!(sss(index).to_string(), arch, "index {index}");
        assert_eq!(parse(arch).index(), index, "{arch}");
        assert_eq!(
            Space::Sss.arch_of_index(index),
            Some(AnyArch::Sss(parse(arch)))
        );
    }
    assert_eq!(SizeArch::from_index(SSS_NUM_ARCHS), None);
    assert_eq!(Space::Sss.arch_of_index(32_768), None);
    assert_eq!(Space::Sss.num_archs(), 32_768);
}

#[test]
fn index_order_is_the_nested_enumeration_and_round_trips() {
    // A1: first position most significant, candidates ascending.
    let mut expected = Vec::with_capacity(32_768);
    for c1 in WIDTHS {
        for c2 in WIDTHS {
            for c3 in WIDTHS {
                for c4 in WIDTHS {
                    for c5 in WIDTHS {
                        expected.push(format!("{c1}:{c2}:{c3}:{c4}:{c5}"));
                    }
                }
            }
        }
    }
    let listed: Vec<(usize, SizeArch)> = size_benchmark_archs().collect();
    assert_eq!(listed.len(), expected.len());
    for ((index, arch), text) in listed.iter().zip(&expected) {
        assert_eq!(&arch.to_string(), text, "index {index}");
        assert_eq!(parse(text), *arch, "{text}");
        assert_eq!(arch.index(), *index, "{text}");
        assert_eq!(SizeArch::from_index(*index), Some(*arch));
    }
    let via_space: Vec<String> = Space::Sss.archs().map(|(_, a)| a.to_string()).collect();
    assert_eq!(via_space, expected);
    for (index, arch) in Space::Sss.archs() {
        assert_eq!(arch.index(), index);
        assert_eq!(arch.space(), Space::Sss);
    }
}

#[test]
fn no_two_sss_archs_share_a_dedup_key() {
    // SSS has no isomorphic pairs: every class has one arch, at every level of detail.
    for level in [
        ClassKey::Function,
        ClassKey::Codes,
        ClassKey::Structure,
        ClassKey::Modules,
    ] {
        let keys: HashSet<String> = Space::Sss
            .archs()
            .map(|(_, a)| a.class_key(level))
            .collect();
        assert_eq!(keys.len(), 32_768, "{level:?}");
    }
    assert_eq!(parse("8:8:8:16:40").key(), "8:8:8:16:40");
}

#[test]
fn the_tss_space_is_the_existing_code() {
    assert_eq!(Space::Tss.num_archs(), 15_625);
    let via_space: Vec<AnyArch> = Space::Tss.archs().map(|(_, a)| a).collect();
    let direct: Vec<AnyArch> = benchmark_archs().map(|(_, a)| AnyArch::Tss(a)).collect();
    assert_eq!(via_space, direct);
    // nb201.md: benchmark index 6111 has 1,073,466 params on CIFAR-10; index 1 has
    // 113.95137 M FLOPs.
    let arch = Space::Tss.arch_of_index(6111).unwrap();
    assert_eq!(arch.params(CIFAR10), 1_073_466);
    assert_eq!(arch.index(), 6111);
    assert_eq!(
        Space::Tss.arch_of_index(1).unwrap().flops(CIFAR10),
        113_951_370
    );
    let text = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";
    let parsed = Space::Tss.parse_arch(text).unwrap();
    assert_eq!(parsed.index(), 1);
    assert_eq!(parsed.to_string(), text);
    assert!(Space::Tss.parse_arch("8:8:8:16:40").is_err());
    assert!(Space::Sss.parse_arch(text).is_err());
}

#[test]
fn space_names() {
    assert_eq!("tss".parse::<Space>(), Ok(Space::Tss));
    assert_eq!("sss".parse::<Space>(), Ok(Space::Sss));
    let e = "nb201".parse::<Space>().unwrap_err();
    assert_eq!(e, SpaceParseError("nb201".into()));
    let msg = e.to_string();
    assert!(msg.contains("tss") && msg.contains("sss"), "{msg}");
    assert_eq!(Space::Sss.to_string(), "sss");
}

#[test]
fn the_fixed_cell_is_the_spec_genotype() {
    // A3, and main-sss.py: it is TSS arch index 9930.
    assert_eq!(
        SSS_CELL.to_string(),
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    );
    assert_eq!(index_of_arch(&SSS_CELL), 9930);
}

/// A5: `(arch, [(params, FLOPs) for CIFAR-10, CIFAR-100, ImageNet16-120])`, the benchmark's
/// millions times 1e6; `None` where the spec gives no value.
type Anchor = (&'static str, [Option<(u64, u64)>; 3]);
const ANCHORS: [(usize, Anchor); 5] = [
    (
        0,
        (
            "8:8:8:8:8",
            [
                Some((11_714, 4_481_114)),
                Some((12_524, 4_481_924)),
                Some((12_704, 1_121_336)),
            ],
        ),
    ),
    (
        11,
        (
            "8:8:8:16:32",
            [
                Some((49_202, 6_840_650)),
                Some((52_172, 6_843_620)),
                Some((52_832, 1_714_040)),
            ],
        ),
    ),
    (12, ("8:8:8:16:40", [Some((67_378, 7_991_706)), None, None])),
    (
        284,
        (
            "8:8:40:32:40",
            [
                Some((144_834, 21_827_994)),
                Some((148_524, 21_831_684)),
                Some((149_344, 5_461_816)),
            ],
        ),
    ),
    (
        32767,
        (
            "64:64:64:64:64",
            [
                Some((713_674, 274_399_882)),
                Some((719_524, 274_405_732)),
                Some((720_824, 68_607_608)),
            ],
        ),
    ),
];

#[test]
fn counts_match_the_benchmark_anchors() {
    for (index, (text, values)) in ANCHORS {
        let arch = parse(text);
        assert_eq!(arch.index(), index, "{text}");
        for (shape, value) in [CIFAR10, CIFAR100, IMAGENET16_120].into_iter().zip(values) {
            let Some((params, flops)) = value else {
                continue;
            };
            assert_eq!(arch.params(shape), params, "{text} {shape:?}");
            assert_eq!(arch.flops(shape), flops, "{text} {shape:?}");
            let any = AnyArch::Sss(arch);
            assert_eq!((any.params(shape), any.flops(shape)), (params, flops));
        }
    }
}

/// A4's closed form, written out independently of the engine's layer walk.
fn closed_form(widths: [u64; 5], shape: DatasetShape) -> (u64, u64) {
    let [c1, c2, c3, c4, c5] = widths;
    let (k, h) = (shape.classes as u64, shape.input_size as u64);
    let ne = |a: u64, b: u64| u64::from(a != b);
    let cell_p =
        |a: u64, b: u64| 18 * a * b + 27 * b * b + ne(a, b) * a * b + 10 * b + ne(a, b) * 2 * b;
    let res_p = |a: u64, b: u64| 10 * a * b + 9 * b * b + 4 * b;
    let params = 27 * c1
        + 2 * c1
        + cell_p(c1, c1)
        + res_p(c1, c2)
        + cell_p(c2, c3)
        + res_p(c3, c4)
        + cell_p(c4, c5)
        + 2 * c5
        + (c5 + 1) * k;
    let cell_f = |a: u64, b: u64, s: u64| (18 * a * b + 27 * b * b + ne(a, b) * a * b) * s * s;
    let res_f = |a: u64, b: u64, s: u64| (10 * a * b + 9 * b * b) * s * s;
    let flops = 27 * c1 * h * h
        + cell_f(c1, c1, h)
        + res_f(c1, c2, h / 2)
        + cell_f(c2, c3, h / 2)
        + res_f(c3, c4, h / 4)
        + cell_f(c4, c5, h / 4)
        + c5 * k
        + k;
    (params, flops)
}

#[test]
fn counts_match_the_closed_form_on_every_arch() {
    for (_, arch) in size_benchmark_archs() {
        let widths = arch.widths().map(|w| w as u64);
        for shape in [CIFAR10, CIFAR100, IMAGENET16_120] {
            assert_eq!(
                (arch.params(shape), arch.flops(shape)),
                closed_form(widths, shape),
                "{arch} {shape:?}"
            );
        }
    }
}

#[test]
fn counts_rise_with_every_width_step() {
    // A5: both rise strictly with every +8 step of any position.
    for (_, arch) in size_benchmark_archs() {
        for position in 0..5 {
            let mut widths = arch.widths();
            if widths[position] == 64 {
                continue;
            }
            widths[position] += 8;
            let wider = SizeArch::new(widths).unwrap();
            for shape in [CIFAR10, CIFAR100, IMAGENET16_120] {
                assert!(
                    arch.params(shape) < wider.params(shape),
                    "{arch} -> {wider}"
                );
                assert!(arch.flops(shape) < wider.flops(shape), "{arch} -> {wider}");
            }
        }
    }
}

#[test]
fn params_match_every_row_of_the_dev_sample() {
    let Some(dir) = common::shared_data("nats_sss accuracy_dev.csv params") else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("nats_sss/accuracy_dev.csv"))
        .expect("read nats_sss/accuracy_dev.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let (index_col, arch_col, params_col) = (col("index"), col("arch"), col("params"));
    let mut rows = 0;
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let index: usize = fields[index_col].parse().expect("index");
        let arch = parse(fields[arch_col]);
        assert_eq!(arch.index(), index, "{line}");
        // The params column is the CIFAR-10 head's (data/README.md), in units.
        let params: u64 = fields[params_col].parse().expect("params");
        assert_eq!(arch.params(CIFAR10), params, "{line}");
        rows += 1;
    }
    assert_eq!(rows, 2_000);
}

#[test]
fn bad_strings_say_what_is_allowed() {
    let allowed = "8, 16, 24, 32, 40, 48, 56, 64";
    let cases = [
        ("8:8:8:8", SizeArchParseError::PositionCount { found: 4 }),
        (
            "8:8:8:8:8:8",
            SizeArchParseError::PositionCount { found: 6 },
        ),
        ("", SizeArchParseError::PositionCount { found: 1 }),
        (
            "8:8:8:8:12",
            SizeArchParseError::BadWidth {
                position: 5,
                text: "12".into(),
            },
        ),
        (
            "64:64:64:64:72",
            SizeArchParseError::BadWidth {
                position: 5,
                text: "72".into(),
            },
        ),
        (
            "0:8:8:8:8",
            SizeArchParseError::BadWidth {
                position: 1,
                text: "0".into(),
            },
        ),
        // One spelling per arch: its string is its dedup key.
        (
            "08:8:8:8:8",
            SizeArchParseError::BadWidth {
                position: 1,
                text: "08".into(),
            },
        ),
        (
            "8:+8:8:8:8",
            SizeArchParseError::NotANumber {
                position: 2,
                text: "+8".into(),
            },
        ),
        (
            "8:8: 8:8:8",
            SizeArchParseError::NotANumber {
                position: 3,
                text: " 8".into(),
            },
        ),
        (
            "8:8:8:x:8",
            SizeArchParseError::NotANumber {
                position: 4,
                text: "x".into(),
            },
        ),
        (
            "8:8:8:8:",
            SizeArchParseError::NotANumber {
                position: 5,
                text: "".into(),
            },
        ),
        (
            "8:8:8:8:99999999999999999999999",
            SizeArchParseError::BadWidth {
                position: 5,
                text: "99999999999999999999999".into(),
            },
        ),
    ];
    for (text, expected) in cases {
        let e = text.parse::<SizeArch>().expect_err(text);
        assert_eq!(e, expected, "{text:?}");
        let msg = e.to_string();
        assert!(msg.contains(allowed), "{text:?}: {msg}");
    }
    let msg = "8:8:8:8".parse::<SizeArch>().unwrap_err().to_string();
    assert!(msg.contains("expected 5 widths separated by `:`"), "{msg}");
    assert!(msg.contains("found 4"), "{msg}");
    let msg = "8:8:8:8:12".parse::<SizeArch>().unwrap_err().to_string();
    assert!(msg.contains("position 5: width 12 is not allowed"), "{msg}");
}
