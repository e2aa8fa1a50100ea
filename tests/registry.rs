//! The score registry: each name is wired to its own function, and each entry's declared
//! facts hold (its minibatch is enough, its dead value is what a dead arch gives, docs list
//! it). The reference for the wiring is written out here from docs/SCORES.md, one direct
//! call per score, so that swapping two registry entries fails.

use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::Executor;
use nasrank::data::{synthetic_batch, Batch, Seeds, SplitMix64};
use nasrank::net::Plan;
use nasrank::proxy::registry::{Minibatch, Runs};
use nasrank::proxy::scorer::{score_arch, ScoreSettings};
use nasrank::proxy::swap::SWAP_REINITS;
use nasrank::proxy::{az_nas, meco, swap, synflow, zen, zico, Score};
use nasrank::proxy::{counts, grasp, jacob_cov, knas, linear_regions, naswot, ntk, saliency};
use nasrank::space::{arch_of_index, is_dead, Cell, ClassKey, MacroConfig, Space};

fn settings() -> ScoreSettings {
    let mut s = ScoreSettings::paper_defaults(MacroConfig {
        channels: 3,
        cells_per_stage: 1,
        classes: 10,
        input_size: 8,
        input_channels: 3,
        stem: true,
    });
    s.naswot_batch = 7;
    s.batch = 6;
    s.ntk_batch = 5;
    s.swap_batch = 4;
    s.meco_batch = 2;
    s.seed = 11;
    s
}

