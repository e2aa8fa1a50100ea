#!/usr/bin/env python3
"""Makes tests/golden/sss_network/cases.json, the PyTorch fixture of the NATS-Bench
size-space network in tests/sss_network.rs (run by hand, not in CI):

    /opt/torchenv/bin/python tests/golden/sss_network.py [--cargo-profile dev|release]

For each case: nasrank's exporter (`golden_export sss:C1:C2:C3:C4:C5 ...`) gives the
weights (nasrank's init, rounded to f32), the input and the labels; the independent network
of tools/nats_sss_torch.py loads them by name (every exported parameter must exist there
with the same shape, and every parameter there must be exported), runs forward in train
mode (batch statistics) and backward through the mean cross-entropy in float64, and the
fixture records:
  params, flops     the benchmark's counts of the PyTorch network (parameters; conv and
                    linear multiply-adds per image by forward hooks);
  logits, loss;     input_grad (d loss / d input, flat);
  grad_checksums    per parameter, sum(g) and sum((e % 97 + 1) * g[e]) over its flat
                    gradient (compact, and sensitive to any misplaced entry);
  naswot_kernel     NASWOT's K_H on the batch (scores_codes.py's paper rule: every nn.ReLU
                    module's input codes once), row-major, exact integers;
  synflow           scores_zero_cost.py's synflow (BN removed, |p|, one all-ones image,
                    sum over Conv2d/Linear weights of |W * dR/dW|).
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import nats_sss_torch  # noqa: E402
import nb201_torch  # noqa: E402
from scores_codes import kernel, record  # noqa: E402
from scores_zero_cost import scored, strip_bn  # noqa: E402

# widths, classes, input size, batch, seed
CASES = [
    ((8, 8, 8, 8, 8), 10, 16, 3, 81),          # the smallest arch
    ((64, 64, 64, 64, 64), 10, 16, 2, 82),     # the largest
    ((8, 24, 16, 40, 64), 10, 16, 3, 83),      # both width-changing skips
    ((16, 8, 56, 32, 32), 100, 32, 2, 84),     # a narrowing reduction, CIFAR-100's head
    ((24, 48, 48, 8, 40), 120, 16, 2, 85),     # ImageNet16-120's head
]


def checksums(t):
    flat = t.detach().reshape(-1).double()
    weights = torch.arange(flat.numel(), dtype=torch.float64) % 97 + 1
    return [float(flat.sum()), float((weights * flat).sum())]


def case(profile, widths, classes, size, batch, seed):
    arch = "sss:" + ":".join(map(str, widths))
    exported = nb201_torch.export(profile, arch, 1, 1, classes, size, batch, seed, True)
    model = nats_sss_torch.SizedNetwork(widths, classes)
    params, flops = nats_sss_torch.params_and_flops(model, size)
    left = nb201_torch.load_params(model, nb201_torch.exported_params(exported))
    assert not left, f"not exported: {left}"
    model = model.double().train()
    x = torch.tensor(np.asarray(exported["input"]).reshape(exported["input_shape"]),
                     dtype=torch.float64, requires_grad=True)
    labels = torch.tensor(exported["labels"])
    logits = model(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()

    def loaded():
        m = nats_sss_torch.SizedNetwork(widths, classes)
        nb201_torch.load_params(m, nb201_torch.exported_params(exported))
        return m.double().train()

    coded = loaded()
    seen, handles = record(coded, lambda m: isinstance(m, torch.nn.ReLU))
    with torch.no_grad():
        coded(x.detach())
    for h in handles:
        h.remove()
    flow = loaded()
    strip_bn(flow)
    with torch.no_grad():
        for p in flow.parameters():
            p.abs_()
    flow(torch.ones([1, 3, size, size], dtype=torch.float64)).sum().backward()
    synflow = sum(float((m.weight * m.weight.grad).abs().sum().detach()) for m in scored(flow))
    return {
        "widths": list(widths), "classes": classes, "input_size": size, "batch": batch,
        "seed": seed, "params": params, "flops": flops,
        "logits": logits.detach().reshape(-1).tolist(), "loss": float(loss),
        "input_grad": x.grad.reshape(-1).tolist(),
        "grad_checksums": {n: checksums(p.grad) for n, p in model.named_parameters()},
        "naswot_kernel": [int(v) for v in kernel(seen).reshape(-1)],
        "synflow": synflow,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cargo-profile", default="dev", choices=["dev", "release"])
    a = p.parse_args()
    torch.set_num_threads(1)
    cases = [case(a.cargo_profile, *c) for c in CASES]
    out = os.path.join(ROOT, "tests", "golden", "sss_network", "cases.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"sss_network": cases}, f, indent=1)
        f.write("\n")
    for c in cases:
        print(c["widths"], c["params"], c["flops"], c["loss"])


if __name__ == "__main__":
    main()
