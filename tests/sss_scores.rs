//! Scoring the NATS-Bench size space (issue 24): every score defined there runs on its
//! network through the ordinary entry point and gives what a direct call on
//! `Plan::build_sized` gives; counts are the benchmark's; scores of the topology space
//! alone, and options that shape only its network, are refused; `nasrank score --space
//! sss` writes the rows and records the space.
mod common;

use common::{nasrank, stderr, stdout};

use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::Executor;
use nasrank::data::{synthetic_batch, Seeds, SplitMix64};
use nasrank::net::Plan;
use nasrank::proxy::scorer::{score_arch, score_arch_or_dead_values, ScoreSettings};
use nasrank::proxy::{meco, naswot, synflow, Score};
use nasrank::run::data::DataSource;
use nasrank::run::score::ScoreRequest;
use nasrank::run::RunError;
use nasrank::space::{DatasetShape, MacroConfig, SizeArch, Space};

/// A small size-space setting: 8x8 images, batch 6.
fn settings() -> ScoreSettings {
    let mut s = ScoreSettings::paper_defaults(MacroConfig {
        classes: 10,
        input_size: 8,
        ..MacroConfig::NB201_CIFAR10
    });
    s.set_batch(6);
    s.seed = 5;
    s
}

fn arch(text: &str) -> SizeArch {
    text.parse().expect("a size-space arch")
}

#[test]
fn every_size_space_score_runs_on_the_size_network() {
    let be = CpuBackend::<f64>::new();
    let data = synthetic_batch(6, 3, 8, 8, 10, 9);
    let s = settings();
    let sized = arch("8:24:16:40:64");
    let plan = Plan::build_sized(sized.widths(), 10, 8).unwrap();
    let scores: Vec<Score> = Score::ALL
        .into_iter()
        .filter(|score| score.info().spaces.contains(&Space::Sss))
        .collect();
    assert!(
        scores.len() >= 20,
        "{} scores on the size space",
        scores.len()
    );
    let values = score_arch(&be, sized, &scores, &data, &s).unwrap();
    for (score, value) in scores.iter().zip(&values) {
        // Zen's log of a norm, and grasp and jacob_cov on so small a net, may be anything;
        // the rest of a live network are finite.
        if !matches!(score, Score::Zen | Score::JacobCov) {
            assert!(value.is_finite(), "{score}: {value}");
        }
    }
    let value = |score: Score| values[scores.iter().position(|&x| x == score).unwrap()];
    // The direct calls on the size network: the entry point builds the right plan.
    let mut exec = Executor::with_init(&be, &plan, s.seed);
    assert_eq!(
        value(Score::Naswot),
        naswot::naswot(&mut exec, &data, s.naswot_batch)
    );
    assert_eq!(value(Score::Synflow), synflow::synflow(&plan, s.seed));
    let shape = DatasetShape {
        classes: 10,
        input_size: 8,
    };
    assert_eq!(value(Score::Params), sized.params(shape) as f64);
    assert_eq!(value(Score::Flops), sized.flops(shape) as f64);
    // No size-space arch is dead: the scores are computed, not copied from dead values.
    let (_, dead) = score_arch_or_dead_values(&be, sized, &scores, &data, &s).unwrap();
    assert!(!dead);
    // MeCo runs there through the entry point as a direct call does (its values are
    // checked against PyTorch in tests/scores_meco.rs).
    assert_eq!(
        value(Score::Meco),
        meco::meco(&mut exec, &data, s.meco_batch)
    );
    let mut rng = SplitMix64::new(Seeds(s.seed).meco_channels());
    assert_eq!(
        value(Score::MecoOpt),
        meco::meco_opt(&mut exec, &data, s.meco_batch, &mut rng)
    );
    // The one topology-only score is the TE-NAS cell's linear regions.
    let topology_only: Vec<Score> = Score::ALL
        .into_iter()
        .filter(|score| !score.info().spaces.contains(&Space::Sss))
        .collect();
    assert_eq!(topology_only, vec![Score::LinearRegions]);
}

