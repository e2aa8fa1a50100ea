#!/usr/bin/env python3
"""Makes tests/golden/zero_cost/scores_zero_cost.json with PyTorch autograd (run by hand, not in CI).

    /opt/torchenv/bin/python tests/golden/scores_zero_cost.py [--cargo-profile dev|release]

The fixture sits in a subfolder: tests/golden.rs requires a test of its own for every .json
directly in tests/golden/.

For each case: nasrank's exporter (`cargo run --example golden_export`) gives the weights
(nasrank's init rounded to f32) and the input batch; they are loaded into the independent
PyTorch TinyNetwork of tools/nb201_torch.py, in float64, train mode, and the zero-cost
proxies are computed the way the released code of Abdelfattah et al. computes them:

  synflow    BN modules replaced by identities, every parameter |p|, one all-ones image,
             R = sum of logits; sum over Conv2d/Linear weights of |W * dR/dW|;
  snip       sum over Conv2d/Linear weights of |W * dL/dW| (L: mean cross-entropy);
  grad_norm  sum over Conv2d/Linear weights of ||dL/dW||_2;
  fisher     hooks on every Conv2d/Linear output a: sum over channels of
             mean_batch (sum_positions a * dL/da)^2 / 2;
  grasp      -sum over Conv2d/Linear weights of W * (H g), g = dL/dW detached, H g by
             double backward (exact Hessian-vector product);
  jacob_cov  J = d(sum of logits)/d(input) per image, C = np.corrcoef(J), eigenvalues by
             np.linalg.eig (real part), -sum(log(v + 1e-5) + 1/(v + 1e-5)).
"""

import argparse
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
    ("mixed",
     "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|",
     4, 1, 10, 8, 8, 21, True),
    ("convs",
     "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_3x3~1|nor_conv_3x3~2|",
     4, 1, 10, 8, 8, 22, False),
    ("zero_fed",
     "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_3x3~2|",
     3, 2, 5, 8, 6, 23, True),
]






def scored(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def strip_bn(module):
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.Identity())
        else:
            strip_bn(child)


def synflow(exported):
    model = nb201_torch.model_from_export(exported)
    strip_bn(model)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    shape = [1] + exported["input_shape"][1:]
    out = model(torch.ones(shape, dtype=torch.float64))
    out.sum().backward()
    return sum(float((m.weight * m.weight.grad).abs().sum().detach()) for m in scored(model)
               if m.weight.grad is not None)


def inputs(exported):
    x = torch.tensor(np.asarray(exported["input"], dtype=np.float32)
                     .reshape(exported["input_shape"]), dtype=torch.float64)
    y = torch.tensor(exported["labels"], dtype=torch.int64)
    return x, y


def saliency(exported):
    model = nb201_torch.model_from_export(exported)
    x, y = inputs(exported)
    acts = []

    def hook(_m, _args, out):
        out.retain_grad()
        acts.append(out)

    handles = [m.register_forward_hook(hook) for m in scored(model)]
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    for h in handles:
        h.remove()
    snip = grad_norm = 0.0
    for m in scored(model):
        if m.weight.grad is None:
            continue
        snip += float((m.weight * m.weight.grad).abs().sum().detach())
        grad_norm += float(m.weight.grad.norm())
    fisher = 0.0
    for a in acts:
        if a.grad is None:
            continue
        g = a * a.grad
        g_nk = g.sum(dim=list(range(2, g.dim()))) if g.dim() > 2 else g
        fisher += float(g_nk.pow(2).mean(0).mul(0.5).sum())
    return snip, grad_norm, fisher


def grasp(exported):
    model = nb201_torch.model_from_export(exported)
    x, y = inputs(exported)
    weights = [m.weight for m in scored(model)]
    loss = F.cross_entropy(model(x), y)
    g = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
    pairs = [(w, gi) for w, gi in zip(weights, g) if gi is not None]
    z = sum((gi * gi.detach()).sum() for _, gi in pairs)
    hg = torch.autograd.grad(z, [w for w, _ in pairs], allow_unused=True)
    return -sum(float((w * h).sum().detach()) for (w, _), h in zip(pairs, hg) if h is not None)


def jacob_cov(exported):
    model = nb201_torch.model_from_export(exported)
    x, _ = inputs(exported)
    x.requires_grad_(True)
    out = model(x)
    out.backward(torch.ones_like(out))
    j = x.grad.reshape(x.shape[0], -1).numpy()
    corrs = np.corrcoef(j)
    v, _ = np.linalg.eig(corrs)
    k = 1e-5
    return float(-np.sum(np.log(v.real + k) + 1.0 / (v.real + k)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cargo-profile", choices=["dev", "release"], default="dev")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cases = []
    for name, arch, c, n, classes, size, batch, seed, stem in CASES:
        exported = nb201_torch.export(args.cargo_profile, arch, c, n, classes, size, batch, seed, stem)
        exported["cell"] = nb201_torch.parse_cell(arch)
        snip, grad_norm, fisher = saliency(exported)
        scores = {
            "synflow": synflow(exported),
            "snip": snip,
            "grad_norm": grad_norm,
            "fisher": fisher,
            "grasp": grasp(exported),
            "jacob_cov": jacob_cov(exported),
        }
        cases.append({"name": name, "arch": arch, "config": exported["config"],
                      "seed": seed, "batch": batch, "scores": scores})
        print(name, scores)
    fixture = {
        "generator": "tests/golden/scores_zero_cost.py with tools/nb201_torch.py",
        "torch_version": torch.__version__,
        "dtype": "float64 (weights and input exactly representable in f32)",
        "cases": cases,
    }
    path = os.path.join(ROOT, "tests", "golden", "zero_cost", "scores_zero_cost.json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1, allow_nan=False)
        f.write("\n")


if __name__ == "__main__":
    main()
