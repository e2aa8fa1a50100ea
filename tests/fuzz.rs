//! Bounded fuzzing of every parser a user's input reaches (issue 25): arch strings of both
//! spaces and `--archs` specs (100,000 each), results files, accuracy tables, CIFAR binary files and
//! ImageNet16 pickles (10,000 each), drawn from a fixed seed so that a failure repeats. No input may panic;
//! a parsed arch string prints back to itself. `NASRANK_FUZZ_SCALE=K` multiplies the counts
//! for a longer run (`NASRANK_FUZZ_SCALE=100 cargo test --release --test fuzz`).

use nasrank::data::{Dataset, ImageSet, Split, SplitMix64};
use nasrank::eval::table::Table;
use nasrank::run::archs::{parse_archs, parse_space_arch};
use nasrank::space::{Arch, SizeArch, Space};
use nasrank::store::{read_rows, Format};
use std::path::PathBuf;

fn scale() -> usize {
    std::env::var("NASRANK_FUZZ_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nasrank-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A random string of arch-like tokens and stray bytes.
fn tokens(rng: &mut SplitMix64, pieces: &[&str], max: usize) -> String {
    let n = rng.below(max as u64) as usize;
    let mut s = String::new();
    for _ in 0..n {
        if rng.below(10) == 0 {
            s.push(char::from_u32(rng.below(0x250) as u32).unwrap_or('?'));
        } else {
            s.push_str(pieces[rng.below(pieces.len() as u64) as usize]);
        }
    }
    s
}

const ARCH_PIECES: &[&str] = &[
    "|",
    "|",
    "+",
    "~",
    "0",
    "1",
    "2",
    "3",
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
    " ",
    "\n",
    "~0|",
    "|+|",
];

#[test]
fn arch_strings_never_panic_and_parsed_ones_print_back() {
    let mut rng = SplitMix64::new(1);
    let valid = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";
    let mut parsed = 0;
    for _ in 0..100_000 * scale() {
        let text = if rng.below(3) == 0 {
            // A valid string with one piece replaced, inserted or removed.
            let mut chars: Vec<char> = valid.chars().collect();
            let at = rng.below(chars.len() as u64) as usize;
            match rng.below(3) {
                0 => chars[at] = ARCH_PIECES[rng.below(5) as usize].chars().next().unwrap(),
                1 => chars.insert(at, '|'),
                _ => {
                    chars.remove(at);
                }
            }
            chars.into_iter().collect()
        } else {
            tokens(&mut rng, ARCH_PIECES, 40)
        };
        if let Ok(arch) = text.parse::<Arch>() {
            parsed += 1;
            assert_eq!(arch.to_string().parse::<Arch>(), Ok(arch), "{text:?}");
        }
    }
    assert!(
        parsed > 0,
        "no generated string parsed: the generator misses the grammar"
    );
}

#[test]
fn sss_arch_strings_never_panic_and_parsed_ones_print_back() {
    let pieces = [
        "8",
        "16",
        "24",
        "64",
        "72",
        "0",
        "08",
        ":",
        ":",
        " ",
        "+",
        "-",
        "x",
        "|",
        "99999999999999999999",
    ];
    let mut rng = SplitMix64::new(3);
    let mut parsed = 0;
    for _ in 0..100_000 * scale() {
        let text = if rng.below(3) == 0 {
            // A valid string with one position replaced by a piece.
            let mut widths: Vec<String> = (0..5)
                .map(|_| (8 * (1 + rng.below(8))).to_string())
                .collect();
            let at = rng.below(5) as usize;
            widths[at] = pieces[rng.below(pieces.len() as u64) as usize].to_string();
            widths.join(":")
        } else {
            tokens(&mut rng, &pieces, 12)
        };
        if let Ok(arch) = text.parse::<SizeArch>() {
            parsed += 1;
            // One spelling per arch: what parses is what prints.
            assert_eq!(arch.to_string(), text);
        }
        let _ = parse_space_arch(Space::Sss, &text);
    }
    assert!(
        parsed > 0,
        "no generated string parsed: the generator misses the grammar"
    );
}

#[test]
fn archs_specs_never_panic() {
    let pieces = [
        "0",
        "1",
        "9",
        "15624",
        "15625",
        "..",
        ",",
        " ",
        "all",
        "-",
        "x",
        "|",
        "00",
        "99999999999999999999",
    ];
    let mut rng = SplitMix64::new(2);
    for _ in 0..100_000 * scale() {
        let spec = tokens(&mut rng, &pieces, 8);
        if let Ok(archs) = parse_archs(&spec) {
            assert!(!archs.is_empty() || spec.trim().is_empty(), "{spec:?}");
        }
    }
}

/// Flips, drops, duplicates and inserts bytes of `base`.
fn mutate(rng: &mut SplitMix64, base: &[u8]) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            bytes.push(b',');
        }
        let at = rng.below(bytes.len() as u64) as usize;
        match rng.below(5) {
            0 => bytes[at] = rng.below(256) as u8,
            1 => {
                bytes.remove(at);
            }
            2 => bytes.insert(at, [b',', b'\n', b'"', b'-', b'.'][rng.below(5) as usize]),
            3 => bytes.truncate(at),
            _ => {
                let end = (at + 1 + rng.below(20) as usize).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
        }
    }
    bytes
}

