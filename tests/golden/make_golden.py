#!/usr/bin/env python3
"""Makes the golden fixtures of tests/golden.rs with PyTorch (run by hand, not in CI).

    /opt/torchenv/bin/python tests/golden/make_golden.py [--cargo-profile dev|release] [NAME...]

For each case below: runs nasrank's exporter (`cargo run --example golden_export`) for the
weights (nasrank's deterministic init, rounded to f32) and the input batch, loads them by
name into the independent PyTorch TinyNetwork of tools/nb201_torch.py, runs it forward in
train mode (batch statistics) and backward through the mean cross-entropy, and writes
tests/golden/<name>.json with what PyTorch computed:

  input_checksum   sum(x) and sum((e % 97 + 1) * x[e]) over the flat input, in f64
                   (the Rust test regenerates the input and checks these first);
  logits, loss;
  naswot_kernel    K_H[i][j] = over every ReLU module of the reference network, the number
                   of units where the codes (input > 0) of images i and j agree;
  relu_ones        per image, the number of ones over every ReLU module;
  relu_modules, relu_units (units per image over every module);
  torch_param_names, zero_input_params: every parameter of the PyTorch model, and those
                   whose module (conv or BN) only ever saw an identically zero input
                   (nasrank prunes exactly those: the test checks it);
  grads            d loss / d parameter for every parameter nasrank exported, by name
                   (a case with `grads_of` name prefixes keeps only the parameters named
                   so, and records the prefixes, to keep a full-size fixture small);
  input_grad       d loss / d input.
The same computation in f64 (from the same f32 weights and input) is recorded as
`f32_noise`: how far PyTorch's own f32 result is from it (also as a ratio to the gradient
tolerance of tests/golden.rs), and how many ReLU code bits flip
between the two, so the test's tolerances can be judged.

Logits and the loss are written with 7 significant digits; the gradients (the bulk of a
fixture) exactly, as base64 of their little-endian f32 bytes, to keep the fixtures small.
"""

import argparse
import base64
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import nb201_torch  # noqa: E402

# name, arch, C, N, classes, input size, batch, seed, stem
CASES = [
    # every op but none; node 0 feeds two conv edges (two ReLU modules on one input); N=2
    # so that cell positions after a reduction block are exercised.
    ("mixed",
     "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|",
     4, 2, 10, 8, 4, 11, False),
    # node 1 is zero: the convs 1->2 and 1->3 are fed by a zero node (all-zero codes,
    # pruned parameters).
    ("zero_fed",
     "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_3x3~2|",
     4, 1, 10, 8, 4, 12, False),
    # node 0 feeds three conv edges, node 1 two: shared ReLUs counted per module.
    ("shared_relu",
     "|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_3x3~2|",
     4, 1, 10, 8, 4, 13, False),
    # live output, but nodes 1 and 2 feed only `none` edges: their convs are computed
    # (codes count) and get zero gradients.
    ("dead_end",
     "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|none~2|",
     4, 1, 10, 8, 4, 14, False),
    # no path to the output: logits are the classifier bias.
    ("dead",
     "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|",
     4, 1, 10, 8, 4, 15, False),
    # supernet edges (several ops per edge, summed).
    ("supernet",
     "skip_connect+nor_conv_3x3,nor_conv_1x1+avg_pool_3x3,none+nor_conv_3x3,"
     "nor_conv_1x1+avg_pool_3x3,none,skip_connect+nor_conv_1x1",
     4, 1, 10, 8, 4, 16, False),
    # the stem and the full 32x32 input (benchmark index 1).
    ("stem32",
     "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
     4, 1, 10, 32, 2, 17, True),
    # the benchmark's own network, C=16 and N=5 on 32x32 inputs (benchmark index 6111, a
    # conv on every node): every layer width the space uses; gradients kept for the stem,
    # the first cell, the first reduction block, the head (the rest would be megabytes).
    ("full16",
     "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
     16, 5, 10, 32, 2, 18, True,
     {"grads_of": ("stem.", "cells.0.", "cells.5.", "lastact.", "classifier."),
      # In float32, PyTorch's own gradients at this depth are 43x the test's tolerance away
      # from float64 (recorded as f32_noise): the fixture is the float64 run, compared
      # with nasrank's f64 CPU backend.
      "dtype": "float64"}),
]




