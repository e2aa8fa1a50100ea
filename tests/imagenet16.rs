//! The ImageNet16-120 reader against the fake dataset of tests/fixtures/imagenet16/, made by
//! tests/make_imagenet16_fixture.py. Expected images and labels come from the rules that
//! script documents (restated below), not from the reader: image g of the train files has
//! label TRAIN_LABELS[g % 8] and bytes (3 g + 80 c + 16 h + w) % 256 at x[c, h, w].

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{nasrank, stderr};
use nasrank::data::{DataError, Dataset, ImageSet, Split};

/// Rows of train_data_batch_1..10.
const TRAIN_ROWS: [usize; 10] = [4, 5, 3, 4, 5, 3, 4, 5, 3, 4];
const TRAIN_LABELS: [u16; 8] = [1, 121, 120, 1000, 7, 119, 500, 2];
const VAL_ROWS: usize = 12;
const VAL_LABELS: [u16; 4] = [120, 130, 1, 64];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imagenet16")
}

fn dataset_dir() -> PathBuf {
    fixtures().join("dir")
}

fn bad(name: &str) -> PathBuf {
    fixtures().join("bad").join(name)
}

/// A fresh directory under the system temp dir, unique to this process and test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nasrank-in16-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Train image g's byte at channel c, row h, column w (the script's rule).
fn train_byte(g: usize, c: usize, h: usize, w: usize) -> u8 {
    ((3 * g + 80 * c + 16 * h + w) % 256) as u8
}

/// Val image v's byte at channel c, row h, column w (the script's rule).
fn val_byte(v: usize, c: usize, h: usize, w: usize) -> u8 {
    ((200 + 5 * v + 80 * c + 16 * h + w) % 256) as u8
}

/// The images ImageNet16-120 keeps out of `count` numbered from `first`: (number, class),
/// class = label - 1 for labels 1..120.
fn kept(first: usize, count: usize, label: impl Fn(usize) -> u16) -> Vec<(usize, u8)> {
    (first..first + count)
        .filter(|&i| (1..=120).contains(&label(i)))
        .map(|i| (i, (label(i) - 1) as u8))
        .collect()
}

/// Checks every byte and label of `set` against the images `expected` by rule `byte`.
fn assert_images(
    set: &ImageSet,
    expected: &[(usize, u8)],
    byte: impl Fn(usize, usize, usize, usize) -> u8,
) {
    assert_eq!(set.dataset, Dataset::ImageNet16_120);
    assert_eq!(set.len, expected.len());
    assert_eq!(set.images.len(), expected.len() * 768);
    let labels: Vec<u8> = expected.iter().map(|&(_, class)| class).collect();
    assert_eq!(set.labels, labels);
    for (record, &(number, _)) in expected.iter().enumerate() {
        let image = set.image(record);
        for c in 0..3 {
            for h in 0..16 {
                for w in 0..16 {
                    assert_eq!(
                        image[c * 256 + h * 16 + w],
                        byte(number, c, h, w),
                        "record {record} (image {number}) at ({c},{h},{w})"
                    );
                }
            }
        }
    }
}

#[test]
fn train_split_reads_the_ten_batches_in_order_and_keeps_labels_1_to_120() {
    let set = ImageSet::load(Dataset::ImageNet16_120, dataset_dir(), Split::Train).unwrap();
    let total: usize = TRAIN_ROWS.iter().sum();
    let expected = kept(0, total, |g| TRAIN_LABELS[g % 8]);
    // 40 images, of which labels 121, 1000 and 500 drop 15.
    assert_eq!(expected.len(), 25);
    assert_images(&set, &expected, train_byte);
    // Both ends of the range survive, shifted to 0 and 119.
    assert!(set.labels.contains(&0) && set.labels.contains(&119));
    assert!(set.labels.iter().all(|&l| l < 120));
}

#[test]
fn test_split_is_val_data() {
    let set = ImageSet::load(Dataset::ImageNet16_120, dataset_dir(), Split::Test).unwrap();
    let expected = kept(0, VAL_ROWS, |v| VAL_LABELS[v % 4]);
    assert_eq!(expected.len(), 9);
    assert_images(&set, &expected, val_byte);
}

#[test]
fn each_pickle_protocol_reads_alone_as_a_file() {
    // Batch 1: protocol 2 (Python 2), 9: protocol 5 and 10: protocol 4 (Python 3); a file
    // is read whatever the split.
    for k in [1, 9, 10] {
        let path = dataset_dir().join(format!("train_data_batch_{k}"));
        let set = ImageSet::load(Dataset::ImageNet16_120, &path, Split::Test).unwrap();
        let first: usize = TRAIN_ROWS[..k - 1].iter().sum();
        let expected = kept(first, TRAIN_ROWS[k - 1], |g| TRAIN_LABELS[g % 8]);
        assert!(!expected.is_empty(), "batch {k}");
        assert_images(&set, &expected, train_byte);
    }
}

