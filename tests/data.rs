//! The data layer against the real files in ../shared/data (when present), hand-made
//! files for the error paths, and statistical checks of sampling and synthetic inputs.
//! Expected values come from the file format, the spec's constants or the files themselves.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::PathBuf;

use nasrank::data::{
    read_nb201_train_records, synthetic_batch, DataError, Dataset, ImageSet, Split,
};

/// CIFAR-10 record: 1 label byte and 3 planes of 32x32 bytes.
const CIFAR10_RECORD: usize = 3073;
/// CIFAR-100 record: coarse label, fine label, pixels.
const CIFAR100_RECORD: usize = 3074;
const PLANE: usize = 32 * 32;

/// A fresh directory under the system temp dir, unique to this process and test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nasrank-data-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// CIFAR-10 records with the given labels, pixel bytes all equal to the record number.
fn cifar10_bytes(labels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, &label) in labels.iter().enumerate() {
        bytes.push(label);
        bytes.extend(std::iter::repeat_n(i as u8, 3 * PLANE));
    }
    bytes
}

/// The CIFAR-10 normalisation of the spec, written out here: (byte/255 - mean)/std.
fn cifar10_normalised(channel: usize, byte: u8) -> f64 {
    let mean = [125.3, 123.0, 113.9][channel] / 255.0;
    let std = [63.0, 62.1, 66.7][channel] / 255.0;
    (f64::from(byte) / 255.0 - mean) / std
}

#[test]
fn dataset_names_shapes_and_constants() {
    assert_eq!("cifar10".parse::<Dataset>().unwrap(), Dataset::Cifar10);
    assert_eq!("CIFAR100".parse::<Dataset>().unwrap(), Dataset::Cifar100);
    assert_eq!(
        "imagenet16-120".parse::<Dataset>().unwrap(),
        Dataset::ImageNet16_120
    );
    for d in Dataset::ALL {
        assert_eq!(d.to_string().parse::<Dataset>().unwrap(), d);
    }
    let err = "cifar".parse::<Dataset>().unwrap_err();
    assert!(matches!(err, DataError::UnknownDataset(ref s) if s == "cifar"));
    assert!(err.to_string().contains("imagenet16-120"), "{err}");

    let shape = |d: Dataset| (d.classes(), d.image_size(), d.pixels_per_image());
    assert_eq!(shape(Dataset::Cifar10), (10, 32, 3072));
    assert_eq!(shape(Dataset::Cifar100), (100, 32, 3072));
    assert_eq!(shape(Dataset::ImageNet16_120), (120, 16, 768));

    assert_eq!(Dataset::Cifar100.mean()[1], 124.1 / 255.0);
    assert_eq!(Dataset::Cifar100.std()[2], 70.4 / 255.0);
    assert_eq!(Dataset::ImageNet16_120.mean()[0], 122.68 / 255.0);
    assert_eq!(Dataset::ImageNet16_120.std()[1], 61.26 / 255.0);
}