def run_torch(exported, dtype):
    """Forward + backward in `dtype`; returns a dict of results (tensors)."""
    cfg = exported["config"]
    model = nb201_torch.TinyNetwork(
        exported["cell"], channels=cfg["channels"], cells_per_stage=cfg["cells_per_stage"],
        classes=cfg["classes"], input_channels=cfg["input_channels"], stem=cfg["stem"])
    params = {p["name"]: np.asarray(p["values"], dtype=np.float32).reshape(p["shape"])
              for p in exported["params"]}
    unexported = nb201_torch.load_params(model, params)
    model = model.to(dtype)
    model.train()

    # Which convs / BNs only ever see an identically zero input.
    zero_input = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
            def hook(_m, args, _out, name=name):
                z = bool((args[0] == 0).all())
                zero_input[name] = zero_input.get(name, True) and z
            handles.append(m.register_forward_hook(hook))
    recorder = nb201_torch.ReluRecorder(model)

    x = torch.tensor(np.asarray(exported["input"], dtype=np.float32)
                     .reshape(exported["input_shape"]), dtype=dtype, requires_grad=True)
    labels = torch.tensor(exported["labels"], dtype=torch.int64)
    logits = model(x)
    loss = F.cross_entropy(logits, labels, reduction="mean")
    loss.backward()
    for h in handles:
        h.remove()
    recorder.remove()

    own = dict(model.named_parameters())
    grads = {}
    for p in exported["params"]:
        g = own[p["name"]].grad
        grads[p["name"]] = torch.zeros_like(own[p["name"]]) if g is None else g.detach()
    zero_params = sorted(
        f"{mod}.{pn}" for mod, z in zero_input.items() if z
        for pn, _ in model.get_submodule(mod).named_parameters(recurse=False))
    return {
        "logits": logits.detach(),
        "loss": loss.detach(),
        "grads": grads,
        "input_grad": x.grad.detach(),
        "relu_inputs": recorder.inputs,
        "torch_param_names": [n for n, _ in model.named_parameters()],
        "zero_input_params": zero_params,
        "unexported": unexported,
    }


def g7(v):
    """A float with 7 significant digits (JSON writes the shortest repr)."""
    v = float(v)
    return 0.0 if v == 0 else float(f"{v:.7g}")


def f64_b64(t):
    """A tensor as base64 of its flat little-endian f64 bytes."""
    a = t.detach().reshape(-1).numpy().astype("<f8")
    return base64.b64encode(a.tobytes()).decode("ascii")


def f32_b64(t):
    """A tensor as base64 of its flat little-endian f32 bytes (exact, and compact)."""
    a = t.detach().reshape(-1).numpy().astype("<f4")
    return base64.b64encode(a.tobytes()).decode("ascii")


# The tolerance of tests/golden.rs for gradients: element e of a tensor b passes when
# |a - b| <= RTOL |b| + ATOL max|b of the tensor| + FLOOR max|b of every parameter grad|.
RTOL, ATOL, FLOOR = 1e-3, 1e-4, 1e-6


def noise(pairs, floor_scale=None):
    """How far f32 results are from f64 ones over (f32, f64) tensor pairs: the largest
    |a - b| over the largest |b|, and the largest ratio of |a - b| to the tolerance of
    tests/golden.rs (1 would fail the test)."""
    b_all = torch.cat([y.double().reshape(-1) for _, y in pairs])
    scale = float(b_all.abs().max())
    floor_scale = scale if floor_scale is None else floor_scale
    worst_abs, worst_ratio = 0.0, 0.0
    for a, b in pairs:
        a, b = a.double().reshape(-1), b.double().reshape(-1)
        diff = (a - b).abs()
        tol = RTOL * b.abs() + ATOL * float(b.abs().max()) + FLOOR * floor_scale
        worst_abs = max(worst_abs, float(diff.max()))
        if floor_scale > 0:
            worst_ratio = max(worst_ratio, float((diff / tol).max()))
    return {"abs_over_scale": worst_abs / scale if scale > 0 else worst_abs,
            "ratio_to_test_tolerance": worst_ratio}