#[test]
fn results_files_and_accuracy_tables_never_panic() {
    let results = b"index,arch,unique,naswot,seconds,scored_as\n\
1,|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|,k1,37.4,0.02,1\n\
0,|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|,k0,-inf,0.01,dead\n";
    let jsonl = b"{\"arch\":\"|none~0|+|none~0|none~1|+|none~0|none~1|none~2|\",\"index\":1651,\"naswot\":\"-inf\",\"scored_as\":\"dead\",\"seconds\":0.0,\"unique\":\"#\"}\n";
    let table = b"index,arch,cifar10_test\n1,a,50.5\n2,b,NaN\n3,c,\n";
    let path = scratch("file.txt");
    let scores = vec!["naswot".to_string()];
    let mut rng = SplitMix64::new(3);
    for _ in 0..10_000 * scale() {
        std::fs::write(&path, mutate(&mut rng, results)).unwrap();
        let _ = read_rows(&path, Format::Csv, &scores);
        std::fs::write(&path, mutate(&mut rng, jsonl)).unwrap();
        let _ = read_rows(&path, Format::Jsonl, &scores);
        std::fs::write(&path, mutate(&mut rng, table)).unwrap();
        let _ = Table::read(&path);
    }
}

#[test]
fn cifar_binary_files_never_panic() {
    let dir = scratch("cifar");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("train.bin");
    let mut rng = SplitMix64::new(4);
    for k in 0..10_000 * scale() {
        // Lengths around whole records of either dataset, and random bytes.
        let record = if k % 2 == 0 { 3073 } else { 3074 };
        let len = match rng.below(3) {
            0 => record * (rng.below(3) as usize),
            1 => record * (1 + rng.below(2) as usize) + rng.below(5) as usize - 2,
            _ => rng.below(10_000) as usize,
        };
        let bytes: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        std::fs::write(&file, &bytes).unwrap();
        for dataset in [Dataset::Cifar10, Dataset::Cifar100] {
            if let Ok(images) = ImageSet::load(dataset, &dir, Split::Train) {
                let _ = images.sample(2, 0, None);
            }
        }
    }
}

#[test]
fn imagenet16_pickles_never_panic() {
    // The committed fake set: every protocol the reader takes, and each malformed kind.
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imagenet16");
    let mut bases = Vec::new();
    for sub in ["dir", "bad"] {
        let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        bases.extend(names.iter().map(|p| std::fs::read(p).unwrap()));
    }
    let file = scratch("val_data");
    let mut rng = SplitMix64::new(5);
    for _ in 0..10_000 * scale() {
        let base = &bases[rng.below(bases.len() as u64) as usize];
        std::fs::write(&file, mutate(&mut rng, base)).unwrap();
        if let Ok(images) = ImageSet::load(Dataset::ImageNet16_120, &file, Split::Test) {
            let _ = images.sample(2, 0, None);
        }
    }
}
