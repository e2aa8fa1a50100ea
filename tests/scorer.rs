//! The scorer entry point: shared passes give the values each score gives alone.

use nasrank::backend::cpu::CpuBackend;
use nasrank::data::synthetic_batch;
use nasrank::proxy::scorer::{score_arch, ScoreSettings};
use nasrank::proxy::Score;
use nasrank::space::{arch_of_index, MacroConfig};

fn settings() -> ScoreSettings {
    let mut s = ScoreSettings::paper_defaults(MacroConfig {
        channels: 3,
        cells_per_stage: 1,
        classes: 10,
        input_size: 8,
        input_channels: 3,
        stem: true,
    });
    s.set_batch(6);
    s.seed = 4;
    s
}

#[test]
fn every_score_alone_equals_the_same_score_among_all() {
    let be = CpuBackend::<f64>::new();
    let data = synthetic_batch(6, 3, 8, 8, 10, 9);
    let settings = settings();
    for index in [1, 6111, 3] {
        let arch = arch_of_index(index).unwrap();
        let together = score_arch(&be, arch, &Score::ALL, &data, &settings).unwrap();
        for (score, value) in Score::ALL.iter().zip(&together) {
            let alone = score_arch(&be, arch, &[*score], &data, &settings).unwrap()[0];
            let same = (alone.is_nan() && value.is_nan())
                || alone == *value
                || (alone - value).abs() <= 1e-9 * alone.abs().max(1e-300);
            assert!(
                same,
                "arch {index} {score}: alone {alone}, among all {value}"
            );
        }
    }
}

#[test]
fn images_needed_covers_each_scores_batch() {
    let mut s = ScoreSettings::paper_defaults(MacroConfig::NB201_CIFAR10);
    assert_eq!(s.images_needed(&[Score::Naswot, Score::Snip]), 128);
    assert_eq!(s.images_needed(&[Score::Ntk]), 32);
    assert_eq!(s.images_needed(&[Score::Params, Score::Synflow]), 1);
    s.set_batch(10);
    assert_eq!(s.images_needed(&Score::ALL), 10);
}