def make_case(profile, case):
    name, arch, c, n, classes, size, batch, seed, stem = case[:9]
    options = case[9] if len(case) > 9 else {}
    grads_of = options.get("grads_of")
    dtype = options.get("dtype", "float32")
    exported = nb201_torch.export(profile, arch, c, n, classes, size, batch, seed, stem)
    cell = nb201_torch.parse_cell(arch)
    if [sorted(e) for e in cell] != [sorted(e) for e in exported["cell"]]:
        sys.exit(f"{name}: nasrank parsed {arch!r} as {exported['cell']}, PyTorch as {cell}")
    exported["cell"] = cell
    r = run_torch(exported, torch.float32)
    r64 = run_torch(exported, torch.float64)

    # The run the fixture records: float32 (f32 values, 7 digits for logits and loss), or
    # float64 for a case that asks for it (f64 values, every digit).
    if dtype == "float64":
        main, blob, digits = r64, f64_b64, float
    else:
        main, blob, digits = r, f32_b64, g7
    k, ones, units = nb201_torch.naswot_kernel(main["relu_inputs"])
    flips = sum(int(((a > 0) != (b > 0)).sum())
                for (_, a), (_, b) in zip(r["relu_inputs"], r64["relu_inputs"]))
    exported_names = [p["name"] for p in exported["params"]]
    expected = sorted(set(r["torch_param_names"]) - set(r["zero_input_params"]))
    if sorted(exported_names) != expected:
        print(f"  DISCREPANCY {name}: exported {sorted(set(exported_names) - set(expected))} "
              f"not exported {sorted(set(expected) - set(exported_names))}", file=sys.stderr)

    x = np.asarray(exported["input"], dtype=np.float32).astype(np.float64)
    weights = (np.arange(x.size) % 97 + 1).astype(np.float64)
    fixture = {
        "name": name,
        "generator": "tests/golden/make_golden.py with tools/nb201_torch.py",
        "torch_version": torch.__version__,
        "dtype": dtype,
        "arch": arch,
        "cell": exported["cell"],
        "config": exported["config"],
        "seed": exported["seed"],
        "batch": exported["batch"],
        "input_shape": exported["input_shape"],
        "input_checksum": {"sum": float(x.sum()), "weighted_sum": float((x * weights).sum())},
        "labels": exported["labels"],
        "logits": [[digits(v) for v in row] for row in main["logits"].tolist()],
        "loss": digits(main["loss"]),
        "relu_modules": len(r["relu_inputs"]),
        "relu_units": units,
        "naswot_kernel": k.tolist(),
        "relu_ones": ones.tolist(),
        "torch_param_names": r["torch_param_names"],
        "zero_input_params": r["zero_input_params"],
        "f32_noise": {
            "logits": noise([(r["logits"], r64["logits"])]),
            "input_grad": noise([(r["input_grad"], r64["input_grad"])]),
            "param_grads": noise([(r["grads"][p], r64["grads"][p]) for p in exported_names]),
            "relu_bit_flips": flips,
        },
        "grads_encoding": ("base64 of the flat little-endian f64 values" if dtype == "float64"
                           else "base64 of the flat little-endian f32 values"),
        "grads": {p: blob(main["grads"][p]) for p in exported_names
                  if grads_of is None or p.startswith(tuple(grads_of))},
        "input_grad": blob(main["input_grad"]),
    }
    if grads_of is not None:
        fixture["grads_of"] = list(grads_of)
    path = os.path.join(ROOT, "tests", "golden", f"{name}.json")
    with open(path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print(f"{name}: {os.path.getsize(path)} bytes, {len(exported_names)} params, "
          f"{units} ReLU units/image in {len(r['relu_inputs'])} modules, "
          f"loss {fixture['loss']}, f32 noise {fixture['f32_noise']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cargo-profile", choices=["dev", "release"], default="dev")
    ap.add_argument("names", nargs="*", help="cases to make (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    known = {c[0] for c in CASES}
    for n in args.names:
        if n not in known:
            sys.exit(f"unknown case {n!r}; known: {sorted(known)}")
    for case in CASES:
        if not args.names or case[0] in args.names:
            make_case(args.cargo_profile, case)


if __name__ == "__main__":
    main()
