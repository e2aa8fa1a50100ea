//! Exports the weights and inputs of one network for the PyTorch golden fixtures
//! (tests/golden/make_golden.py).
//!
//! ```text
//! cargo run --release --example golden_export -- ARCH C N CLASSES INPUT_SIZE BATCH SEED [stem|nostem] [gaussian:WSEED]
//! ```
//!
//! `ARCH` is an arch string (`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`; an edge named twice in
//! a node carries several ops, a supernet edge) or a comma list of the 6 edges, each an op
//! name or several joined by `+`. With `stem` (the default) the input has 3 channels;
//! with `nostem` it has `C` (the cells see it directly).
//!
//! Prints one JSON object: the cell, the config, every plan parameter (name, shape, values
//! from `init_params` rounded to f32), the input and the labels. The input is
//! `x[e] = 2 u[e] - 1` in `[-1, 1)` (exact in f32) with `u = uniform_stream(seed,
//! name_hash("golden.input"), n*c*h*w)`; label `i` is `floor(classes * u'[i])` with
//! `u' = uniform_stream(seed, name_hash("golden.labels"), n)`. tests/golden.rs
//! regenerates both the same way. With `gaussian:WSEED` the parameters are
//! `gaussian_params(WSEED)` (N(0, 1) weights, as Zen and SWAP draw them) instead.
//!
//! `ARCH` may also be `sss:C1:C2:C3:C4:C5`: the NATS-Bench size-space network of those
//! widths (`Plan::build_sized`); `C` and `N` are then ignored and `stem` is required.

use nasrank::net::init::{gaussian_params, init_params, name_hash, uniform_stream};
use nasrank::net::Plan;
use nasrank::space::{Arch, Cell, MacroConfig, Op, OpSet, EDGES};
use serde_json::json;
use std::process::ExitCode;

/// Parses an arch string or a comma list of edges into a cell (supernet edges allowed).
/// A one-op-per-edge arch string goes through nasrank's own parser (`Arch: FromStr`), which
/// must agree with the local one.
fn parse_cell(text: &str) -> Result<Cell, String> {
    let cell = parse_cell_local(text)?;
    if text.starts_with('|') && cell.as_arch().is_some() {
        let arch: Arch = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
        if Cell::from(arch) != cell {
            return Err(format!(
                "nasrank parses {text:?} as {arch}, not as {cell:?}"
            ));
        }
    }
    Ok(cell)
}

/// The parser for supernet cells (several ops on an edge) and comma lists.
fn parse_cell_local(text: &str) -> Result<Cell, String> {
    let mut edges = [OpSet::EMPTY; 6];
    let mut add = |edge: usize, name: &str| -> Result<(), String> {
        let op = Op::from_name(name).ok_or_else(|| format!("unknown op {name:?}"))?;
        if edges[edge].contains(op) {
            return Err(format!("edge {:?} repeats {name}", EDGES[edge]));
        }
        edges[edge].insert(op);
        Ok(())
    };
    if text.starts_with('|') {
        let nodes: Vec<&str> = text.split('+').collect();
        if nodes.len() != 3 {
            return Err(format!("expected 3 nodes in {text:?}"));
        }
        for (i, node) in nodes.iter().enumerate() {
            let to = i + 1;
            let inner = node
                .strip_prefix('|')
                .and_then(|s| s.strip_suffix('|'))
                .ok_or_else(|| format!("bad node {node:?}"))?;
            for item in inner.split('|') {
                let (name, from) = item
                    .split_once('~')
                    .ok_or_else(|| format!("bad edge {item:?}"))?;
                let from: usize = from.parse().map_err(|_| format!("bad edge {item:?}"))?;
                let edge = EDGES
                    .iter()
                    .position(|&e| e == (from, to))
                    .ok_or_else(|| format!("bad edge {item:?}"))?;
                add(edge, name)?;
            }
        }
    } else {
        let items: Vec<&str> = text.split(',').collect();
        if items.len() != 6 {
            return Err(format!("expected 6 comma-separated edges in {text:?}"));
        }
        for (edge, item) in items.iter().enumerate() {
            for name in item.split('+') {
                add(edge, name)?;
            }
        }
    }
    if let Some(e) = edges.iter().position(|s| s.is_empty()) {
        return Err(format!("edge {:?} has no op", EDGES[e]));
    }
    Ok(Cell { edges })
}

