//! MeCo against the PyTorch fixtures of its released formulation (tests/golden/scores_meco/,
//! made by tests/golden/scores_meco.py: the zero-cost-NAS `NAS201Model` module tree with a
//! hook on every module, `torch.corrcoef` and `torch.linalg.eig`, on nasrank's weights and
//! image; and tests/golden/scores_meco_sss/, made by tests/golden/scores_meco_sss.py: the
//! size space's xautodl `DynamicShapeTinyNet` module tree), so the plan's module outputs
//! and multiplicities, the correlation and the eigenvalues are all checked.
mod common;

use common::{config_of, golden_batch, golden_fixture, usize_of};

use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::Executor;
use nasrank::data::{Batch, Seeds, SplitMix64};
use nasrank::net::init::init_params;
use nasrank::net::Plan;
use nasrank::proxy::meco::{meco, meco_opt};
use nasrank::space::{Arch, Cell};

fn cell(arch: &str) -> Cell {
    Cell::from(arch.parse::<Arch>().expect("arch string"))
}

/// Every case (a mixed arch at two sizes, a zero-fed node, a dead arch, all-skip, a
/// dead-end pool): the number of hook firings the plan accounts for, then both scores in
/// f64 (to 1e-9 of the fixture's f64 values) and in f32 (to 1e-4 relative, the released
/// precision). Catches a module output missed or counted the wrong number of times (each
/// firing of a full-size map adds ~0.1 to 1), a correlation over the wrong axis, the
/// biggest eigenvalue instead of the smallest, or meco_opt drawing its channels
/// differently from the seeded stream.
#[test]
fn meco_matches_pytorch() {
    let fx = golden_fixture("scores_meco/cases.json");
    let cases = fx["meco"].as_array().expect("meco cases");
    assert_eq!(cases.len(), 6);
    for case in cases {
        let arch = case["arch"].as_str().unwrap();
        let config = config_of(&case["config"]);
        let seed = case["seed"].as_u64().unwrap();
        let n = usize_of(&case["batch"]);
        let plan = Plan::build(&cell(arch), &config).unwrap();
        let what = format!("{arch} at C={}", config.channels);

        let batch = golden_batch(seed, n, config.input_channels, config.input_size);
        check_meco(&plan, seed, &batch, n, case, &what);
    }
}

/// MeCo on the size space against tests/golden/scores_meco_sss (made by
/// tests/golden/scores_meco_sss.py: the module tree of xautodl's `DynamicShapeTinyNet`
/// that the released script builds for `--search_space sss`, a hook on every module, on
/// nasrank's weights and image): the smallest and the largest arch at 32x32, archs whose
/// cells change the width (skip = FactorizedReduce: conv1x1, BN) in cell 2, cell 4 or
/// both, narrowing blocks, 10, 100 and 120 classes. The number of hook firings (118 with
/// no width-changing skip, 2 more per such skip) and both scores, to 1e-9 relative in f64
/// and 1e-4 in f32, as for the topology space. Catches the topology space's wrappers
/// carried over (the stem's BN three times, the pool twice: a firing count off; a stage
/// Sequential: a map counted once more), a FactorizedReduce's BN counted once, or the
/// plan's order of firings differing from the hooks' (meco_opt's draws shift).
#[test]
fn meco_matches_pytorch_on_the_size_space() {
    let fx = golden_fixture("scores_meco_sss/cases.json");
    let cases = fx["meco_sss"].as_array().expect("meco_sss cases");
    assert_eq!(cases.len(), 6);
    for case in cases {
        let widths: Vec<usize> = case["widths"]
            .as_array()
            .unwrap()
            .iter()
            .map(usize_of)
            .collect();
        let widths: [usize; 5] = widths.try_into().unwrap();
        let (classes, size) = (usize_of(&case["classes"]), usize_of(&case["input_size"]));
        let seed = case["seed"].as_u64().unwrap();
        let n = usize_of(&case["batch"]);
        let plan = Plan::build_sized(widths, classes, size).unwrap();
        let what = format!("{widths:?}, {classes} classes at {size}x{size}");

        let firings: u32 = plan.module_outputs.iter().map(|m| m.modules).sum();
        let skips = u32::from(widths[1] != widths[2]) + u32::from(widths[3] != widths[4]);
        assert_eq!(firings, 118 + 2 * skips, "{what}");
        let batch = golden_batch(seed, n, 3, size);
        check_meco(&plan, seed, &batch, n, case, &what);
    }
}

/// A case of either space: the hook firings (all, and those on maps where some channel
/// varies: the plan's non-zero slots of more than one position), the seed of meco_opt's
/// channel draws, and nasrank's meco and meco_opt on the fixture's weights (f64, 1e-9
/// relative) and on its own f32 initialisation (1e-4) against the case's PyTorch values.
fn check_meco(
    plan: &Plan,
    seed: u64,
    batch: &Batch,
    n: usize,
    case: &serde_json::Value,
    what: &str,
) {
    let firings: u32 = plan.module_outputs.iter().map(|m| m.modules).sum();
    assert_eq!(firings as usize, usize_of(&case["hook_firings"]), "{what}");
    let varying: u32 = plan
        .module_outputs
        .iter()
        .filter(|m| m.slot.is_some() && m.shape.hw() > 1)
        .map(|m| m.modules)
        .sum();
    assert_eq!(
        varying as usize,
        usize_of(&case["firings_varying"]),
        "{what}"
    );
    let channels_seed: u64 = case["meco_channels_seed"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(Seeds(seed).meco_channels(), channels_seed, "{what}");

    // The fixture's weights: nasrank's initial ones, rounded to f32 by the export.
    let values: Vec<Vec<f64>> = init_params(seed, plan)
        .into_iter()
        .map(|p| p.into_iter().map(|v| f64::from(v as f32)).collect())
        .collect();
    let be64 = CpuBackend::<f64>::new();
    let mut exec = Executor::with_values(&be64, plan, &values);
    let want = case["meco_f64"].as_f64().unwrap();
    let got = meco(&mut exec, batch, n);
    assert!(
        (got - want).abs() <= 1e-9 * want.abs(),
        "{what}: meco f64 {got} vs {want}"
    );
    let want_opt = case["meco_opt_f64"].as_f64().unwrap();
    let got_opt = meco_opt(&mut exec, batch, n, &mut SplitMix64::new(channels_seed));
    assert!(
        (got_opt - want_opt).abs() <= 1e-9 * want_opt.abs(),
        "{what}: meco_opt f64 {got_opt} vs {want_opt}"
    );

    let be32 = CpuBackend::<f32>::new();
    let mut exec = Executor::with_init(&be32, plan, seed);
    let got = meco(&mut exec, batch, n);
    assert!(
        (got - want).abs() <= 1e-4 * want.abs(),
        "{what}: meco f32 {got} vs {want}"
    );
    let got_opt = meco_opt(&mut exec, batch, n, &mut SplitMix64::new(channels_seed));
    assert!(
        (got_opt - want_opt).abs() <= 1e-4 * want_opt.abs(),
        "{what}: meco_opt f32 {got_opt} vs {want_opt}"
    );
}