#[test]
fn cifar10_real_files() {
    let Some(data) = common::shared_data("CIFAR-10 files") else {
        return;
    };
    let dir = data.join("cifar10");
    let train = ImageSet::load(Dataset::Cifar10, &dir, Split::Train).unwrap();
    let test = ImageSet::load(Dataset::Cifar10, &dir, Split::Test).unwrap();
    assert_eq!((train.len, test.len), (5085, 1017));

    for (set, (lo, hi)) in [(&train, (400, 620)), (&test, (60, 145))] {
        assert_eq!(set.labels.len(), set.len);
        assert_eq!(set.images.len(), set.len * 3072);
        // Classes are balanced in CIFAR-10: each near a tenth of the set.
        let mut histogram = [0usize; 10];
        for &label in &set.labels {
            histogram[usize::from(label)] += 1;
        }
        assert!(
            histogram.iter().all(|&k| (lo..=hi).contains(&k)),
            "{histogram:?}"
        );
    }

    // Against the raw bytes: the first and the last record, in one batch.
    let raw = fs::read(dir.join("train.bin")).unwrap();
    let last = train.len - 1;
    let batch = train.batch(&[0, last]).unwrap();
    assert_eq!((batch.n, batch.c, batch.h, batch.w), (2, 3, 32, 32));
    for (slot, record) in [(0, 0), (1, last)] {
        let base = record * CIFAR10_RECORD;
        assert_eq!(batch.labels[slot], usize::from(raw[base]));
        for (ch, y, x) in [(0, 0, 0), (0, 5, 17), (1, 31, 0), (2, 12, 31), (2, 31, 31)] {
            let byte = raw[base + 1 + ch * PLANE + y * 32 + x];
            let got = batch.image(slot)[ch * PLANE + y * 32 + x];
            let want = cifar10_normalised(ch, byte);
            assert!(
                (f64::from(got) - want).abs() < 1e-5,
                "record {record} ({ch},{y},{x}): {got} vs {want}"
            );
        }
    }
    for (record, &label) in train.labels.iter().enumerate() {
        assert_eq!(label, raw[record * CIFAR10_RECORD], "record {record}");
    }

    // A file path is read whatever the split.
    let file = ImageSet::load(Dataset::Cifar10, dir.join("test.bin"), Split::Train).unwrap();
    assert_eq!(file.labels, test.labels);
    assert_eq!(file.images, test.images);
}

#[test]
fn cifar100_real_file_uses_fine_labels() {
    let Some(data) = common::shared_data("CIFAR-100 file") else {
        return;
    };
    let dir = data.join("cifar100");
    let set = ImageSet::load(Dataset::Cifar100, &dir, Split::Test).unwrap();
    assert_eq!(set.len, 916);
    let raw = fs::read(dir.join("test.bin")).unwrap();
    // The fine label must differ from the coarse one somewhere, or this would not tell them apart.
    assert!((0..set.len).any(|r| raw[r * CIFAR100_RECORD] != raw[r * CIFAR100_RECORD + 1]));
    for (record, &label) in set.labels.iter().enumerate() {
        assert_eq!(label, raw[record * CIFAR100_RECORD + 1], "record {record}");
        assert!(label < 100);
    }
    assert_eq!(
        set.image(915),
        &raw[915 * CIFAR100_RECORD + 2..916 * CIFAR100_RECORD]
    );
    // About 9 images per class: nearly every class appears.
    let classes: HashSet<u8> = set.labels.iter().copied().collect();
    assert!(classes.len() >= 95, "{} classes", classes.len());
}

#[test]
fn nb201_train_records_match_the_csv() {
    let Some(data) = common::shared_data("train_index.csv") else {
        return;
    };
    let path = data.join("cifar10/train_index.csv");
    let text = fs::read_to_string(&path).unwrap();
    let expected: Vec<usize> = text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            (f[2] == "1").then(|| f[0].parse().unwrap())
        })
        .collect();
    let records = read_nb201_train_records(&path).unwrap();
    assert_eq!(records, expected);
    assert!(!records.is_empty() && records.len() < 5085);

    let train = ImageSet::load(Dataset::Cifar10, data.join("cifar10"), Split::Train).unwrap();
    let batch = train.sample(128, 1, Some(&records)).unwrap();
    assert_eq!(batch.n, 128);
    assert_eq!(batch.images.len(), 128 * 3 * 32 * 32);
    let err = train
        .sample(records.len() + 1, 1, Some(&records))
        .unwrap_err();
    assert!(
        matches!(err, DataError::NotEnoughImages { available, .. } if available == records.len()),
        "{err}"
    );
}

