#!/usr/bin/env python3
"""Makes tests/golden/scores_gram/cases.json, the PyTorch values of tests/scores_gram.rs
(run by hand, not in CI):

    /opt/torchenv/bin/python tests/golden/scores_gram.py [--cargo-profile dev|release]

For each case: nasrank's exporter (`cargo run --example golden_export`) gives the weights
(nasrank's init rounded to f32) and the input; the independent PyTorch TinyNetwork of
tools/nb201_torch.py is loaded with them and run in float64, training mode:

  ntk_exact   TE-NAS as its released code does it: one batched forward, then B backward
              passes of logits[b:b+1] with a ones seed (retain_graph), row b = the grads
              of every parameter named `weight`; Theta = J J^T; kappa = max/min eigenvalue.
  ntk_frozen  the same rows with every BatchNorm2d's batch mean and variance detached
              (statistics used in the forward, constants in the backward).
  knas_gram   G[i][j] = <g_i, g_j>, g_i the gradient of image i's cross-entropy loss with
              image i forwarded alone (batch of one, training mode), over the parameters
              nasrank has (the exported ones); mgm = mean of G. `mgm_all_torch_params`
              is the same over every PyTorch parameter: it differs where nasrank prunes
              the BN of a conv fed by an identically zero node, whose shift still has a
              gradient in the reference model.
  zico        per-image cross-entropy gradients of the conv and linear weights with frozen
              statistics (as ntk_frozen), then the released code's formula: per tensor,
              np.std / np.mean(abs) over images, entries with nonzero std, log of the sum
              of ratios (tensors whose sum is 0 skipped), summed over tensors.
"""

import argparse
import json
import os
import sys
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import nb201_torch  # noqa: E402

# arch, C, N, classes, input size, batch, seed, stem
CASES = [
    # every op but none.
    ("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|",
     3, 1, 10, 8, 5, 101, True),
    # node 1 is zero: two convs fed by a zero node (pruned by nasrank).
    ("|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_3x3~2|",
     4, 1, 10, 8, 5, 102, False),
    # convs of nodes 1 and 2 reach no output: zero gradients (ZiCo skips them).
    ("|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|none~2|",
     3, 1, 10, 8, 6, 103, True),
    # all convs.
    ("|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|skip_connect~1|nor_conv_3x3~2|",
     3, 1, 10, 8, 4, 104, True),
]






def frozen_bn_forward(self, x):
    """Training-mode batch norm with the batch statistics detached."""
    mean = x.mean(dim=(0, 2, 3)).detach()
    var = x.var(dim=(0, 2, 3), unbiased=False).detach()
    shape = (1, -1, 1, 1)
    xhat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
    return xhat * self.weight.view(shape) + self.bias.view(shape)


def freeze_statistics(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.forward = types.MethodType(frozen_bn_forward, m)


def flat_grads(model, names):
    own = dict(model.named_parameters())
    return torch.cat([
        (own[n].grad if own[n].grad is not None else torch.zeros_like(own[n])).reshape(-1)
        for n in names])


def ntk(model, x):
    """Theta and kappa, TE-NAS style: B backward passes of one logits row each."""
    names = [n for n, p in model.named_parameters() if "weight" in n]
    logits = model(x)
    rows = []
    for b in range(x.shape[0]):
        model.zero_grad()
        logits[b:b + 1].backward(torch.ones_like(logits[b:b + 1]), retain_graph=True)
        rows.append(flat_grads(model, names))
    j = torch.stack(rows)
    theta = j @ j.T
    ev = torch.linalg.eigvalsh(theta)
    return theta, float(ev[-1] / ev[0])


def knas_gram(model, x, labels, names):
    rows = []
    for i in range(x.shape[0]):
        model.zero_grad()
        loss = F.cross_entropy(model(x[i:i + 1]), labels[i:i + 1])
        loss.backward()
        rows.append(flat_grads(model, names))
    g = torch.stack(rows)
    return g @ g.T


def zico(model, x, labels):
    logits = model(x)
    mods = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    per = {n: [] for n, _ in mods}
    for i in range(x.shape[0]):
        model.zero_grad()
        F.cross_entropy(logits[i:i + 1], labels[i:i + 1]).backward(retain_graph=True)
        for n, m in mods:
            g = m.weight.grad
            per[n].append((torch.zeros_like(m.weight) if g is None else g).reshape(-1).numpy().copy())
    score = 0.0
    for n, _ in mods:
        a = np.array(per[n])
        std = np.std(a, axis=0)
        nonzero = np.nonzero(std)[0]
        mean_abs = np.mean(np.abs(a), axis=0)
        tmpsum = np.sum(mean_abs[nonzero] / std[nonzero])
        if tmpsum != 0:
            score += float(np.log(tmpsum))
    return score


def make_case(profile, case):
    arch, c, n, classes, size, batch, seed, stem = case
    exported = nb201_torch.export(profile, arch, c, n, classes, size, batch, seed, stem)
    exported["cell"] = nb201_torch.parse_cell(arch)
    x = torch.tensor(np.asarray(exported["input"], dtype=np.float32)
                     .reshape(exported["input_shape"]), dtype=torch.float64)
    labels = torch.tensor(exported["labels"], dtype=torch.int64)
    exported_names = [p["name"] for p in exported["params"]]

    model = nb201_torch.model_from_export(exported)
    theta_exact, kappa_exact = ntk(model, x)
    g = knas_gram(model, x, labels, exported_names)
    g_all = knas_gram(model, x, labels, [n for n, _ in model.named_parameters()])

    frozen = nb201_torch.model_from_export(exported)
    freeze_statistics(frozen)
    theta_frozen, kappa_frozen = ntk(frozen, x)
    z = zico(frozen, x, labels)

    out = {
        "arch": arch,
        "config": exported["config"],
        "seed": seed,
        "batch": batch,
        "labels": exported["labels"],
        "input_sum": float(x.sum()),
        "ntk_exact": {"theta": theta_exact.tolist(), "kappa": kappa_exact},
        "ntk_frozen": {"theta": theta_frozen.tolist(), "kappa": kappa_frozen},
        "knas_gram": g.tolist(),
        "mgm": float(g.mean()),
        "mgm_all_torch_params": float(g_all.mean()),
        "zico": z,
    }
    print(f"{arch}: kappa exact {kappa_exact:.6g} frozen {kappa_frozen:.6g}, "
          f"mgm {out['mgm']:.6g} (all torch params {out['mgm_all_torch_params']:.6g}), "
          f"zico {z:.6g}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cargo-profile", choices=["dev", "release"], default="dev")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    fixture = {
        "generator": "tests/golden/scores_gram.py with tools/nb201_torch.py",
        "torch_version": torch.__version__,
        "dtype": "float64 (from the exported f32 weights and input)",
        "cases": [make_case(args.cargo_profile, c) for c in CASES],
    }
    path = os.path.join(ROOT, "tests", "golden", "scores_gram", "cases.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
