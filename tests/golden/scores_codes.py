#!/usr/bin/env python3
"""Makes tests/golden/scores_codes/cases.json, the PyTorch fixture of tests/scores_codes.rs
(run by hand, not in CI):

    /opt/torchenv/bin/python tests/golden/scores_codes.py [--cargo-profile dev|release]

Weights and inputs come from nasrank's exporter (`cargo run --example golden_export`, as
make_golden.py uses it); the networks are the independent PyTorch ones of
tools/nb201_torch.py. Everything else is computed here from the definitions:

naswot cases (C=4, N=1, stem, 8x8, batch 8, train-mode BN):
  kernel           K_H[i][j] = sum over every nn.ReLU module of the units where the codes
                   (ReLU input > 0) of images i and j agree;
  naswot           log|det K_H| by torch.slogdet in float64 (the paper);
  naswot_released  the same with the released code's hook rule: every module whose type
                   name contains "ReLU", which also catches the ReLUConvBN wrappers;
  linear_regions   distinct rows of the concatenated ReLU-output signs of all modules.
released cases (TE-NAS's linear-region setting, small sizes): the cell alone at C=1, no
stem, then lastact (BN -> ReLU), weights cells.0.* from the exporter at C=1 (nasrank keys
its init by parameter name, so they are the single-cell plan's); `batches` train-mode
forwards of `batch_size` 3x3 one-channel crops of the exporter's 3x8x8 input images, drawn
with SplitMix64(seed) as engine/proxy/linear_regions.rs documents (reimplemented here);
  linear_regions   distinct patterns over all samples (checked against the released
                   formula sum_s 1/|{t: hamming(s, t) = 0}|).
Each case also records how many ReLU sign bits differ between float32 and float64 runs.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import nb201_torch  # noqa: E402

MIXED = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
ZERO_FED = "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_3x3~2|"
DEAD = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|"
ALL_CONV = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
            "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
SHARED = "|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_3x3~2|"

# arch, seed
NASWOT_CASES = [(MIXED, 31), (ZERO_FED, 32), (DEAD, 33), (ALL_CONV, 34), (SHARED, 35)]
# arch, seed: a batch of 8 whose images 4..7 repeat images 0..3 (network linear regions)
REGIONS_CASES = [(MIXED, 36), (SHARED, 37)]
# arch, seed, source images, batches, batch size
RELEASED_CASES = [(MIXED, 41, 60, 3, 200), (ZERO_FED, 42, 60, 3, 200),
                  (ALL_CONV, 43, 60, 3, 200), (SHARED, 44, 60, 3, 200)]







def input_of(exported):
    return np.asarray(exported["input"], dtype=np.float32).reshape(exported["input_shape"])


def record(model, select):
    """Hooks every module `select` accepts; returns (list of ReLU inputs, handles)."""
    seen = []
    handles = [m.register_forward_hook(lambda _m, args, _o: seen.append(args[0].detach().clone()))
               for _, m in model.named_modules() if select(m)]
    return seen, handles


def kernel(inputs):
    k = None
    for x in inputs:
        bits = (x.reshape(x.shape[0], -1) > 0).to(torch.int64)
        agree = bits @ bits.T + (1 - bits) @ (1 - bits).T
        k = agree if k is None else k + agree
    return k


def distinct_rows(inputs):
    bits = torch.cat([(x.reshape(x.shape[0], -1) > 0) for x in inputs], 1).to(torch.int8)
    return int(torch.unique(bits, dim=0).shape[0]), bits


def naswot_case(profile, arch, seed):
    exported = nb201_torch.export(profile, arch, 4, 1, 10, 8, 8, seed, True)
    cfg = exported["config"]
    out = {}
    for dtype in (torch.float32, torch.float64):
        model = nb201_torch.TinyNetwork(
            nb201_torch.parse_cell(arch), channels=cfg["channels"],
            cells_per_stage=cfg["cells_per_stage"], classes=cfg["classes"],
            input_channels=cfg["input_channels"], stem=cfg["stem"])
        nb201_torch.load_params(model, nb201_torch.exported_params(exported))
        model = model.to(dtype).train()
        paper, h1 = record(model, lambda m: isinstance(m, nn.ReLU))
        # The released code's rule: `'ReLU' in str(type(module))`.
        released, h2 = record(model, lambda m: "ReLU" in str(type(m)))
        with torch.no_grad():
            model(torch.tensor(input_of(exported), dtype=dtype))
        for h in h1 + h2:
            h.remove()
        out[dtype] = (paper, released)
    paper, released = out[torch.float32]
    flips = sum(int(((a > 0) != (b > 0)).sum()) for a, b in zip(paper, out[torch.float64][0]))
    k = kernel(paper)
    k_rel = kernel(released)
    regions, _ = distinct_rows(paper)
    return {
        "arch": arch,
        "config": cfg,
        "seed": seed,
        "batch": exported["batch"],
        "relu_modules": len(paper),
        "released_hooked_modules": len(released),
        "kernel": k.tolist(),
        "naswot": float(torch.slogdet(k.double()).logabsdet),
        "naswot_released": float(torch.slogdet(k_rel.double()).logabsdet),
        "linear_regions": regions,
        "relu_bit_flips_f32_vs_f64": flips,
    }


def crops(images, samples, seed, crop=3, channels=1):
    n, c, h, w = images.shape
    rng = nb201_torch.SplitMix64(seed)
    out = np.zeros((samples, channels, crop, crop), dtype=np.float32)
    for s in range(samples):
        top = rng.below(h - crop + 1)
        left = rng.below(w - crop + 1)
        pool = list(range(c))
        for i in range(channels):
            j = i + rng.below(c - i)
            pool[i], pool[j] = pool[j], pool[i]
        chosen = sorted(pool[:channels])
        out[s] = images[s % n][chosen, top:top + crop, left:left + crop]
    return out


class SingleCell(nn.Module):
    """One cell at C=1, no stem, then lastact (BN -> ReLU): TE-NAS's thin network."""

    def __init__(self, edges):
        super().__init__()
        self.cells = nn.ModuleList([nb201_torch.Cell(edges, 1)])
        self.lastact = nb201_torch.LastAct(1)

    def forward(self, x):
        return self.lastact(self.cells[0](x))