#[test]
fn batches_are_normalised_with_the_imagenet16_constants() {
    let set = ImageSet::load(Dataset::ImageNet16_120, dataset_dir(), Split::Test).unwrap();
    let batch = set.batch(&[0, 8]).unwrap();
    assert_eq!((batch.n, batch.c, batch.h, batch.w), (2, 3, 16, 16));
    // Spec B4: mean (122.68, 116.66, 104.01)/255, std (63.22, 61.26, 65.09)/255.
    let mean = [122.68, 116.66, 104.01];
    let std = [63.22, 61.26, 65.09];
    // Kept val images 0 and 8 are v = 0 (label 120) and v = 11 (label 64).
    for (slot, v, class) in [(0, 0, 119), (1, 11, 63)] {
        assert_eq!(batch.labels[slot], class);
        for (c, h, w) in [(0, 0, 0), (0, 3, 9), (1, 15, 0), (2, 7, 15), (2, 15, 15)] {
            let want = (f64::from(val_byte(v, c, h, w)) - mean[c]) / std[c];
            let got = f64::from(batch.image(slot)[c * 256 + h * 16 + w]);
            assert!((got - want).abs() < 1e-5, "({c},{h},{w}): {got} vs {want}");
        }
    }
}

#[test]
fn dataset_name_and_alias() {
    assert_eq!(
        "imagenet16".parse::<Dataset>().unwrap(),
        Dataset::ImageNet16_120
    );
    assert_eq!(
        "ImageNet16-120".parse::<Dataset>().unwrap(),
        Dataset::ImageNet16_120
    );
    let err = "imagenet32".parse::<Dataset>().unwrap_err();
    assert!(err.to_string().contains("imagenet16"), "{err}");
}

/// The error of loading `path` as ImageNet16-120, which must name the file.
fn load_error(path: &Path) -> DataError {
    let err = ImageSet::load(Dataset::ImageNet16_120, path, Split::Train).unwrap_err();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.to_string().contains(&name), "{name} not in {err}");
    err
}

