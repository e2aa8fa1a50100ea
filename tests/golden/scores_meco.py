#!/usr/bin/env python3
"""Makes tests/golden/scores_meco/cases.json, the PyTorch fixture of MeCo in
tests/scores_meco.rs (run by hand, not in CI):

    /opt/torchenv/bin/python tests/golden/scores_meco.py [--cargo-profile dev|release]

MeCo as the released `correlation/NAS_Bench_201.py` (HamsterMimi/MeCo) computes it, on a
network with the module tree of the zero-cost-NAS `NAS201Model` it builds
(foresight/models/nasbench2.py and nasbench2_ops.py), written here from that code's
structure, not from nasrank's plan:
  NAS201Model: stem(net = Sequential(Conv, BN)), stack_cell1..3 (Sequential of N
  SearchCells, each with all 5 ops of every edge in `options`, only the kept ones called),
  reduction1/2 (residual = Sequential(AvgPool2x2, Conv1x1); conv_a, conv_b ReLUConvBN with
  op = Sequential(ReLU, Conv, BN)), top(lastact = Sequential(BN, ReLU(inplace)),
  global_pooling), classifier; pre_GAP defined and never called. Cell convs have a bias
  (their BN is not affine), left at PyTorch's random default: it must not change MeCo.
A forward hook on every module of `named_modules()` takes its output's sample 0, reshaped
to C x (H W), `torch.corrcoef`, NaN and Inf set to 0, and the minimum real part of
`torch.linalg.eig`; MeCo is the sum over all firings (NaN/Inf dropped). The weights and the
single input image are nasrank's (tests/golden export, batch 1), so the Rust test checks
nasrank's module outputs, multiplicities, correlation and eigenvalues against this.

meco_opt: the same hooks, each firing on a map where some channel varies over the positions
takes 8 channels drawn as nasrank draws them (SplitMix64(Seeds(seed).meco_channels()),
partial Fisher-Yates with `below`), the minimum eigenvalue of their correlation times C/8.
The released code's `random.sample` is unseeded, so this is the only way to compare.

Values are computed in float64 (the hooks' eigenvalues of rank-deficient maps are rounding
noise, ~1e-7 in float32) and in float32 as released, to show the gap.
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

# The released OPS dict order: the `options` of a SearchCell edge.
SAMSUNG_OPS = ["none", "avg_pool_3x3", "nor_conv_3x3", "nor_conv_1x1", "skip_connect"]
MECO_TAG = 0x4D45_434F_4F50_5400

MIXED = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
ZERO_FED = "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_3x3~2|"
DEAD = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
DEAD_END_POOL = "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"

# arch, seed, (C, N, classes, size)
SMALL = (8, 2, 10, 16)
FULL = (16, 5, 10, 32)
CASES = [(MIXED, 61, SMALL), (ZERO_FED, 62, SMALL), (DEAD, 63, SMALL), (ALL_SKIP, 64, SMALL),
         (DEAD_END_POOL, 65, SMALL), (MIXED, 66, FULL)]


class ReLUConvBN(nn.Module):
    def __init__(self, cin, cout, k, stride, pad, affine):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=not affine),
            nn.BatchNorm2d(cout, affine=affine, track_running_stats=affine))

    def forward(self, x):
        return self.op(x)


class Identity(nn.Module):
    def forward(self, x):
        return x


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


class Pooling(nn.Module):
    def __init__(self):
        super().__init__()
        self.avgpool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x):
        return self.avgpool(x)


def make_op(name, c):
    if name == "none":
        return Zero()
    if name == "avg_pool_3x3":
        return Pooling()
    if name == "skip_connect":
        return Identity()
    k = nb201_torch.CONV_KERNEL[name]
    return ReLUConvBN(c, c, k, 1, k // 2, affine=False)


class SearchCell(nn.Module):
    def __init__(self, c, kept):
        super().__init__()
        self.options = nn.ModuleList(
            [make_op(op, c) for _ in nb201_torch.EDGES for op in SAMSUNG_OPS])
        self.keep = [op in kept[e] for e in range(len(nb201_torch.EDGES)) for op in SAMSUNG_OPS]

    def forward(self, x):
        outs = [x]
        idx = 0
        for to in range(1, 4):
            terms = []
            for frm in range(to):
                for _ in SAMSUNG_OPS:
                    if self.keep[idx]:
                        terms.append(self.options[idx](outs[frm]))
                    idx += 1
            outs.append(sum(terms))
        return outs[-1]


class Reduction(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.residual = nn.Sequential(nn.AvgPool2d(2, stride=2, padding=0),
                                      nn.Conv2d(cin, cout, 1, bias=False))
        self.conv_a = ReLUConvBN(cin, cout, 3, 2, 1, affine=True)
        self.conv_b = ReLUConvBN(cout, cout, 3, 1, 1, affine=True)

    def forward(self, x):
        # The released order: the hooks of conv_a and conv_b fire before the residual's.
        basicblock = self.conv_b(self.conv_a(x))
        return self.residual(x) + basicblock


class Stem(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return self.net(x)


class Top(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.global_pooling(self.lastact(x))
        return x.view(x.size(0), -1)


class NAS201Model(nn.Module):
    def __init__(self, arch, c, n, classes):
        super().__init__()
        kept = nb201_torch.parse_cell(arch)
        self.stem = Stem(c)
        self.stack_cell1 = nn.Sequential(*[SearchCell(c, kept) for _ in range(n)])
        self.reduction1 = Reduction(c, 2 * c)
        self.stack_cell2 = nn.Sequential(*[SearchCell(2 * c, kept) for _ in range(n)])
        self.reduction2 = Reduction(2 * c, 4 * c)
        self.stack_cell3 = nn.Sequential(*[SearchCell(4 * c, kept) for _ in range(n)])
        self.top = Top(4 * c)
        self.classifier = nn.Linear(4 * c, classes)
        self.pre_GAP = nn.Sequential(nn.BatchNorm2d(4 * c), nn.ReLU(inplace=True))

    def forward(self, x):
        x = self.stem(x)
        x = self.reduction1(self.stack_cell1(x))
        x = self.reduction2(self.stack_cell2(x))
        return self.classifier(self.top(self.stack_cell3(x)))


def samsung_name(name, n):
    """The NAS201Model parameter of a nasrank parameter name (None: no such parameter,
    the cell BNs are not affine)."""
    if name.startswith("stem.conv."):
        return "stem.net.0." + name.split(".")[-1]
    if name.startswith("stem.bn."):
        return "stem.net.1." + name.split(".")[-1]
    if name.startswith("lastact.bn."):
        return "top.lastact.0." + name.split(".")[-1]
    if name.startswith("classifier."):
        return name
    parts = name.split(".")
    p = int(parts[1])
    stage, within = divmod(p, n + 1)
    if within == n:  # a reduction block after stage `stage`
        block = f"reduction{stage + 1}"
        part, layer, what = parts[2], parts[3], parts[4]
        if part == "shortcut":
            return f"{block}.residual.1.{what}"
        return f"{block}.{part}.op.{1 if layer == 'conv' else 2}.{what}"
    cell = f"stack_cell{stage + 1}.{within}"
    edge, op, layer, what = parts[2], parts[3], parts[4], parts[5]
    frm, to = int(edge[4]), int(edge[5])
    idx = nb201_torch.EDGES.index((frm, to)) * len(SAMSUNG_OPS) + SAMSUNG_OPS.index(op)
    if layer == "bn":
        return None
    return f"{cell}.options.{idx}.op.1.{what}"


def load(model, exported, n):
    own = dict(model.named_parameters())
    for name, value in nb201_torch.exported_params(exported).items():
        target = samsung_name(name, n)
        if target is None:
            assert np.all(value == (1 if name.endswith(".weight") else 0)), name
            continue
        p = own[target]
        with torch.no_grad():
            p.copy_(torch.as_tensor(value, dtype=p.dtype).reshape(p.shape))


def meco_channels(seed):
    return nb201_torch.SplitMix64(seed ^ MECO_TAG).next_u64()


def min_eig(fea):
    corr = torch.corrcoef(fea)
    corr[torch.isnan(corr)] = 0
    corr[torch.isinf(corr)] = 0
    return torch.min(torch.real(torch.linalg.eig(corr)[0]))


def hooked(model, x, seed):
    """(meco, meco_opt, firings, firings where some channel varies) of one forward pass."""
    meco, opt = [], []
    rng = nb201_torch.SplitMix64(meco_channels(seed))
    firings = [0, 0]

    def hook(_module, _inputs, output):
        fea = output[0].clone().detach()
        c = fea.shape[0]
        fea = fea.reshape(c, -1)
        firings[0] += 1
        meco.append(min_eig(fea))
        if not torch.any(fea.amax(dim=1) != fea.amin(dim=1)):
            # No channel varies (one position, a zero map, or a cell conv's bias alone):
            # the value is 0 and nasrank draws no channels for it.
            return
        firings[1] += 1
        k = min(8, c)
        pool = list(range(c))
        for i in range(k):
            j = i + rng.below(c - i)
            pool[i], pool[j] = pool[j], pool[i]
        opt.append(min_eig(fea[pool[:k], :]) * c / k)

    handles = [m.register_forward_hook(hook) for _, m in model.named_modules()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()

    def total(values):
        t = torch.stack(values)
        t = t[torch.isfinite(t)]
        return float(t.sum())

    return total(meco), total(opt), firings[0], firings[1]


def case(profile, arch, seed, shape):
    c, n, classes, size = shape
    exported = nb201_torch.export(profile, arch, c, n, classes, size, 1, seed, True)
    x = np.asarray(exported["input"], dtype=np.float32).reshape(exported["input_shape"])
    out = {"arch": arch, "config": exported["config"], "seed": seed, "batch": 1,
           "meco_channels_seed": str(meco_channels(seed))}
    for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        torch.manual_seed(seed)  # the cell convs' biases
        model = NAS201Model(arch, c, n, classes)
        load(model, exported, n)
        model = model.to(dtype).train()
        meco, opt, firings, spread = hooked(model, torch.tensor(x, dtype=dtype), seed)
        out[f"meco_{tag}"] = meco
        out[f"meco_opt_{tag}"] = opt
        out["hook_firings"] = firings
        out["firings_varying"] = spread
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cargo-profile", default="dev", choices=["dev", "release"])
    a = p.parse_args()
    torch.set_num_threads(1)
    cases = [case(a.cargo_profile, arch, seed, shape) for arch, seed, shape in CASES]
    out = os.path.join(ROOT, "tests", "golden", "scores_meco", "cases.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"meco": cases}, f, indent=1)
        f.write("\n")
    for c in cases:
        print(c["arch"], c["config"]["channels"], c["hook_firings"], c["firings_varying"],
              c["meco_f64"], c["meco_f32"], c["meco_opt_f64"], c["meco_opt_f32"])


if __name__ == "__main__":
    main()