def released_case(profile, arch, seed, source_n, batches, batch_size):
    exported = nb201_torch.export(profile, arch, 1, 1, 10, 8, source_n, seed, True)
    x = crops(input_of(exported), batches * batch_size, seed)
    results = {}
    for dtype in (torch.float32, torch.float64):
        model = SingleCell(nb201_torch.parse_cell(arch))
        cell_params = {k: v for k, v in nb201_torch.exported_params(exported).items() if k.startswith("cells.0.")}
        # Left at PyTorch's init: lastact's BN (gamma 1, beta 0, as nasrank's) and the
        # convs nasrank prunes because their input is zero (their output is zero anyway).
        nb201_torch.load_params(model, cell_params)
        model = model.to(dtype).train()
        seen, handles = record(model, lambda m: isinstance(m, nn.ReLU))
        bits = []
        with torch.no_grad():
            for b in range(batches):
                seen.clear()
                model(torch.tensor(x[b * batch_size:(b + 1) * batch_size], dtype=dtype))
                bits.append(torch.cat([(t.reshape(t.shape[0], -1) > 0) for t in seen], 1))
        for h in handles:
            h.remove()
        results[dtype] = torch.cat(bits, 0).to(torch.float64)
    a = results[torch.float32]
    regions = int(torch.unique(a, dim=0).shape[0])
    # The released formula: Hamming matrix, 1 / (samples at distance 0), summed.
    ham = a @ (1 - a).T
    ham = ham + ham.T
    released_formula = float((1.0 / (ham == 0).sum(1).double()).sum())
    assert abs(released_formula - regions) < 1e-6, (released_formula, regions)
    return {
        "arch": arch,
        "seed": seed,
        "source": {"n": source_n, "c": 3, "size": 8},
        "batches": batches,
        "batch_size": batch_size,
        "crops_sum": float(x.astype(np.float64).sum()),
        "relu_units": a.shape[1],
        "linear_regions": regions,
        "relu_bit_flips_f32_vs_f64": int((a != results[torch.float64]).sum()),
    }


def regions_case(profile, arch, seed):
    """Distinct patterns of the whole network on a batch with every image twice: 4 of 8
    (the other fixtures' batches have all-distinct patterns, so there the count is the
    batch size and checks nothing)."""
    exported = nb201_torch.export(profile, arch, 4, 1, 10, 8, 8, seed, True)
    x = input_of(exported).copy()
    x[4:] = x[:4]
    model = nb201_torch.model_from_export(exported, torch.float32)
    seen, handles = record(model, lambda m: isinstance(m, nn.ReLU))
    with torch.no_grad():
        model(torch.tensor(x))
    for h in handles:
        h.remove()
    regions, _ = distinct_rows(seen)
    return {"arch": arch, "config": exported["config"], "seed": seed, "batch": 8,
            "repeat_first": 4, "linear_regions": regions}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cargo-profile", choices=["dev", "release"], default="dev")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    fixture = {
        "generator": "tests/golden/scores_codes.py with tools/nb201_torch.py",
        "torch_version": torch.__version__,
        "naswot": [naswot_case(args.cargo_profile, a, s) for a, s in NASWOT_CASES],
        "released": [released_case(args.cargo_profile, *c) for c in RELEASED_CASES],
        "regions": [regions_case(args.cargo_profile, a, s) for a, s in REGIONS_CASES],
    }
    for case in fixture["naswot"] + fixture["released"]:
        print(f"{case['arch']}: regions {case['linear_regions']}, "
              f"naswot {case.get('naswot')}, flips {case['relu_bit_flips_f32_vs_f64']}")
    path = os.path.join(ROOT, "tests", "golden", "scores_codes", "cases.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print(f"wrote {path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