/// The score computed by calling its function directly, on a fresh executor.
fn direct(score: Score, cell: &Cell, data: &Batch, s: &ScoreSettings) -> f64 {
    let be = CpuBackend::<f64>::new();
    let plan = Plan::build(cell, &s.config).unwrap();
    let mut exec = Executor::with_init(&be, &plan, s.seed);
    let e = &mut exec;
    match score {
        Score::Naswot => naswot::naswot(e, data, s.naswot_batch),
        Score::Ntk => ntk::ntk_condition(e, data, s.ntk_batch, ntk::NtkMode::FrozenStats),
        Score::NtkExact => ntk::ntk_condition(e, data, s.ntk_batch, ntk::NtkMode::Exact),
        Score::Mgm => knas::mgm(e, data, s.batch),
        Score::MgmTrace => knas::knas(e, data, s.batch).trace,
        Score::MgmEig => knas::knas(e, data, s.batch).top_eigenvalue,
        Score::LinearRegions => linear_regions::linear_regions_released(
            &be,
            cell,
            data,
            s.seed,
            &linear_regions::ReleasedSettings::default(),
        )
        .unwrap(),
        Score::LinearRegionsNet => linear_regions::linear_regions_network(e, data, s.naswot_batch),
        Score::Synflow => synflow::synflow(&plan, s.seed),
        Score::Snip => saliency::saliency(e, data, s.batch).snip,
        Score::GradNorm => saliency::saliency(e, data, s.batch).grad_norm,
        Score::Fisher => saliency::saliency_with(e, data, s.batch, true).fisher,
        Score::Grasp => grasp::grasp(e, data, s.batch),
        Score::JacobCov => jacob_cov::jacob_cov(e, data, s.batch),
        Score::Zico => zico::zico(e, data, s.batch),
        Score::Zen => zen::zen(e, s.batch, s.seed),
        Score::Swap => swap::swap(&be, &plan, data, s.swap_batch, Seeds(s.seed), SWAP_REINITS),
        Score::SwapReg => {
            let reg = swap::SwapRegularizer::space_default(Space::Tss, &s.config);
            swap::swap(&be, &plan, data, s.swap_batch, Seeds(s.seed), SWAP_REINITS)
                * reg.factor(counts::params(cell, &s.config))
        }
        Score::Meco => meco::meco(e, data, s.meco_batch),
        Score::MecoOpt => {
            let mut rng = SplitMix64::new(Seeds(s.seed).meco_channels());
            meco::meco_opt(e, data, s.meco_batch, &mut rng)
        }
        Score::AzExpressivity => az_nas::az_nas(&be, &plan, s.batch, Seeds(s.seed)).expressivity,
        Score::AzProgressivity => az_nas::az_nas(&be, &plan, s.batch, Seeds(s.seed)).progressivity,
        Score::AzTrainability => az_nas::az_nas(&be, &plan, s.batch, Seeds(s.seed)).trainability,
        Score::Params => counts::params(cell, &s.config),
        Score::Flops => counts::flops(cell, &s.config),
    }
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn every_name_computes_its_own_function() {
    let s = settings();
    let data = synthetic_batch(7, 3, 8, 8, 10, 5);
    let be = CpuBackend::<f64>::new();
    for index in [1, 6111] {
        let arch = arch_of_index(index).unwrap();
        let cell = Cell::from(arch);
        for score in Score::ALL {
            let registered = score_arch(&be, arch, &[score], &data, &s).unwrap()[0];
            let want = direct(score, &cell, &data, &s);
            assert!(
                same(registered, want),
                "arch {index} {score}: {registered} vs {want}"
            );
        }
    }
    // The references tell the scores apart, so a swap of two entries would show.
    let arch = arch_of_index(6111).unwrap();
    let values: Vec<f64> = Score::ALL
        .iter()
        .map(|&score| direct(score, &Cell::from(arch), &data, &s))
        .collect();
    for (i, a) in values.iter().enumerate() {
        for (j, b) in values.iter().enumerate().skip(i + 1) {
            let counts = [Score::Params, Score::Flops];
            if !(counts.contains(&Score::ALL[i]) && counts.contains(&Score::ALL[j])) {
                assert!(
                    !same(*a, *b),
                    "{} and {} agree",
                    Score::ALL[i],
                    Score::ALL[j]
                );
            }
        }
    }
}

#[test]
fn each_entry_declares_consistent_facts() {
    let s = settings();
    let mut names: Vec<&str> = Vec::new();
    for score in Score::ALL {
        let info = score.info();
        // Names: unique, lower snake case, parsed back to the same score.
        assert!(!names.contains(&info.name), "{} twice", info.name);
        names.push(info.name);
        assert!(info
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_'));
        assert_eq!(info.name.parse::<Score>(), Ok(score));
        // The declared minibatch is enough: the score runs on exactly that many images.
        let n = s.images_needed(&[score]);
        let want = match info.minibatch {
            Minibatch::Naswot => s.naswot_batch,
            Minibatch::Ntk => s.ntk_batch,
            Minibatch::Gradient => s.batch,
            Minibatch::Swap => s.swap_batch,
            Minibatch::Meco => s.meco_batch,
            Minibatch::None => 1,
        };
        assert_eq!(n, want, "{score}");
        let data = synthetic_batch(n, 3, 8, 8, 10, 2);
        let be = CpuBackend::<f64>::new();
        score_arch(&be, arch_of_index(6111).unwrap(), &[score], &data, &s).unwrap();
        // Counts are keyed by structure (and swap_reg, SWAP times a count); ReLU-code
        // scores by codes.
        match info.class_key {
            ClassKey::Structure if score != Score::SwapReg => {
                assert_eq!(info.runs, Runs::Host, "{score}")
            }
            ClassKey::Codes => assert!(info.dead_value.is_none(), "{score}"),
            _ => {}
        }
    }
}

#[test]
fn declared_dead_values_are_what_dead_archs_give() {
    let s = settings();
    let data = synthetic_batch(7, 3, 8, 8, 10, 3);
    let be = CpuBackend::<f64>::new();
    let dead = arch_of_index(1651).unwrap();
    assert!(is_dead(&dead));
    for score in Score::ALL {
        let computed = score_arch(&be, dead, &[score], &data, &s).unwrap()[0];
        if let Some(value) = score.dead_value() {
            // Equal as numbers: grasp's computed sum is +0 where its declared value is the
            // derivation's -0 (`-sum W * H g`), which results files have always shown.
            let equal = computed == value || (computed.is_nan() && value.is_nan());
            assert!(equal, "{score}: declared {value}, computed {computed}");
        }
    }
}

#[test]
fn docs_scores_table_lists_every_registered_name() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/SCORES.md")).unwrap();
    let table: String = doc
        .lines()
        .skip_while(|l| !l.starts_with("| column |"))
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').nth(1).unwrap_or(""))
        .collect::<Vec<_>>()
        .join(",");
    let documented: Vec<&str> = table
        .split(',')
        .map(|c| c.trim().trim_matches('`'))
        .filter(|c| !c.is_empty() && *c != "column" && !c.starts_with("---"))
        .collect();
    let mut registered: Vec<&str> = Score::ALL.iter().map(|s| s.name()).collect();
    let mut documented_sorted = documented.clone();
    registered.sort_unstable();
    documented_sorted.sort_unstable();
    assert_eq!(documented_sorted, registered);
}

/// A score's image limit is enforced before anything runs: `ScoreSettings::check` refuses a
/// minibatch one above it (the CLI's exit 2) and takes the limit itself. Catches a limit
/// declared but never checked (SWAP's patterns hold at most 64 images).
#[test]
fn image_limits_are_checked() {
    let limited: Vec<Score> = Score::ALL
        .into_iter()
        .filter(|s| s.info().max_images.is_some())
        .collect();
    assert!(limited.contains(&Score::Swap));
    for score in limited {
        let max = score.info().max_images.unwrap();
        let mut s = settings();
        s.set_batch(max);
        assert_eq!(s.check(&[score]), Ok(()), "{score}");
        s.set_batch(max + 1);
        let err = s.check(&[Score::Naswot, score]).unwrap_err();
        assert!(
            err.contains(score.name()) && err.contains(&max.to_string()),
            "{err}"
        );
    }
}
