#!/usr/bin/env python3
"""Makes tests/golden/scores_az/cases.json, the PyTorch fixture of AZ-NAS in
tests/scores_az.rs (run by hand, not in CI):

    /opt/torchenv/bin/python tests/golden/scores_az.py [--cargo-profile dev|release]

AZ-NAS's expressivity, progressivity and trainability as the released
`compute_az_nas_score.py` (cvlab-yonsei/AZ-NAS) computes them, on the independent PyTorch
TinyNetwork of tools/nb201_torch.py in train mode, float64:
  - features: the stem's output, then every cell's and reduction block's output;
  - expressivity: per feature, permute to (B H W) x C, centre, sigma = X^T X / N,
    eigvalsh, p = s / sum(s), -sum p log(p + 1e-8); the sum over features;
  - progressivity: min of consecutive differences;
  - trainability: for i = last .. 1, g_out Rademacher at feature i, g_in =
    autograd.grad(f_out, f_in, g_out); -inf if g_in == g_out; pixel_unshuffle(g_in) when
    the sizes differ; M = g_in^T g_out / N, transposed to tall, svdvals;
    2 - s_max - 1/(s_max + 1e-6); the mean;
  - NaN -> -inf for each term.
Inputs, weights and probes are the ones nasrank draws, rebuilt here from its streams:
the weights are the exporter's `gaussian:WSEED` N(0, 1) values with WSEED =
Seeds(seed).az_weights(), scaled here by sqrt(2 / fan_in) (Kaiming normal, fan-in, ReLU
gain); the input is `synthetic_batch` of Seeds(seed).az_inputs() (SplitMix64 Box-Muller,
rounded to float32); probe i takes the next n*len signs of SplitMix64(az_probes), value e
being bit e % 64 of draw e / 64.

One deviation is mirrored so that it can be checked: where a cell's input is identically
zero (after a dead cell), nasrank gives the zero gradient (sigma = 0). The fixture records
every cell's score as released plus a flag for such cells, and the test expects nasrank's
value there.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import nb201_torch  # noqa: E402

TAGS = {"weights": 0x415A_4E41_5357_0001, "inputs": 0x415A_4E41_5349_0002,
        "probes": 0x415A_4E41_5350_0003}

MIXED = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
ZERO_FED = "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_3x3~2|"
DEAD = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
IDENTITY = "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|none~2|"

# arch, seed, (C, N, classes, size, batch)
SMALL = (4, 2, 10, 16, 8)
MEDIUM = (8, 2, 10, 32, 16)
CASES = [(MIXED, 71, SMALL), (ZERO_FED, 72, SMALL), (DEAD, 73, SMALL), (ALL_SKIP, 74, SMALL),
         (IDENTITY, 75, SMALL), (MIXED, 76, MEDIUM)]


def stream_seed(seed, what):
    return nb201_torch.SplitMix64(seed ^ TAGS[what]).next_u64()


def gaussian_input(seed, n, size):
    rng = nb201_torch.SplitMix64(stream_seed(seed, "inputs"))
    length = n * 3 * size * size
    values = []
    while len(values) < length:
        values.extend(rng.normal_pair())
    return np.asarray(values[:length], dtype=np.float32).reshape(n, 3, size, size)


def rademacher(rng, length):
    out = []
    while len(out) < length:
        word = rng.next_u64()
        take = min(64, length - len(out))
        out.extend(1.0 if (word >> b) & 1 else -1.0 for b in range(take))
    return out


def features(model, x):
    feats = [model.stem(x)]
    for cell in model.cells:
        feats.append(cell(feats[-1]))
    return feats


def entropy(feat):
    b, c, h, w = feat.size()
    f = feat.detach().permute(0, 2, 3, 1).reshape(b * h * w, c)
    f = f - f.mean(dim=0, keepdim=True)
    sigma = f.t() @ f / f.size(0)
    s = torch.linalg.eigvalsh(sigma)
    p = s / s.sum()
    return float((-p * torch.log(p + 1e-8)).sum())


def case(profile, arch, seed, shape):
    c, n_cells, classes, size, batch = shape
    wseed = stream_seed(seed, "weights")
    exported = export_gaussian(profile, arch, c, n_cells, classes, size, wseed)
    model = nb201_torch.model_from_export(exported, torch.float64)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:  # conv and linear weights: N(0, 1) -> N(0, 2 / fan_in)
                fan_in = p[0].numel()
                p.mul_((2.0 / fan_in) ** 0.5)
    x = torch.tensor(gaussian_input(seed, batch, size), dtype=torch.float64)
    feats = features(model, x)
    for f in feats:
        f.retain_grad()
    entropies = [entropy(f) for f in feats]
    expressivity = float(np.sum(entropies))
    progressivity = float(np.min(np.array(entropies[1:]) - np.array(entropies[:-1])))
    rng = nb201_torch.SplitMix64(stream_seed(seed, "probes"))
    cells, zero_input = [], []
    for i in reversed(range(1, len(feats))):
        f_out, f_in = feats[i], feats[i - 1]
        g_out = torch.tensor(rademacher(rng, f_out.numel()), dtype=torch.float64).reshape(f_out.shape)
        g_in = torch.autograd.grad(outputs=f_out, inputs=f_in, grad_outputs=g_out,
                                   retain_graph=True)[0]
        zero_input.append(bool(torch.all(f_in == 0)))
        if g_out.size() == g_in.size() and torch.all(g_in == g_out):
            cells.append(-np.inf)
            continue
        if g_out.size(2) != g_in.size(2):
            g_in = nn.PixelUnshuffle(g_in.size(2) // g_out.size(2))(g_in)
        bo, co, ho, wo = g_out.size()
        ci = g_in.size(1)
        go = g_out.permute(0, 2, 3, 1).reshape(bo * ho * wo, co)
        gi = g_in.permute(0, 2, 3, 1).reshape(bo * ho * wo, ci)
        mat = gi.t() @ go / (bo * ho * wo)
        if mat.size(0) < mat.size(1):
            mat = mat.t()
        s = float(torch.linalg.svdvals(mat).max())
        cells.append(-s - 1 / (s + 1e-6) + 2)
    trainability = float(np.mean(cells))

    def finite(v):
        return "-inf" if np.isnan(v) or v == -np.inf else v

    return {
        "arch": arch, "config": exported["config"], "seed": seed, "batch": batch,
        "weight_seed": str(wseed),
        "entropies": [finite(e) for e in entropies],
        "expressivity": finite(expressivity), "progressivity": finite(progressivity),
        "cells": [finite(v) for v in cells], "cell_input_zero": zero_input,
        "trainability": finite(trainability),
    }


def export_gaussian(profile, arch, c, n, classes, size, wseed):
    """nasrank's N(0, 1) parameters of seed `wseed` (its input and labels are unused)."""
    cmd = ["cargo", "run", "--quiet", "--example", "golden_export"]
    if profile == "release":
        cmd.append("--release")
    cmd += ["--", arch, str(c), str(n), str(classes), str(size), "1", "0", "stem",
            f"gaussian:{wseed}"]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cargo-profile", default="dev", choices=["dev", "release"])
    a = p.parse_args()
    torch.set_num_threads(1)
    cases = [case(a.cargo_profile, arch, seed, shape) for arch, seed, shape in CASES]
    out = os.path.join(ROOT, "tests", "golden", "scores_az", "cases.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"az_nas": cases}, f, indent=1)
        f.write("\n")
    for c in cases:
        print(c["arch"], c["config"]["channels"], c["expressivity"], c["progressivity"],
              c["trainability"])


if __name__ == "__main__":
    main()
