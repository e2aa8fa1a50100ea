//! AZ-NAS against the PyTorch fixture of its released formulation (tests/golden/scores_az/,
//! made by tests/golden/scores_az.py: features of the independent TinyNetwork, `eigvalsh`
//! entropies, autograd VJPs with Rademacher probes, pixel-unshuffle and `svdvals`, on the
//! weights, Gaussian input and probes nasrank draws).
mod common;

use common::{config_of, golden_fixture, usize_of};

use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::{BnStatistics, Executor};
use nasrank::data::{synthetic_batch, Seeds, SplitMix64};
use nasrank::net::init::gaussian_params;
use nasrank::net::{ParamKind, Plan};
use nasrank::proxy::az_nas::{az_nas, az_nas_of_forward};
use nasrank::proxy::upload_images;
use nasrank::space::{Arch, Cell};
use serde_json::Value;

fn cell(arch: &str) -> Cell {
    Cell::from(arch.parse::<Arch>().expect("arch string"))
}

/// A fixture number; the fixture writes `"-inf"` for minus infinity.
fn number(v: &Value) -> f64 {
    match v.as_str() {
        Some("-inf") => f64::NEG_INFINITY,
        _ => v.as_f64().expect("a number"),
    }
}

fn close(got: f64, want: f64, rel: f64) -> bool {
    got == want || (got - want).abs() <= rel * want.abs().max(1.0)
}

/// nasrank's value for a cell whose input is identically zero (sigma = 0), where the
/// released code carries the probe through a reduction block's linear shortcut.
const ZERO_INPUT_CELL: f64 = -0.0 - 1.0 / (0.0 + 1e-6) + 2.0;

/// Every case (a mixed arch at two sizes, a zero-fed node, a dead arch, all-skip, an
/// identity cell): each feature's entropy, each cell's trainability (last first), and the
/// three terms, in f64 to 1e-9 of the fixture; then the public `az_nas` (its own f64
/// Kaiming weights, f32 network) to 1e-3. Catches a covariance over the wrong axis or not
/// centred, a log without the 1e-8, a VJP segment that stops early or starts late, the
/// pixel-unshuffle order (it pairs positions), the identity rule, the probes' bit order,
/// or a mean taken over the wrong cells.
#[test]
fn az_nas_matches_pytorch() {
    let fx = golden_fixture("scores_az/cases.json");
    let cases = fx["az_nas"].as_array().expect("az_nas cases");
    assert_eq!(cases.len(), 6);
    for case in cases {
        let arch = case["arch"].as_str().unwrap();
        let config = config_of(&case["config"]);
        let seed = case["seed"].as_u64().unwrap();
        let n = usize_of(&case["batch"]);
        let what = format!("{arch} at C={}", config.channels);
        let plan = Plan::build(&cell(arch), &config).unwrap();
        let seeds = Seeds(seed);
        let wseed: u64 = case["weight_seed"].as_str().unwrap().parse().unwrap();
        assert_eq!(seeds.az_weights(), wseed, "{what}");

        // The fixture's weights: N(0, 1) rounded to f32 by the export, then scaled.
        let values: Vec<Vec<f64>> = gaussian_params(wseed, &plan)
            .into_iter()
            .zip(&plan.params)
            .map(|(v, spec)| {
                let weight = matches!(spec.kind, ParamKind::ConvWeight | ParamKind::LinearWeight);
                let scale = if weight {
                    (2.0 / spec.fan_in as f64).sqrt()
                } else {
                    1.0
                };
                v.into_iter().map(|w| f64::from(w as f32) * scale).collect()
            })
            .collect();
        let be = CpuBackend::<f64>::new();
        let mut exec = Executor::with_values(&be, &plan, &values);
        let s = plan.slots[0];
        let images = synthetic_batch(n, s.c, s.h, s.w, config.classes, seeds.az_inputs());
        exec.forward(upload_images(&be, &images, n), n, BnStatistics::Batch);
        let terms = az_nas_of_forward(&mut exec, n, &mut SplitMix64::new(seeds.az_probes()));

        let entropies = case["entropies"].as_array().unwrap();
        assert_eq!(terms.entropies.len(), entropies.len(), "{what}");
        for (k, (got, want)) in terms.entropies.iter().zip(entropies).enumerate() {
            let want = number(want);
            let got = if got.is_nan() {
                f64::NEG_INFINITY
            } else {
                *got
            };
            assert!(
                close(got, want, 1e-9),
                "{what}: entropy {k}: {got} vs {want}"
            );
        }
        let cells = case["cells"].as_array().unwrap();
        let zero_input = case["cell_input_zero"].as_array().unwrap();
        assert_eq!(terms.cells.len(), cells.len(), "{what}");
        let mut expected_cells = Vec::new();
        for (k, (got, want)) in terms.cells.iter().zip(cells).enumerate() {
            let want = if zero_input[k].as_bool().unwrap() {
                ZERO_INPUT_CELL
            } else {
                number(want)
            };
            expected_cells.push(want);
            assert!(close(*got, want, 1e-9), "{what}: cell {k}: {got} vs {want}");
        }
        let want_t = expected_cells.iter().sum::<f64>() / expected_cells.len() as f64;
        let want_t = if want_t.is_nan() {
            f64::NEG_INFINITY
        } else {
            want_t
        };
        for (name, got, want) in [
            (
                "expressivity",
                terms.expressivity,
                number(&case["expressivity"]),
            ),
            (
                "progressivity",
                terms.progressivity,
                number(&case["progressivity"]),
            ),
            ("trainability", terms.trainability, want_t),
        ] {
            assert!(close(got, want, 1e-9), "{what}: {name} {got} vs {want}");
        }

        // The public entry point: nasrank's own f64 weights, run in f32.
        let be32 = CpuBackend::<f32>::new();
        let public = az_nas(&be32, &plan, n, seeds);
        assert!(
            close(public.expressivity, terms.expressivity, 1e-3)
                && close(public.progressivity, terms.progressivity, 1e-3)
                && close(public.trainability, terms.trainability, 1e-3),
            "{what}: az_nas {public:?} vs {terms:?}"
        );
    }
}
