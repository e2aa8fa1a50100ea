//! The NATS-Bench size-space network (`Plan::build_sized`) against the PyTorch fixture of
//! tests/golden/sss_network/ (made by tests/golden/sss_network.py: the independent network
//! of tools/nats_sss_torch.py, written from ../shared/spec/nats_sss.md, on nasrank's
//! weights and input, float64): the benchmark's parameter and FLOP counts, logits, loss,
//! input gradient, every parameter's gradient (by checksums), NASWOT's kernel and synflow,
//! on the smallest and the
//! largest arch, archs whose cells change the width (skip = conv1x1 + BN) and a
//! narrowing reduction block, with 10, 100 and 120 classes.
mod common;

use common::{golden_fixture, golden_input, golden_labels, usize_of};

use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::Reduction;
use nasrank::backend::{Backend, BackwardOptions, BnGrad, BnStatistics, Executor, ParamGrads};
use nasrank::data::Batch;
use nasrank::net::init::init_params;
use nasrank::net::Plan;
use nasrank::proxy::{naswot, synflow};

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(1e-3)
}

/// `[sum(g), sum((e % 97 + 1) g[e])]`, as the fixture computes them.
fn checksums(g: &[f64]) -> [f64; 2] {
    let weighted = g
        .iter()
        .enumerate()
        .map(|(e, v)| ((e % 97 + 1) as f64) * v)
        .sum();
    [g.iter().sum(), weighted]
}

#[test]
fn size_space_network_matches_pytorch() {
    let fx = golden_fixture("sss_network/cases.json");
    let cases = fx["sss_network"].as_array().expect("cases");
    assert_eq!(cases.len(), 5);
    for case in cases {
        let widths: Vec<usize> = case["widths"]
            .as_array()
            .unwrap()
            .iter()
            .map(usize_of)
            .collect();
        let widths: [usize; 5] = widths.try_into().unwrap();
        let (classes, size) = (usize_of(&case["classes"]), usize_of(&case["input_size"]));
        let (n, seed) = (usize_of(&case["batch"]), case["seed"].as_u64().unwrap());
        let what = format!("{widths:?}, {classes} classes at {size}x{size}");
        let plan = Plan::build_sized(widths, classes, size).unwrap();
        assert_eq!(
            plan.param_count(),
            usize_of(&case["params"]),
            "{what}: params"
        );
        assert_eq!(plan.macs(), usize_of(&case["flops"]), "{what}: FLOPs");

        // The fixture's weights: nasrank's initial ones, rounded to f32 by the export.
        let values: Vec<Vec<f64>> = init_params(seed, &plan)
            .into_iter()
            .map(|p| p.into_iter().map(|v| f64::from(v as f32)).collect())
            .collect();
        let be = CpuBackend::<f64>::new();
        let mut exec = Executor::with_values(&be, &plan, &values);
        let x: Vec<f64> = golden_input(seed, n * 3 * size * size)
            .into_iter()
            .map(f64::from)
            .collect();
        exec.forward(x, n, BnStatistics::Batch);
        let logits = be.download(exec.logits());
        let want: Vec<f64> = case["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(logits.len(), want.len(), "{what}");
        for (k, (a, b)) in logits.iter().zip(&want).enumerate() {
            assert!(close(*a, *b, 1e-9), "{what}: logit {k}: {a} vs {b}");
        }
        let labels = golden_labels(seed, n, classes);
        let mut dlogits = be.alloc(n * classes);
        let loss = be.softmax_cross_entropy(
            n,
            classes,
            exec.logits(),
            &labels,
            Reduction::Mean,
            &mut dlogits,
        );
        let want_loss = case["loss"].as_f64().unwrap();
        assert!(
            close(loss, want_loss, 1e-10),
            "{what}: loss {loss} vs {want_loss}"
        );
        let grads = exec.backward(
            dlogits,
            &BackwardOptions {
                bn_grad: BnGrad::Full,
                input_grad: true,
            },
            ParamGrads::Batched,
        );
        let input_grad = grads.input.expect("input gradient");
        let want: Vec<f64> = case["input_grad"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (k, (a, b)) in input_grad.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-9 * scale,
                "{what}: input grad {k}: {a} vs {b}"
            );
        }
        let sums = case["grad_checksums"].as_object().unwrap();
        assert_eq!(sums.len(), plan.params.len(), "{what}: parameters");
        for (spec, g) in plan.params.iter().zip(grads.params.expect("batched")) {
            let want = &sums[&spec.name];
            let got = checksums(&g);
            // A BN shift feeding another BN (in training mode) has an exactly zero
            // gradient: both sides are rounding noise there, hence the floor.
            let magnitude: f64 = g.iter().map(|v| v.abs()).sum::<f64>().max(1e-6);
            for (i, got) in got.iter().enumerate() {
                let want = want[i].as_f64().unwrap();
                // Relative to the gradient's L1 mass (a sum may cancel to near 0).
                let tol = 1e-9 * magnitude * if i == 0 { 1.0 } else { 97.0 };
                assert!(
                    (got - want).abs() <= tol,
                    "{what}: {} checksum {i}: {got} vs {want}",
                    spec.name
                );
            }
        }

        // The scores on the same weights and images: NASWOT's K exactly, synflow in f64.
        let batch = Batch {
            n,
            c: 3,
            h: size,
            w: size,
            images: golden_input(seed, n * 3 * size * size),
            labels,
        };
        let mut fresh = Executor::with_values(&be, &plan, &values);
        let k = naswot::naswot_kernel(&mut fresh, &batch, n, naswot::CodeCount::Paper);
        let want: Vec<u64> = case["naswot_kernel"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(k, want, "{what}: NASWOT's K");
        let flow = synflow::synflow_with_params(&plan, values.clone());
        let want = case["synflow"].as_f64().unwrap();
        assert!(close(flow, want, 1e-9), "{what}: synflow {flow} vs {want}");
    }
}