#[test]
fn train_index_errors_name_the_line() {
    let dir = temp_dir("index");
    let path = dir.join("index.csv");
    fs::write(
        &path,
        "record,cifar10_train_index,in_nb201_train_split\n0,0,1\n1,1,2\n",
    )
    .unwrap();
    let err = read_nb201_train_records(&path).unwrap_err();
    assert!(
        matches!(err, DataError::BadIndexFile { line: 3, .. }),
        "{err}"
    );
    fs::write(&path, "record,split\n0,1\n").unwrap();
    let err = read_nb201_train_records(&path).unwrap_err();
    assert!(err.to_string().contains("in_nb201_train_split"), "{err}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn truncated_empty_and_missing_files() {
    let dir = temp_dir("sizes");
    let path = dir.join("half.bin");
    let bytes = cifar10_bytes(&[3, 4]);
    fs::write(&path, &bytes[..CIFAR10_RECORD + CIFAR10_RECORD / 2]).unwrap();
    let err = ImageSet::load(Dataset::Cifar10, &path, Split::Train).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                size: 4609,
                record_len: 3073,
                records: 1,
                leftover: 1536,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    for part in [
        "truncated",
        "4609",
        "3073",
        "1 whole record",
        "1536",
        "half.bin",
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }

    // Read as CIFAR-100 (3,074-byte records), the same 4,609 bytes leave 1,535 over.
    let err = ImageSet::load(Dataset::Cifar100, &path, Split::Train).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                records: 1,
                leftover: 1535,
                ..
            }
        ),
        "{err:?}"
    );

    let empty = dir.join("empty.bin");
    fs::write(&empty, b"").unwrap();
    let err = ImageSet::load(Dataset::Cifar10, &empty, Split::Test).unwrap_err();
    assert!(matches!(err, DataError::EmptyFile { .. }), "{err:?}");
    assert!(err.to_string().contains("empty.bin"), "{err}");

    let nowhere = dir.join("nowhere.bin");
    let err = ImageSet::load(Dataset::Cifar10, &nowhere, Split::Test).unwrap_err();
    assert!(
        matches!(err, DataError::MissingFile { ref path } if *path == nowhere),
        "{err:?}"
    );
    assert!(err.to_string().contains("nowhere.bin"), "{err}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn directory_rules_and_their_errors() {
    let dir = temp_dir("dirs");
    let names = |err: &DataError| err.to_string();

    let err = ImageSet::load(Dataset::Cifar10, &dir, Split::Train).unwrap_err();
    assert!(matches!(err, DataError::MissingInDir { .. }), "{err:?}");
    assert!(names(&err).contains("train.bin") && names(&err).contains("data_batch_1.bin"));
    let err = ImageSet::load(Dataset::Cifar10, &dir, Split::Test).unwrap_err();
    assert!(names(&err).contains("test.bin") && names(&err).contains("test_batch.bin"));
    let err = ImageSet::load(Dataset::Cifar100, &dir, Split::Train).unwrap_err();
    assert!(names(&err).contains("train.bin") && names(&err).contains("cifar100"));

    // Official CIFAR-10 names: all five training batches, concatenated in order.
    for i in 1..=4u8 {
        fs::write(
            dir.join(format!("data_batch_{i}.bin")),
            cifar10_bytes(&[i, i]),
        )
        .unwrap();
    }
    let err = ImageSet::load(Dataset::Cifar10, &dir, Split::Train).unwrap_err();
    assert!(names(&err).contains("absent: data_batch_5.bin"), "{err}");
    fs::write(dir.join("data_batch_5.bin"), cifar10_bytes(&[5, 5])).unwrap();
    let set = ImageSet::load(Dataset::Cifar10, &dir, Split::Train).unwrap();
    assert_eq!(set.labels, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);

    fs::write(dir.join("test_batch.bin"), cifar10_bytes(&[9])).unwrap();
    let set = ImageSet::load(Dataset::Cifar10, &dir, Split::Test).unwrap();
    assert_eq!(set.labels, [9]);

    // The shared layout's name wins; a wrong-sized one is reported by name, not skipped.
    fs::write(dir.join("train.bin"), vec![0u8; 100]).unwrap();
    let err = ImageSet::load(Dataset::Cifar10, &dir, Split::Train).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                size: 100,
                records: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(names(&err).contains("train.bin"), "{err}");

    // CIFAR's names are not ImageNet16-120's (tests/imagenet16.rs reads those).
    let err = ImageSet::load(Dataset::ImageNet16_120, &dir, Split::Train).unwrap_err();
    assert!(matches!(err, DataError::MissingInDir { .. }), "{err:?}");
    assert!(names(&err).contains("train_data_batch_1"), "{err}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn labels_out_of_range_name_the_record() {
    let dir = temp_dir("labels");
    let path = dir.join("bad.bin");
    fs::write(&path, cifar10_bytes(&[9, 0, 10])).unwrap();
    let err = ImageSet::load(Dataset::Cifar10, &path, Split::Test).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                record: 2,
                label: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("record 2") && err.to_string().contains("label 10"));

    // CIFAR-100: the coarse label may be anything below 20, the fine one is checked.
    let mut record = vec![19u8, 99];
    record.extend([7u8; 3072]);
    fs::write(&path, &record).unwrap();
    let set = ImageSet::load(Dataset::Cifar100, &path, Split::Test).unwrap();
    assert_eq!(set.labels, [99]);
    record[1] = 100;
    fs::write(&path, &record).unwrap();
    let err = ImageSet::load(Dataset::Cifar100, &path, Split::Test).unwrap_err();
    assert!(matches!(
        err,
        DataError::LabelOutOfRange {
            record: 0,
            label: 100,
            ..
        }
    ));
    fs::remove_dir_all(dir).unwrap();
}

