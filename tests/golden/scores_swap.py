#!/usr/bin/env python3
"""Makes tests/golden/scores_swap/cases.json, the PyTorch fixture of SWAP in
tests/scores_swap.rs (run by hand, not in CI):

    /opt/torchenv/bin/python tests/golden/scores_swap.py [--cargo-profile dev|release]

SWAP as the released `src/metrics/swap.py` (pym1024/SWAP @ f6049f7c) computes it, on the
independent PyTorch network of tools/nb201_torch.py (C=4, N=2, stem, 8x8 inputs, B=16,
train-mode BN, float32 as the released code runs):
  - a forward hook on every nn.ReLU module keeps its output when its input is 4-D;
  - the outputs, each flattened per sample, are concatenated into A (B x neurons);
  - SWAP = the number of distinct rows of sign(A)^T (one B-bit pattern per neuron).
Per case, `reinits` re-initialisations: re-initialisation r takes the N(0, 1) weights that
nasrank draws for it (the exporter's `gaussian:WSEED` with WSEED = Seeds(seed).swap_weights(r),
the SplitMix64 derivation of engine/data/seeds.rs reimplemented here); the fixture holds
every re-initialisation's count and their mean. Each case also records how many ReLU sign
bits differ between float32 and float64 runs (a count that can differ from nasrank's by
rounding only where that is non-zero), and swap_reg's factor as the released
`cal_regular_factor` computes it (parameters counted over `named_parameters` without
'auxiliary', in thousands) for the fixed REG_MU and REG_SIGMA.
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

SWAP_TAG = 0x5357_4150_5357_4150

MIXED = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
ZERO_FED = "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_3x3~2|"
DEAD = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
ALL_CONV = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
            "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")

# arch, seed, re-initialisations
CASES = [(MIXED, 51, 3), (ZERO_FED, 52, 3), (DEAD, 53, 2), (ALL_SKIP, 54, 2), (ALL_CONV, 55, 3)]
C, N, CLASSES, SIZE, BATCH = 4, 2, 10, 8, 16
# swap_reg's mu and sigma for the fixture's small networks (Θ of a few thousand).
REG_MU, REG_SIGMA = 15.0, 400.0


def swap_weights(seed, r):
    """engine/data/seeds.rs `Seeds::swap_weights`: the (r+1)-th draw of
    SplitMix64(seed ^ SWAP_TAG)."""
    rng = nb201_torch.SplitMix64(seed ^ SWAP_TAG)
    for _ in range(r):
        rng.next_u64()
    return rng.next_u64()


def export(profile, arch, seed, wseed):
    cmd = ["cargo", "run", "--quiet", "--example", "golden_export"]
    if profile == "release":
        cmd.append("--release")
    cmd += ["--", arch, str(C), str(N), str(CLASSES), str(SIZE), str(BATCH), str(seed), "stem",
            f"gaussian:{wseed}"]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def relu_outputs(model, x):
    """The released hook rule: every nn.ReLU whose input is 4-D, its output."""
    seen = []

    def hook(_module, inputs, output):
        if isinstance(inputs, tuple) and len(inputs[0].size()) == 4:
            seen.append(output.detach())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def swap_count(outputs, batch):
    activations = torch.cat([f.view(batch, -1) for f in outputs], 1)
    return int(torch.unique(torch.sign(activations).T, dim=0).size(0))


def released_regular_factor(model, mu, sigma):
    """The released `cal_regular_factor`: exp(-(Θ - mu)^2 / sigma), Θ = parameters / 1e3."""
    params_mb = np.sum([np.prod(v.size()) for name, v in model.named_parameters()
                        if "auxiliary" not in name]) / 1e6
    theta = torch.as_tensor(params_mb * 1e3)
    return float(torch.exp(-(torch.pow(theta - mu, 2) / sigma))), int(round(params_mb * 1e6))


def case(profile, arch, seed, reinits):
    counts, flips = [], 0
    for r in range(reinits):
        wseed = swap_weights(seed, r)
        exported = export(profile, arch, seed, wseed)
        x = np.asarray(exported["input"], dtype=np.float32).reshape(exported["input_shape"])
        outs = {}
        for dtype in (torch.float32, torch.float64):
            model = nb201_torch.model_from_export(exported, dtype)
            outs[dtype] = relu_outputs(model, torch.tensor(x, dtype=dtype))
        counts.append(swap_count(outs[torch.float32], BATCH))
        flips += sum(int(((a > 0) != (b > 0)).sum())
                     for a, b in zip(outs[torch.float32], outs[torch.float64]))
        relu_modules = len(outs[torch.float32])
    factor, params = released_regular_factor(model, REG_MU, REG_SIGMA)
    return {
        "arch": arch,
        "config": exported["config"],
        "seed": seed,
        "batch": BATCH,
        "reinits": reinits,
        "weight_seeds": [str(swap_weights(seed, r)) for r in range(reinits)],
        "relu_modules": relu_modules,
        "counts": counts,
        "swap": float(np.mean(counts)),
        "relu_bit_flips_f32_vs_f64": flips,
        "params": params,
        "swap_reg_mu": REG_MU,
        "swap_reg_sigma": REG_SIGMA,
        "swap_reg_factor": factor,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cargo-profile", default="dev", choices=["dev", "release"])
    a = p.parse_args()
    torch.set_num_threads(1)
    cases = [case(a.cargo_profile, arch, seed, reinits) for arch, seed, reinits in CASES]
    out = os.path.join(ROOT, "tests", "golden", "scores_swap", "cases.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"swap": cases}, f, indent=1)
        f.write("\n")
    for c in cases:
        print(c["arch"], c["counts"], c["swap"], "flips", c["relu_bit_flips_f32_vs_f64"],
              "params", c["params"], "factor", c["swap_reg_factor"])


if __name__ == "__main__":
    main()