#[test]
fn the_request_refuses_what_the_size_space_does_not_have() {
    let request = |scores: Vec<Score>, channels: usize| ScoreRequest {
        space: Space::Sss,
        channels,
        ..ScoreRequest::new(scores, DataSource::parse("synthetic").unwrap())
    };
    let message = |r: Result<_, RunError>| match r {
        Err(RunError::Input(e)) => format!("{e:#}"),
        Err(other) => panic!("not an input error: {other}"),
        Ok(_) => panic!("accepted"),
    };
    let m = message(request(vec![Score::Naswot, Score::LinearRegions], 16).load());
    assert!(m.contains("linear_regions") && m.contains("sss"), "{m}");
    assert!(request(vec![Score::Meco, Score::MecoOpt], 16)
        .load()
        .is_ok());
    let m = message(request(vec![Score::Naswot], 8).load());
    assert!(m.contains("--channels"), "{m}");
    assert!(request(vec![Score::Naswot], 16).load().is_ok());
}

#[test]
fn score_space_sss_writes_rows_and_records_the_space() {
    let dir = std::env::temp_dir().join(format!("nasrank-sss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("sss.csv");
    let run = nasrank(&[
        "score",
        "--space",
        "sss",
        "--archs",
        "12,8:8:8:8:8,32767",
        "--scores",
        "params,flops",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "index,arch,unique,params,flops,seconds,scored_as");
    // nats_sss.md A5: 12 = 8:8:8:16:40, 0.067378 M params, 7.991706 M FLOPs (CIFAR-10).
    assert!(
        rows[1].starts_with("12,8:8:8:16:40,8:8:8:16:40,67378,7991706,"),
        "{}",
        rows[1]
    );
    assert!(
        rows[2].starts_with("0,8:8:8:8:8,8:8:8:8:8,11714,4481114,"),
        "{}",
        rows[2]
    );
    assert!(rows[3].starts_with("32767,64:64:64:64:64,64:64:64:64:64,713674,274399882,"));
    let manifest = std::fs::read_to_string(dir.join("sss.csv.provenance.json")).unwrap();
    assert!(manifest.contains("\"space\": \"sss\""), "{manifest}");
    // Resuming it as a topology-space run would mix two spaces' rows: refused.
    let resume = nasrank(&[
        "score",
        "--archs",
        "0..3",
        "--scores",
        "params,flops",
        "--quiet",
        "--resume",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(resume.status.code(), Some(2), "{}", stdout(&resume));
    assert!(stderr(&resume).contains("space"), "{}", stderr(&resume));
    // Shards of a size-space run merge with --space sss, and only with it.
    let shards: Vec<String> = (1..=2)
        .map(|i| {
            let path = dir.join(format!("shard{i}.csv"));
            let run = nasrank(&[
                "score",
                "--space",
                "sss",
                "--archs",
                "0..6",
                "--scores",
                "params",
                "--quiet",
                "--shard",
                &format!("{i}/2"),
                "--out",
                path.to_str().unwrap(),
            ]);
            assert!(run.status.success(), "{}", stderr(&run));
            path.to_str().unwrap().to_string()
        })
        .collect();
    let merged = dir.join("merged.csv");
    let merge = |space: &str| {
        nasrank(&[
            "merge",
            &shards[0],
            &shards[1],
            "--space",
            space,
            "--archs",
            "0..6",
            "--out",
            merged.to_str().unwrap(),
        ])
    };
    let wrong = merge("tss");
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("holds sss archs"),
        "{}",
        stderr(&wrong)
    );
    let right = merge("sss");
    assert!(right.status.success(), "{}", stderr(&right));
    assert_eq!(std::fs::read_to_string(&merged).unwrap().lines().count(), 7);
    // bench scores times size-space archs too.
    let bench = nasrank(&[
        "bench", "scores", "--space", "sss", "--archs", "12", "--scores", "params", "--repeat",
        "1", "--json",
    ]);
    assert!(bench.status.success(), "{}", stderr(&bench));
    assert!(
        stdout(&bench).contains("\"arch\":\"8:8:8:16:40\""),
        "{}",
        stdout(&bench)
    );
    // A topology-only score, a width that does not exist: exit 2.
    for args in [
        &[
            "bench",
            "scores",
            "--space",
            "sss",
            "--archs",
            "0",
            "--scores",
            "linear_regions",
        ][..],
        &[
            "score",
            "--space",
            "sss",
            "--archs",
            "0",
            "--scores",
            "linear_regions",
        ][..],
        &["score", "--space", "sss", "--archs", "8:8:8:8:12"][..],
        &["score", "--space", "sss", "--archs", "0..32769"][..],
    ] {
        let run = nasrank(args);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", stderr(&run));
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The archs of a run in the order given, each scored with what the earlier ones left in
/// one worker's cache, against each scored alone: equal to the last bit, and NASWOT
/// resumed where the archs share blocks (position p's width changes the blocks from
/// position p on: stem and cell 0 take C1, the first residual block C2, and so on).
#[test]
fn archs_sharing_blocks_resume_naswot_after_them_with_equal_values() {
    use nasrank::proxy::naswot::KeptBlocks;
    use nasrank::proxy::registry::WorkerCache;
    use nasrank::proxy::scorer::score_arch_kept;
    let be = CpuBackend::<f32>::new();
    let data = synthetic_batch(6, 3, 8, 8, 10, 9);
    let s = settings();
    let scores = [Score::Naswot, Score::Synflow, Score::Snip];
    // (arch, the position of the first width that differs from the arch before: the
    // blocks before it are shared).
    let sequence: [(&str, usize); 8] = [
        ("8:16:24:32:40", 0),
        ("8:16:24:32:48", 4),
        ("8:16:24:40:48", 3),
        ("8:16:32:40:48", 2),
        ("8:24:32:40:48", 1),
        ("16:24:32:40:48", 0),
        ("16:24:32:40:48", 5),
        ("8:16:24:32:40", 0),
    ];
    let mut kept = WorkerCache::for_space(Space::Sss);
    let mut direct = KeptBlocks::<CpuBackend<f32>>::default();
    for (text, first_change) in sequence {
        let sized = arch(text);
        let alone = score_arch(&be, sized, &scores, &data, &s).unwrap();
        let resumed = score_arch_kept(&be, sized, &scores, &data, &s, &mut kept).unwrap();
        assert_eq!(
            alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            resumed.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{text}: {alone:?} alone, {resumed:?} resumed"
        );
        // The same pass through the kernel itself: where it resumed. The boundaries are
        // the outputs of cell 0, block 1, cell 2, block 3, cell 4: position p's blocks
        // start after boundary p - 1.
        let plan = Plan::build_sized(sized.widths(), 10, 8).unwrap();
        let boundaries = plan.block_boundaries();
        assert_eq!(boundaries.len(), 5, "{text}");
        let mut exec = Executor::with_init(&be, &plan, s.seed);
        let k = naswot::naswot_kernel_kept(
            &mut exec,
            &data,
            s.naswot_batch,
            naswot::CodeCount::Paper,
            &mut direct,
        );
        let mut fresh = Executor::with_init(&be, &plan, s.seed);
        let full =
            naswot::naswot_kernel(&mut fresh, &data, s.naswot_batch, naswot::CodeCount::Paper);
        assert_eq!(k, full, "{text}");
        let want = first_change.checked_sub(1).map(|p| boundaries[p]);
        assert_eq!(direct.resumed_after(), want, "{text}");
    }
}

/// Block boundaries by their definition, checked by brute force: after such a layer, the
/// later layers read nothing written before it but its output.
#[test]
fn block_boundaries_are_the_points_one_output_carries() {
    let sized = Plan::build_sized(arch("24:8:40:16:56").widths(), 10, 32).unwrap();
    let tss = Plan::build(
        &nasrank::space::arch_of_index(6111).unwrap().into(),
        &MacroConfig::NB201_CIFAR10,
    )
    .unwrap();
    for (plan, blocks) in [(&sized, 5), (&tss, 17)] {
        let boundaries = plan.block_boundaries();
        assert_eq!(boundaries.len(), blocks, "{boundaries:?}");
        for (i, layer) in plan.layers.iter().enumerate() {
            let carried = plan.layers[i + 1..].iter().all(|later| {
                later.inputs().iter().all(|&x| {
                    x == layer.output() || plan.layers[i + 1..].iter().any(|l| l.output() == x)
                })
            });
            let is_sum = matches!(layer, nasrank::net::plan::Layer::Sum { .. });
            assert_eq!(
                boundaries.contains(&i),
                carried && is_sum,
                "layer {i}: {layer:?}"
            );
        }
    }
    // Two size-space networks share the layers of the blocks before their first differing
    // width, and none of that block's.
    let a = Plan::build_sized(arch("24:8:40:16:56").widths(), 10, 32).unwrap();
    let b = Plan::build_sized(arch("24:8:48:16:56").widths(), 10, 32).unwrap();
    let shared = a.common_prefix(&b);
    let bounds = a.block_boundaries();
    assert!(
        shared > bounds[1] && shared <= bounds[2],
        "{shared} {bounds:?}"
    );
    assert_eq!(a.common_prefix(&a), a.layers.len());
}

/// A `Scoring` keeps each worker's cache from one job to the next (the Python `Scorer`
/// scores one arch per call in a search loop): a job of one arch that shares blocks with
/// the previous job's arch resumes NASWOT after them, with the values of a fresh set-up.
#[test]
fn a_scoring_keeps_worker_caches_between_jobs() {
    use nasrank::backend::cpu::CpuBackend;
    use nasrank::proxy::naswot::KeptBlocks;
    use nasrank::run::device::AnyBackend;
    use nasrank::run::score::{RowSink, ScoreProgress, Scoring};
    use nasrank::space::AnyArch;
    use nasrank::store::Row;

    struct Rows(Vec<Row>);
    impl RowSink for Rows {
        fn write(&mut self, row: &Row) -> anyhow::Result<()> {
            self.0.push(row.clone());
            Ok(())
        }
    }
    struct Quiet;
    impl ScoreProgress for Quiet {
        fn start(&mut self, _: usize, _: usize, _: usize) {}
        fn row(&mut self, _: bool) {}
    }
    let load = || -> Scoring {
        ScoreRequest {
            space: Space::Sss,
            batch: Some(4),
            workers: Some(1),
            ..ScoreRequest::new(vec![Score::Naswot], DataSource::parse("synthetic").unwrap())
        }
        .load()
        .unwrap()
    };
    let one = |scoring: &Scoring, text: &str| -> Vec<u64> {
        let a = arch(text);
        let mut rows = Rows(Vec::new());
        let job = scoring.job(vec![(a.index(), AnyArch::Sss(a))], None, true);
        job.run(Vec::new(), &mut rows, &mut Quiet).unwrap();
        rows.0[0].values.iter().map(|v| v.to_bits()).collect()
    };
    let resumed = |scoring: &Scoring| -> Option<usize> {
        let caches = scoring.worker_caches.lock().unwrap();
        let kept = caches
            .first()?
            .first()?
            .kept::<KeptBlocks<CpuBackend<f32>>>()?;
        kept.resumed_after()
    };
    assert!(matches!(load().backends[0], AnyBackend::Cpu(_)));
    let scoring = load();
    one(&scoring, "8:16:24:32:40");
    assert_eq!(resumed(&scoring), None, "the first arch ran from the input");
    // Widths differ from position 4 on: stem, cell 0 and the first blocks are shared.
    let kept_values = one(&scoring, "8:16:24:32:48");
    assert!(resumed(&scoring).is_some(), "the second job started afresh");
    assert_eq!(kept_values, one(&load(), "8:16:24:32:48"), "resumed values");
}