/// 50 CIFAR-10 images; every pixel of image i is the byte i.
fn numbered_set() -> ImageSet {
    let len = 50;
    ImageSet {
        dataset: Dataset::Cifar10,
        images: (0..len)
            .flat_map(|i| std::iter::repeat_n(i as u8, 3072))
            .collect(),
        labels: (0..len).map(|i| (i % 10) as u8).collect(),
        len,
    }
}

/// The records of a batch of [`numbered_set`], decoded from the red plane with the spec's constants.
fn records_of(batch: &nasrank::data::Batch) -> Vec<usize> {
    (0..batch.n)
        .map(|i| (f64::from(batch.image(i)[0]) * 63.0 + 125.3).round() as usize)
        .collect()
}

#[test]
fn sampling_is_seeded_distinct_and_honours_the_subset() {
    let set = numbered_set();
    let a = set.sample(20, 7, None).unwrap();
    assert_eq!(a, set.sample(20, 7, None).unwrap());
    assert_ne!(
        records_of(&a),
        records_of(&set.sample(20, 8, None).unwrap())
    );

    let records = records_of(&a);
    let distinct: BTreeSet<usize> = records.iter().copied().collect();
    assert_eq!(distinct.len(), 20, "{records:?}");
    assert!(distinct.iter().all(|&r| r < 50));
    for (i, &r) in records.iter().enumerate() {
        assert_eq!(a.labels[i], r % 10);
        // Every plane of the image holds its byte, normalised per channel.
        for ch in 0..3 {
            let want = cifar10_normalised(ch, r as u8);
            assert!((f64::from(a.image(i)[ch * PLANE + 77]) - want).abs() < 1e-5);
        }
    }

    // All 50 drawn: a permutation.
    let all: BTreeSet<usize> = records_of(&set.sample(50, 3, None).unwrap())
        .into_iter()
        .collect();
    assert_eq!(all, (0..50).collect());

    let subset = [3, 7, 11, 20, 42, 49];
    for seed in 0..20 {
        let got: BTreeSet<usize> = records_of(&set.sample(4, seed, Some(&subset)).unwrap())
            .into_iter()
            .collect();
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|r| subset.contains(r)), "{got:?}");
    }
    let whole: BTreeSet<usize> = records_of(&set.sample(6, 0, Some(&subset)).unwrap())
        .into_iter()
        .collect();
    assert_eq!(whole, subset.into_iter().collect());
}

