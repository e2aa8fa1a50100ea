//! The initial weights against their definition (PyTorch's defaults, docs/SCORES.md):
//! conv and linear weights and the linear bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
//! fan_in taken here from the layer that owns them (conv: cin*k*k, linear: its input
//! width), BN gamma 1 and beta 0. Catches a wrong fan-in (say cout*k*k, or k*k), a wrong
//! bound (say sqrt(3/fan_in), Kaiming-uniform with a=0), a shifted or squeezed draw, or a
//! BN init other than (1, 0).

use nasrank::net::init::init_params;
use nasrank::net::plan::ParamKind;
use nasrank::net::{Layer, Plan};
use nasrank::space::{arch_of_index, Cell, MacroConfig};
use std::collections::HashMap;

#[test]
fn every_parameter_follows_its_initialisation_rule() {
    let plan = Plan::build(
        &Cell::from(arch_of_index(6111).unwrap()),
        &MacroConfig::NB201_CIFAR10,
    )
    .unwrap();
    // The fan-in of each weight and bias, from its layer's geometry.
    let mut fan_in: HashMap<usize, usize> = HashMap::new();
    for layer in &plan.layers {
        match layer {
            Layer::Conv { w, geom, .. } => {
                fan_in.insert(*w, geom.cin * geom.k * geom.k);
            }
            Layer::Linear { x, w, b, .. } => {
                let width = plan.slots[*x].len();
                fan_in.insert(*w, width);
                fan_in.insert(*b, width);
            }
            _ => {}
        }
    }
    let params = init_params(7, &plan);
    let (mut uniform_values, mut uniform_tensors) = (0usize, 0usize);
    for (id, (spec, values)) in plan.params.iter().zip(&params).enumerate() {
        assert_eq!(values.len(), spec.len(), "{}", spec.name);
        match spec.kind {
            ParamKind::BnGamma => assert!(values.iter().all(|&v| v == 1.0), "{}", spec.name),
            ParamKind::BnBeta => assert!(values.iter().all(|&v| v == 0.0), "{}", spec.name),
            ParamKind::ConvWeight | ParamKind::LinearWeight | ParamKind::LinearBias => {
                let bound = 1.0 / (fan_in[&id] as f64).sqrt();
                assert!(
                    values.iter().all(|v| v.abs() <= bound),
                    "{}: a value beyond 1/sqrt({})",
                    spec.name,
                    fan_in[&id]
                );
                // U(-b, b) of m values: mean 0 and variance b^2/3, each within 5 standard
                // errors (the 4th central moment of U(-b, b) is b^4/5).
                let m = values.len() as f64;
                let mean = values.iter().sum::<f64>() / m;
                let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m;
                let (b2, b4) = (bound * bound, bound.powi(4));
                assert!(
                    mean.abs() <= 5.0 * (b2 / 3.0 / m).sqrt(),
                    "{}: mean {mean} for bound {bound}",
                    spec.name
                );
                let var_se = ((b4 / 5.0 - b2 * b2 / 9.0) / m).sqrt();
                assert!(
                    (var - b2 / 3.0).abs() <= 5.0 * var_se,
                    "{}: variance {var}, want {} for bound {bound}",
                    spec.name,
                    b2 / 3.0
                );
                uniform_values += values.len();
                uniform_tensors += 1;
            }
        }
    }
    // The largest tensors fill most of the bound: the draw is not squeezed.
    assert!(uniform_tensors > 10 && uniform_values > 100_000);
    let widest = plan
        .params
        .iter()
        .zip(&params)
        .enumerate()
        .filter(|(_, (s, _))| s.kind == ParamKind::ConvWeight)
        .max_by_key(|(_, (s, _))| s.len())
        .unwrap();
    let (id, (_, values)) = widest;
    let bound = 1.0 / (fan_in[&id] as f64).sqrt();
    let max = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(max > 0.99 * bound, "largest |w| {max} of bound {bound}");
}
