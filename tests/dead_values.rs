//! Dead archs: the exact values `Score::dead_value` promises equal what the full forward and
//! backward passes (`score_arch`, the ordinary code path) compute on such archs.

use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::Backend;
use nasrank::data::Dataset;
use nasrank::proxy::scorer::{score_arch, score_arch_or_dead_values, ScoreSettings};
use nasrank::proxy::Score;
use nasrank::space::{benchmark_archs, is_dead, Arch, MacroConfig};

fn tiny_settings(seed: u64) -> ScoreSettings {
    let mut settings = ScoreSettings::paper_defaults(MacroConfig {
        channels: 2,
        cells_per_stage: 1,
        ..MacroConfig::NB201_CIFAR10
    });
    settings.set_batch(6);
    settings.seed = seed;
    settings
}

/// Dead archs of different shapes: the first few, and ones whose first cell still runs
/// convs on its input (nodes that feed no path to the output).
fn dead_archs() -> Vec<Arch> {
    let dead: Vec<Arch> = benchmark_archs().map(|(_, a)| a).filter(is_dead).collect();
    assert_eq!(dead.len(), 341, "nb201.md: 341 dead archs");
    let with_convs = dead.iter().filter(|a| a.ops.iter().any(|op| op.is_conv()));
    dead.iter()
        .take(3)
        .chain(with_convs.take(3))
        .copied()
        .collect()
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn check_backend<B: Backend>(be: &B) {
    let with_dead_value: Vec<Score> = Score::ALL
        .into_iter()
        .filter(|s| s.dead_value().is_some())
        .collect();
    assert!(!with_dead_value.is_empty());
    for seed in [0, 7] {
        let settings = tiny_settings(seed);
        let batch = Dataset::Cifar10.synthetic_batch(6, seed + 1);
        for arch in dead_archs() {
            for &score in &with_dead_value {
                let full = score_arch(be, arch, &[score], &batch, &settings).unwrap()[0];
                let dead = score.dead_value().unwrap();
                assert!(
                    same(full, dead),
                    "{score} on dead arch {arch}, seed {seed}: forward {full}, dead value {dead}"
                );
            }
            // Every score at once: the shortcut fills its scores and leaves the others to
            // the forward path.
            let (values, all_dead) =
                score_arch_or_dead_values(be, arch, &Score::ALL, &batch, &settings).unwrap();
            let full = score_arch(be, arch, &Score::ALL, &batch, &settings).unwrap();
            assert!(!all_dead, "naswot has no dead value");
            for ((score, v), f) in Score::ALL.iter().zip(&values).zip(&full) {
                assert!(same(*v, *f), "{score} on {arch}: {v} vs {f}");
            }
            let (_, all_dead) =
                score_arch_or_dead_values(be, arch, &with_dead_value, &batch, &settings).unwrap();
            assert!(all_dead);
        }
    }
}

#[test]
fn dead_values_equal_the_forward_path_in_f32_and_f64() {
    check_backend(&CpuBackend::<f32>::new());
    check_backend(&CpuBackend::<f64>::new());
}

#[test]
fn live_archs_are_never_short_cut() {
    let be = CpuBackend::<f32>::new();
    let settings = tiny_settings(0);
    let batch = Dataset::Cifar10.synthetic_batch(6, 1);
    let scores = [Score::Synflow, Score::Zen, Score::Ntk];
    for (_, arch) in benchmark_archs().filter(|(_, a)| !is_dead(a)).take(3) {
        let (values, all_dead) =
            score_arch_or_dead_values(&be, arch, &scores, &batch, &settings).unwrap();
        assert!(!all_dead);
        for (v, s) in values.iter().zip(scores) {
            assert!(
                Some(*v) != s.dead_value() && v.is_finite(),
                "{s} of live {arch} is {v}"
            );
        }
    }
}