fn run(args: &[String]) -> Result<String, String> {
    if !(7..=9).contains(&args.len()) {
        return Err(
            "usage: golden_export ARCH C N CLASSES INPUT_SIZE BATCH SEED [stem|nostem] [gaussian:WSEED]"
                .into(),
        );
    }
    let num = |i: usize, what: &str| -> Result<usize, String> {
        args[i]
            .parse()
            .map_err(|_| format!("{what}: not a number: {:?}", args[i]))
    };
    let channels = num(1, "C")?;
    let stem = match args.get(7).map(String::as_str) {
        None | Some("stem") => true,
        Some("nostem") => false,
        Some(other) => return Err(format!("expected stem or nostem, not {other:?}")),
    };
    let batch = num(5, "BATCH")?;
    let seed: u64 = args[6]
        .parse()
        .map_err(|_| format!("SEED: not a number: {:?}", args[6]))?;
    let (plan, widths) = match args[0].strip_prefix("sss:") {
        Some(list) => {
            let widths: Vec<usize> = list
                .split(':')
                .map(|w| {
                    w.parse()
                        .map_err(|_| format!("bad width {w:?} in {list:?}"))
                })
                .collect::<Result<_, _>>()?;
            let widths: [usize; 5] = widths
                .try_into()
                .map_err(|_| format!("expected 5 widths in {list:?}"))?;
            if !stem {
                return Err("the size-space network has a stem".into());
            }
            let plan = Plan::build_sized(widths, num(3, "CLASSES")?, num(4, "INPUT_SIZE")?)
                .map_err(|e| e.to_string())?;
            (plan, Some(widths))
        }
        None => {
            let cell = parse_cell(&args[0])?;
            let config = MacroConfig {
                channels,
                cells_per_stage: num(2, "N")?,
                classes: num(3, "CLASSES")?,
                input_size: num(4, "INPUT_SIZE")?,
                input_channels: if stem { 3 } else { channels },
                stem,
            };
            (
                Plan::build(&cell, &config).map_err(|e| e.to_string())?,
                None,
            )
        }
    };
    let (cell, config) = (plan.cell, plan.config);
    let values = match args.get(8).map(|s| s.split_once(':')) {
        None => init_params(seed, &plan),
        Some(Some(("gaussian", wseed))) => gaussian_params(
            wseed
                .parse()
                .map_err(|_| format!("gaussian:WSEED: not a number: {wseed:?}"))?,
            &plan,
        ),
        Some(_) => return Err(format!("expected gaussian:WSEED, not {:?}", args[8])),
    };
    let params: Vec<_> = plan
        .params
        .iter()
        .zip(&values)
        .map(|(spec, v)| {
            let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            json!({ "name": spec.name, "shape": spec.shape, "values": v32 })
        })
        .collect();
    let input_len = batch * plan.slots[0].len();
    let input: Vec<f32> = uniform_stream(seed, name_hash("golden.input"), input_len)
        .map(|u| (2.0 * u - 1.0) as f32)
        .collect();
    let labels: Vec<usize> = uniform_stream(seed, name_hash("golden.labels"), batch)
        .map(|u| (u * config.classes as f64) as usize)
        .collect();
    let cell_ops: Vec<Vec<&str>> = cell
        .edges
        .iter()
        .map(|set| set.iter().map(Op::name).collect())
        .collect();
    let out = json!({
        "arch": args[0],
        "cell": cell_ops,
        "config": {
            "channels": config.channels,
            "cells_per_stage": config.cells_per_stage,
            "classes": config.classes,
            "input_size": config.input_size,
            "input_channels": config.input_channels,
            "stem": config.stem,
        },
        "widths": widths,
        "seed": seed,
        "batch": batch,
        "input_shape": [batch, config.input_channels, config.input_size, config.input_size],
        "input": input,
        "labels": labels,
        "params": params,
    });
    Ok(out.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("golden_export: {e}");
            ExitCode::FAILURE
        }
    }
}