#[test]
fn malformed_files_are_errors_naming_the_file_and_what_was_expected() {
    let err = load_error(&bad("truncated"));
    assert!(matches!(err, DataError::BadPickle { .. }), "{err:?}");
    assert!(err.to_string().contains("ends early (truncated?)"), "{err}");

    // A known limit of the decoder, reported with the way round it.
    let err = load_error(&bad("protocol0"));
    assert!(matches!(err, DataError::BadPickle { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("protocol 0"), "{message}");
    assert!(
        message.contains("re-save the file with protocol 2"),
        "{message}"
    );
    // The decoder quotes the whole array text; the message stays one short line.
    assert!(message.len() < 600, "{} bytes: {message}", message.len());

    for (name, expected, found) in [
        ("list", "a pickled dict", "found a list"),
        ("no_data", "`data` entry", "keys labels, mean"),
        ("float_data", "numpy uint8", "not uint8 (8 bytes each)"),
        ("int16_data", "numpy uint8", "not uint8 (2 bytes each)"),
        (
            "rows_3072",
            "shape (n, 768)",
            "shape (3, 3072): rows of 32x32 images",
        ),
        ("flat_data", "shape (n, 768)", "shape (2304,)"),
        ("fortran", "C order", "Fortran order"),
        ("label_count", "3 labels", "found 2 labels"),
        ("label_text", "list of ints", "byte string at record 0"),
        ("label_zero", "labels in 1..1000", "label 0 at record 1"),
    ] {
        let err = load_error(&bad(name));
        assert!(
            matches!(err, DataError::UnexpectedContent { .. }),
            "{name}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(expected), "{name}: {message}");
        assert!(message.contains(found), "{name}: {message}");
    }

    let err = load_error(&bad("over_120"));
    assert!(
        matches!(err, DataError::NoImageOfTheClasses { read: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("1..120"), "{err}");
}

#[test]
fn missing_empty_and_incomplete_folders_are_errors() {
    let dir = temp_dir("folders");
    let err = load_error(&dir.join("nowhere"));
    assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");

    let empty = dir.join("empty");
    fs::write(&empty, b"").unwrap();
    let err = load_error(&empty);
    assert!(matches!(err, DataError::EmptyFile { .. }), "{err:?}");
    fs::remove_file(&empty).unwrap();

    // A CIFAR binary file is no pickle.
    let cifar = dir.join("cifar.bin");
    fs::write(&cifar, [3u8; 3073]).unwrap();
    let err = load_error(&cifar);
    assert!(matches!(err, DataError::BadPickle { .. }), "{err:?}");
    fs::remove_file(&cifar).unwrap();

    // All batches but the seventh, and no val_data.
    for k in (1..=10).filter(|&k| k != 7) {
        let name = format!("train_data_batch_{k}");
        fs::copy(dataset_dir().join(&name), dir.join(&name)).unwrap();
    }
    let err = ImageSet::load(Dataset::ImageNet16_120, &dir, Split::Train).unwrap_err();
    assert!(matches!(err, DataError::MissingInDir { .. }), "{err:?}");
    assert!(
        err.to_string().contains("absent: train_data_batch_7"),
        "{err}"
    );
    let err = ImageSet::load(Dataset::ImageNet16_120, &dir, Split::Test).unwrap_err();
    assert!(err.to_string().contains("val_data"), "{err}");

    // Ten batches with none of the 120 classes: the error counts the images of all.
    for k in 1..=10 {
        fs::copy(bad("over_120"), dir.join(format!("train_data_batch_{k}"))).unwrap();
    }
    let err = ImageSet::load(Dataset::ImageNet16_120, &dir, Split::Train).unwrap_err();
    assert!(
        matches!(err, DataError::NoImageOfTheClasses { read: 30, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("10 files"), "{err}");
    fs::remove_dir_all(dir).unwrap();
}

/// Counts of `op` in an arch string.
fn ops(arch: &str, op: &str) -> u64 {
    arch.matches(op).count() as u64
}

/// `nasrank score` of archs 0..3 on the fixture folder under the dataset name `name`.
fn score_fixture(name: &str, out: &Path) {
    let data = format!("{name}:{}", dataset_dir().display());
    let run = nasrank(&[
        "score",
        "--archs",
        "0..3",
        "--scores",
        "naswot,synflow,params,flops",
        "--batch",
        "8",
        "--data",
        &data,
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
}

#[test]
fn score_on_the_fixture_dir_runs_a_16x16_120_class_network() {
    let dir = temp_dir("score");
    let out = dir.join("scores.csv");
    score_fixture("imagenet16", &out);
    let text = fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|&h| h == name).unwrap();
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 3);
    for row in &rows {
        let arch = &row[col("arch")];
        for score in ["naswot", "synflow"] {
            let v: f64 = row[col(score)].parse().unwrap();
            assert!(v.is_finite(), "{score} of {arch}: {v}");
        }
        // nb201.md: ImageNet16-120 (120 classes) has 80,456 params plus 243,040 per 3x3
        // conv edge and 28,000 per 1x1 one.
        let params: u64 = row[col("params")].parse().unwrap();
        let want =
            80_456 + 243_040 * ops(arch, "nor_conv_3x3") + 28_000 * ops(arch, "nor_conv_1x1");
        assert_eq!(params, want, "{arch}");
        // FLOPs follow the input size: those `nasrank arch` counts at 16x16, 120 classes.
        let info = nasrank(&[
            "arch",
            arch,
            "--json",
            "--classes",
            "120",
            "--input-size",
            "16",
        ]);
        assert!(info.status.success(), "{}", stderr(&info));
        let info: serde_json::Value = serde_json::from_str(common::stdout(&info).trim()).unwrap();
        assert_eq!(row[col("flops")], info["flops"].to_string(), "{arch}");
        assert_eq!(params, info["params"].as_u64().unwrap(), "{arch}");
    }

    let manifest = dir.join("scores.csv.provenance.json");
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(manifest).unwrap()).unwrap();
    assert_eq!(manifest["data"], "imagenet16-120");
    assert_eq!(manifest["classes"], 120);
    assert_eq!(manifest["input_size"], 16);

    // The benchmark's name reads the same images: the same rows.
    let again = dir.join("again.csv");
    score_fixture("imagenet16-120", &again);
    let without_seconds = |text: &str| -> Vec<String> {
        let lines: Vec<&str> = text.lines().collect();
        let seconds = lines[0].split(',').position(|h| h == "seconds").unwrap();
        lines
            .iter()
            .map(|l| {
                let mut f: Vec<&str> = l.split(',').collect();
                f.remove(seconds);
                f.join(",")
            })
            .collect()
    };
    assert_eq!(
        without_seconds(&text),
        without_seconds(&fs::read_to_string(&again).unwrap())
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cli_data_errors_exit_2_with_a_message() {
    let dir = temp_dir("cli");
    let out = dir.join("never.csv");
    let o = out.to_str().unwrap();
    let nowhere = dir.join("nowhere");
    for (path, needle) in [
        (bad("list"), "found a list".to_owned()),
        (bad("truncated"), "not a readable pickle".to_owned()),
        (bad("protocol0"), "protocol 0".to_owned()),
        (bad("rows_3072"), "shape (3, 3072)".to_owned()),
        (bad("over_120"), "label in 1..120".to_owned()),
        (nowhere.clone(), nowhere.display().to_string()),
        (dir.clone(), "train_data_batch_1".to_owned()),
    ] {
        let data = format!("imagenet16:{}", path.display());
        let run = nasrank(&[
            "score", "--archs", "0..2", "--scores", "naswot", "--batch", "2", "--data", &data,
            "--out", o,
        ]);
        assert_eq!(run.status.code(), Some(2), "{data}: {}", stderr(&run));
        assert!(stderr(&run).contains(&needle), "{data}: {}", stderr(&run));
        assert!(!out.exists(), "{data} left a file behind");
    }
    fs::remove_dir_all(dir).unwrap();
}
