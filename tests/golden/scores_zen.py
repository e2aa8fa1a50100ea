#!/usr/bin/env python3
"""Makes tests/golden/scores_zen/cases.json, an independent PyTorch reference for the
Zen-score of engine/proxy/zen.rs (run by hand, not in CI):

    /opt/torchenv/bin/python tests/golden/scores_zen.py [--cargo-profile dev|release]

The definition is the engine's (its module doc states how it departs from the released
Zen-NAS code): weights N(0, 1) (the exporter's `gaussian:SEED`, nasrank's Philox draw);
x = n standard-normal images and e = n more, both from SplitMix64(SEED) Box-Muller pairs
(`x` first; an odd count drops the pair's second value), reimplemented here; x' = x + 0.01 e;
both forward in train mode (each its own batch) through tools/nb201_torch.py's TinyNetwork
in float64;
  zen = ln(mean_i ||f(x)_i - f(x')_i||_2) + sum over BN modules of ln sqrt(mean_c var_c),
f the output of `lastact` (BN -> ReLU, before the pool), var_c the biased batch variance of
the BN module's input in the clean pass. BN modules whose input is identically zero are
left out: nasrank prunes them (their variance is 0 and would make every such arch -inf).
"""

import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import nb201_torch  # noqa: E402

ALPHA = 0.01

MIXED = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
ZERO_FED = "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_3x3~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
ALL_CONV = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
            "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
# arch, seed, C, N, input size, batch (odd: the dropped Box-Muller value is exercised)
CASES = [(MIXED, 61, 4, 2, 8, 5), (ZERO_FED, 62, 4, 1, 8, 4), (ALL_SKIP, 63, 4, 1, 8, 4),
         (ALL_CONV, 64, 8, 1, 16, 3)]


def normals(rng, count):
    out = []
    while len(out) < count:
        out.extend(rng.normal_pair())
    return out[:count]


def zen(model, x, e):
    variances = []

    def bn_hook(_module, inputs, _output):
        t = inputs[0]
        if bool((t == 0).all()):
            return  # identically zero input: pruned by nasrank
        variances.append(t.var(dim=(0, 2, 3), unbiased=False).mean().item())

    handles = [m.register_forward_hook(bn_hook) for m in model.modules()
               if isinstance(m, nn.BatchNorm2d)]
    feats = []
    feature = model.lastact.register_forward_hook(lambda _m, _i, out: feats.append(out.detach()))
    with torch.no_grad():
        model(x)
        correction = sum(math.log(math.sqrt(v)) for v in variances)
        for h in handles:
            h.remove()
        model(x + ALPHA * e)
    feature.remove()
    clean, moved = feats
    norms = (clean - moved).flatten(1).norm(dim=1)
    return math.log(float(norms.mean())) + correction, len(variances)


def case(profile, arch, seed, c, n, size, batch):
    # The weights Zen draws: gaussian_params(seed), through the exporter's gaussian:SEED.
    cmd = ["cargo", "run", "--quiet", "--example", "golden_export"]
    if profile == "release":
        cmd.append("--release")
    cmd += ["--", arch, str(c), str(n), "10", str(size), str(batch), str(seed), "stem",
            f"gaussian:{seed}"]
    exported = json.loads(subprocess.run(cmd, cwd=nb201_torch.ROOT, check=True,
                                         capture_output=True, text=True).stdout)
    # The exporter rounds the weights to f32; the Rust test loads the same rounded values.
    model = nb201_torch.model_from_export(exported, torch.float64)
    rng = nb201_torch.SplitMix64(seed)
    shape = (batch, 3, size, size)
    count = int(np.prod(shape))
    x = torch.tensor(normals(rng, count), dtype=torch.float64).reshape(shape)
    e = torch.tensor(normals(rng, count), dtype=torch.float64).reshape(shape)
    value, bns = zen(model, x, e)
    return {"arch": arch, "config": exported["config"], "seed": seed, "batch": batch,
            "bn_layers_counted": bns, "zen": value}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cargo-profile", default="dev", choices=["dev", "release"])
    a = p.parse_args()
    torch.set_num_threads(1)
    cases = [case(a.cargo_profile, *c) for c in CASES]
    out = os.path.join(ROOT, "tests", "golden", "scores_zen", "cases.json")
    with open(out, "w") as f:
        json.dump({"zen": cases}, f, indent=1)
        f.write("\n")
    for c in cases:
        print(c["arch"], c["bn_layers_counted"], c["zen"])


if __name__ == "__main__":
    main()
