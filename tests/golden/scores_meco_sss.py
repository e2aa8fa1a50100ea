#!/usr/bin/env python3
"""Makes tests/golden/scores_meco_sss/cases.json, the PyTorch fixture of MeCo on the
NATS-Bench size space in tests/scores_meco.rs (run by hand, not in CI):

    /opt/torchenv/bin/python tests/golden/scores_meco_sss.py [--cargo-profile dev|release]

MeCo as the released `correlation/NAS_Bench_201.py` (HamsterMimi/MeCo) computes it with
`--search_space sss`: `get_cell_based_tiny_net(api.get_net_config(i, dataset))` builds
xautodl's `DynamicShapeTinyNet` (MeCo's copy, correlation/models/shape_infers/
InferTinyCellNet.py, whose forward returns the logits alone), `init_net(net, 'none',
'none')` keeps PyTorch's defaults, the BNs stay in training mode, one image. The module
tree is written here from that code's structure (cell_infers/cells.py `InferCell`,
cell_operations.py `ReLUConvBN`, `Identity`, `FactorizedReduce`, `ResNetBasicblock`), not
from nasrank's plan nor from tools/nats_sss_torch.py (whose module nesting differs):

  DynamicShapeTinyNet
    stem        Sequential(Conv3x3(3 -> C1, no bias), BN)
    cells       ModuleList, indexed by the forward, never called itself:
      0 InferCell(C1 -> C1)   2 InferCell(C2 -> C3)   4 InferCell(C4 -> C5)
      1 ResNetBasicblock(C1 -> C2, stride 2)   3 ResNetBasicblock(C3 -> C4, stride 2)
    lastact     Sequential(BN, ReLU(inplace=True))
    global_pooling  AdaptiveAvgPool2d(1)
    classifier  Linear(C5, classes)
  InferCell: `layers` ModuleList (never called) of the genotype's ops in node order
    |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|
    node i = sum of its ops on earlier nodes; the output is the last node. affine=True,
    track_running_stats=True: ReLUConvBN convs have no bias, every BN is affine.
  ReLUConvBN: op = Sequential(ReLU(inplace=False), Conv, BN).
  skip_connect: Identity when the widths agree, else FactorizedReduce at stride 1: a
    registered ReLU it does not call at stride 1, conv1x1 (no bias), BN.
  ResNetBasicblock(stride 2): conv_a (ReLUConvBN 3x3 stride 2), conv_b (ReLUConvBN 3x3),
    downsample = Sequential(AvgPool2d(2, 2), Conv1x1 no bias); forward calls conv_a, conv_b,
    then downsample, and returns residual + basicblock.

The hooks (`hooked`, shared with tests/golden/scores_meco.py): a forward hook on every
module of `named_modules()` takes its output's sample 0 as C x (H W), `torch.corrcoef`,
NaN and Inf set to 0, the minimum real part of `torch.linalg.eig`; MeCo sums over every
firing. meco_opt draws its 8 channels per firing on a map where some channel varies as
nasrank draws them (the released `random.sample` is unseeded). The weights and the image
are nasrank's (its golden_export of `sss:C1:C2:C3:C4:C5`, batch 1); every exported
parameter must exist in this tree with its shape and every parameter here must be
exported. Values in float64 and in float32 (as released).
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, HERE)
import nb201_torch  # noqa: E402
import scores_meco  # noqa: E402

# The genotype as `CellStructure` holds it: per node after the input, (op, input node).
GENOTYPE = [
    [("nor_conv_3x3", 0)],
    [("nor_conv_3x3", 0), ("nor_conv_3x3", 1)],
    [("skip_connect", 0), ("nor_conv_3x3", 1), ("nor_conv_3x3", 2)],
]

# widths, classes, input size, seed
CASES = [
    ((8, 8, 8, 8, 8), 10, 32, 91),          # the smallest arch, CIFAR's 32x32
    ((64, 64, 64, 64, 64), 10, 32, 92),     # the largest
    ((8, 24, 16, 40, 64), 10, 16, 93),      # both width-changing skips (C2 != C3, C4 != C5)
    ((16, 8, 56, 32, 32), 100, 32, 94),     # skip in cell 2 only, CIFAR-100's head
    ((24, 48, 48, 8, 40), 120, 16, 95),     # skip in cell 4 only, ImageNet16-120's head
    ((64, 32, 16, 8, 64), 10, 32, 96),      # narrowing blocks, widening cell 4
]


# The released cell_operations.py's ReLUConvBN and Identity, as the topology-space fixture
# has them (affine BN, conv without bias in the size space).
ReLUConvBN = scores_meco.ReLUConvBN
Identity = scores_meco.Identity


class FactorizedReduce(nn.Module):
    """At stride 1 (the only stride the size space's cells use): conv1x1 then BN; the ReLU
    is a registered module the forward does not call."""

    def __init__(self, cin, cout, affine=True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv = nn.Conv2d(cin, cout, 1, stride=1, padding=0, bias=not affine)
        self.bn = nn.BatchNorm2d(cout, affine=affine, track_running_stats=True)

    def forward(self, x):
        return self.bn(self.conv(x))


def make_op(name, cin, cout):
    if name == "skip_connect":
        return Identity() if cin == cout else FactorizedReduce(cin, cout)
    assert name == "nor_conv_3x3", name
    return ReLUConvBN(cin, cout, 3, 1, 1, True)


class InferCell(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.layers = nn.ModuleList()
        self.node_ix, self.node_in = [], []
        for node in GENOTYPE:
            ix, inn = [], []
            for op, frm in node:
                ix.append(len(self.layers))
                inn.append(frm)
                self.layers.append(make_op(op, cin if frm == 0 else cout, cout))
            self.node_ix.append(ix)
            self.node_in.append(inn)

    def forward(self, x):
        nodes = [x]
        for ix, inn in zip(self.node_ix, self.node_in):
            nodes.append(sum(self.layers[i](nodes[j]) for i, j in zip(ix, inn)))
        return nodes[-1]


class ResNetBasicblock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv_a = ReLUConvBN(cin, cout, 3, 2, 1, True)
        self.conv_b = ReLUConvBN(cout, cout, 3, 1, 1, True)
        self.downsample = nn.Sequential(nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
                                        nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x):
        basicblock = self.conv_b(self.conv_a(x))
        return self.downsample(x) + basicblock


class DynamicShapeTinyNet(nn.Module):
    def __init__(self, widths, classes):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]))
        self.cells = nn.ModuleList()
        prev = widths[0]
        for c, reduction in zip(widths, [False, True, False, True, False]):
            self.cells.append(ResNetBasicblock(prev, c) if reduction else InferCell(prev, c))
            prev = c
        self.lastact = nn.Sequential(nn.BatchNorm2d(prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev, classes)

    def forward(self, x):
        feature = self.stem(x)
        for cell in self.cells:
            feature = cell(feature)
        out = self.global_pooling(self.lastact(feature))
        return self.classifier(out.view(out.size(0), -1))


def released_name(name):
    """The parameter of this tree that a nasrank parameter name is."""
    parts = name.split(".")
    what = parts[-1]
    if name.startswith("stem."):
        return f"stem.{0 if parts[1] == 'conv' else 1}.{what}"
    if name.startswith("lastact.bn."):
        return f"lastact.0.{what}"
    if name.startswith("classifier."):
        return name
    p = parts[1]
    if parts[2] in ("conv_a", "conv_b"):
        return f"cells.{p}.{parts[2]}.op.{1 if parts[3] == 'conv' else 2}.{what}"
    if parts[2] == "shortcut":
        return f"cells.{p}.downsample.1.{what}"
    edge, op, layer = parts[2], parts[3], parts[4]
    frm, to = int(edge[4]), int(edge[5])
    # The position in `layers`: the genotype's ops in node order.
    index = [(f, t + 1) for t, node in enumerate(GENOTYPE) for _, f in node].index((frm, to))
    if op == "skip_connect":
        return f"cells.{p}.layers.{index}.{layer}.{what}"
    return f"cells.{p}.layers.{index}.op.{1 if layer == 'conv' else 2}.{what}"


def load(model, exported):
    own = dict(model.named_parameters())
    loaded = set()
    for name, value in nb201_torch.exported_params(exported).items():
        target = released_name(name)
        p = own[target]
        assert tuple(p.shape) == value.shape, (name, target, p.shape, value.shape)
        with torch.no_grad():
            p.copy_(torch.as_tensor(value, dtype=p.dtype))
        loaded.add(target)
    left = sorted(set(own) - loaded)
    assert not left, f"not exported: {left}"


def case(profile, widths, classes, size, seed):
    arch = "sss:" + ":".join(map(str, widths))
    exported = nb201_torch.export(profile, arch, 1, 1, classes, size, 1, seed, True)
    x = np.asarray(exported["input"], dtype=np.float32).reshape(exported["input_shape"])
    out = {"widths": list(widths), "classes": classes, "input_size": size, "seed": seed,
           "batch": 1, "meco_channels_seed": str(scores_meco.meco_channels(seed))}
    for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        model = DynamicShapeTinyNet(widths, classes)
        load(model, exported)
        model = model.to(dtype).train()
        meco, opt, firings, spread = scores_meco.hooked(model, torch.tensor(x, dtype=dtype), seed)
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
    cases = [case(a.cargo_profile, *c) for c in CASES]
    out = os.path.join(ROOT, "tests", "golden", "scores_meco_sss", "cases.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"meco_sss": cases}, f, indent=1)
        f.write("\n")
    for c in cases:
        print(c["widths"], c["classes"], c["input_size"], c["hook_firings"],
              c["firings_varying"], c["meco_f64"], c["meco_f32"], c["meco_opt_f64"],
              c["meco_opt_f32"])


if __name__ == "__main__":
    main()