#[test]
fn sampling_is_uniform_over_records() {
    // 2,000 draws of 5 among 50: each record about 200 times (sd ~13).
    let set = numbered_set();
    let mut counts = [0usize; 50];
    for seed in 0..2000 {
        for r in records_of(&set.sample(5, seed, None).unwrap()) {
            counts[r] += 1;
        }
    }
    assert!(
        counts.iter().all(|&k| (140..=260).contains(&k)),
        "{counts:?}"
    );
}

#[test]
fn sampling_errors_instead_of_panicking() {
    let set = numbered_set();
    let err = set.sample(51, 0, None).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::NotEnoughImages {
                requested: 51,
                available: 50
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("51") && err.to_string().contains("50"));
    let err = set.sample(3, 0, Some(&[1, 2])).unwrap_err();
    assert!(matches!(
        err,
        DataError::NotEnoughImages {
            requested: 3,
            available: 2
        }
    ));
    let err = set.sample(1, 0, Some(&[1, 50])).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::RecordOutOfRange {
                record: 50,
                len: 50
            }
        ),
        "{err:?}"
    );
    let err = set.sample(2, 0, Some(&[4, 9, 4])).unwrap_err();
    assert!(
        matches!(err, DataError::DuplicateRecord { record: 4 }),
        "{err:?}"
    );
    let err = set.batch(&[0, 60]).unwrap_err();
    assert!(
        matches!(err, DataError::RecordOutOfRange { record: 60, .. }),
        "{err:?}"
    );
    assert_eq!(set.sample(0, 0, None).unwrap().n, 0);
}

#[test]
fn synthetic_batches_are_standard_normal_and_seeded() {
    let b = synthetic_batch(64, 3, 16, 16, 120, 11);
    assert_eq!((b.n, b.c, b.h, b.w), (64, 3, 16, 16));
    assert_eq!(b.images.len(), 64 * 3 * 16 * 16);
    assert!(b.labels.iter().all(|&l| l < 120));

    // 49,152 values: the mean's sd is ~0.0045, the std's ~0.0032.
    let n = b.images.len() as f64;
    let mean = b.images.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = b
        .images
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(mean.abs() < 0.03, "mean {mean}");
    assert!((var.sqrt() - 1.0).abs() < 0.03, "std {}", var.sqrt());
    // Gaussian shape, not just its moments: P(|z| < 1) = 0.6827.
    let inside = b.images.iter().filter(|v| v.abs() < 1.0).count() as f64 / n;
    assert!((inside - 0.6827).abs() < 0.01, "{inside}");

    assert_eq!(b, synthetic_batch(64, 3, 16, 16, 120, 11));
    let other = synthetic_batch(64, 3, 16, 16, 120, 12);
    assert_ne!(b.images, other.images);
    assert_ne!(b.labels, other.labels);

    // Labels uniform: 2,000 over 10 classes, about 200 each.
    let labels = synthetic_batch(2000, 1, 1, 1, 10, 5).labels;
    let mut counts = [0usize; 10];
    for l in labels {
        counts[l] += 1;
    }
    assert!(
        counts.iter().all(|&k| (140..=260).contains(&k)),
        "{counts:?}"
    );

    // An odd number of values (Box-Muller yields pairs).
    assert_eq!(synthetic_batch(1, 1, 3, 3, 2, 0).images.len(), 9);
    let imagenet = Dataset::ImageNet16_120.synthetic_batch(4, 0);
    assert_eq!((imagenet.c, imagenet.h, imagenet.w), (3, 16, 16));
    assert!(imagenet.labels.iter().all(|&l| l < 120));
}
