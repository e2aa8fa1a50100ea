"""An independent PyTorch implementation of the NAS-Bench-201 TinyNetwork.

Written from ../shared/spec/nb201.md ("The network"), not from nasrank's plan builder:
it is the reference the golden fixtures (tests/golden/) and the PyTorch timings
(tools/bench_torch.py) are made with.

The network (C channels, N cells per stage):
  stem      Conv3x3(in -> C, pad 1, no bias) -> BN            (optional)
  stage 1   N cells at C channels
  resblock  C -> 2C, stride 2
  stage 2   N cells at 2C
  resblock  2C -> 4C, stride 2
  stage 3   N cells at 4C
  lastact   BN -> ReLU; global average pool; Linear(4C, classes) with bias.

A cell has 4 nodes; node 0 is the cell input, node i (1..3) is the sum over j < i of
op_{j->i}(node_j); the output is node 3. Ops:
  none          x * 0
  skip_connect  x
  nor_conv_kxk  ReLU -> Conv(k, pad k//2, no bias) -> BN(affine, eps 1e-5)
  avg_pool_3x3  AvgPool2d(3, stride 1, pad 1, count_include_pad=False)
An edge may carry several ops (a supernet edge): its output is the sum of theirs.

Every conv op has its own ReLU module, so a node that feeds k conv edges is seen by k
ReLU modules with identical inputs (NASWOT counts each).

Parameter names follow nasrank (they key its initialisation):
  stem.conv.weight, stem.bn.weight, stem.bn.bias,
  cells.{p}.edge{from}{to}.{op}.conv.weight / .bn.weight / .bn.bias,
  cells.{p}.conv_a.conv.weight, cells.{p}.conv_a.bn.weight, ... conv_b ..., 
  cells.{p}.shortcut.conv.weight,
  lastact.bn.weight, lastact.bn.bias, classifier.weight, classifier.bias,
where the position p counts cells and reduction blocks alike: with N cells per stage,
0..N-1 are cells, N the first reduction block, N+1..2N cells, 2N+1 the second block, ...
"""

import json
import math
import os
import subprocess

import numpy as np
import torch
import torch.nn as nn

OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
EDGES = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
CONV_KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


def parse_cell(text):
    """The ops of each of the 6 edges (in EDGES order) of an arch string.

    Accepts `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` (an edge may appear more than once in
    a node: a supernet edge carrying several ops) or a comma list of 6 edges, each an op
    name or several joined by `+`.
    """
    edges = [[] for _ in EDGES]
    text = text.strip()
    if text.startswith("|"):
        nodes = text.split("+")
        if len(nodes) != 3:
            raise ValueError(f"expected 3 nodes in {text!r}")
        for to, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")):
                raise ValueError(f"bad node {node!r}")
            for item in node[1:-1].split("|"):
                op, _, frm = item.partition("~")
                frm = int(frm)
                if op not in OPS or not 0 <= frm < to:
                    raise ValueError(f"bad edge {item!r}")
                edges[EDGES.index((frm, to))].append(op)
    else:
        items = text.split(",")
        if len(items) != 6:
            raise ValueError(f"expected 6 comma-separated edges in {text!r}")
        for e, item in enumerate(items):
            for op in item.split("+"):
                if op not in OPS:
                    raise ValueError(f"unknown op {op!r}")
                edges[e].append(op)
    for e, ops in enumerate(edges):
        if not ops:
            raise ValueError(f"edge {EDGES[e]} has no op")
        if len(set(ops)) != len(ops):
            raise ValueError(f"edge {EDGES[e]} repeats an op")
    return edges


class ReLUConvBN(nn.Module):
    def __init__(self, cin, cout, k, stride, pad):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, affine=True)

    def forward(self, x):
        return self.bn(self.conv(self.relu(x)))


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


class Identity(nn.Module):
    def forward(self, x):
        return x


def make_op(name, c):
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return Identity()
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    k = CONV_KERNEL[name]
    return ReLUConvBN(c, c, k, 1, k // 2)


class Cell(nn.Module):
    def __init__(self, edges, c):
        super().__init__()
        self.edge_ops = edges
        for (frm, to), ops in zip(EDGES, edges):
            self.add_module(
                f"edge{frm}{to}", nn.ModuleDict({op: make_op(op, c) for op in ops})
            )

    def forward(self, x):
        nodes = [x]
        for to in range(1, 4):
            total = None
            for (frm, t), ops in zip(EDGES, self.edge_ops):
                if t != to:
                    continue
                edge = getattr(self, f"edge{frm}{to}")
                for op in ops:
                    out = edge[op](nodes[frm])
                    total = out if total is None else total + out
            nodes.append(total)
        return nodes[3]


class ResBlock(nn.Module):
    """ReLU-Conv3x3(s2)-BN -> ReLU-Conv3x3-BN, plus AvgPool2x2 -> Conv1x1 shortcut."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv_a = ReLUConvBN(cin, cout, 3, 2, 1)
        self.conv_b = ReLUConvBN(cout, cout, 3, 1, 1)
        self.shortcut = nn.Module()
        self.shortcut.pool = nn.AvgPool2d(2, stride=2, padding=0)
        self.shortcut.conv = nn.Conv2d(cin, cout, 1, stride=1, padding=0, bias=False)

    def forward(self, x):
        return self.shortcut.conv(self.shortcut.pool(x)) + self.conv_b(self.conv_a(x))


class Stem(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.conv = nn.Conv2d(cin, c, 3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c, eps=1e-5, affine=True)

    def forward(self, x):
        return self.bn(self.conv(x))


class LastAct(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bn = nn.BatchNorm2d(c, eps=1e-5, affine=True)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x):
        return self.relu(self.bn(x))


class TinyNetwork(nn.Module):
    def __init__(self, arch, channels=16, cells_per_stage=5, classes=10,
                 input_channels=3, stem=True):
        super().__init__()
        edges = parse_cell(arch) if isinstance(arch, str) else arch
        if not stem and input_channels != channels:
            raise ValueError("without a stem the input must have `channels` channels")
        self.stem = Stem(input_channels, channels) if stem else None
        cells = []
        c = channels
        for stage in range(3):
            if stage > 0:
                cells.append(ResBlock(c, 2 * c))
                c *= 2
            for _ in range(cells_per_stage):
                cells.append(Cell(edges, c))
        self.cells = nn.ModuleList(cells)
        self.lastact = LastAct(c)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, classes, bias=True)

    def forward(self, x):
        if self.stem is not None:
            x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        x = self.pool(self.lastact(x)).flatten(1)
        return self.classifier(x)

    def relu_modules(self):
        """(name, module) of every ReLU module, in forward order of definition."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, nn.ReLU)]


def load_params(model, params):
    """Sets parameters by name from `{name: array-like}`; names must exist with the same
    shape. Parameters not in `params` keep their values. Returns the names not set."""
    own = dict(model.named_parameters())
    for name, value in params.items():
        if name not in own:
            raise KeyError(f"no parameter {name!r} in the PyTorch model")
        p = own[name]
        t = torch.as_tensor(value, dtype=p.dtype).reshape(p.shape)
        if tuple(t.shape) != tuple(p.shape):
            raise ValueError(f"{name}: shape {tuple(t.shape)} != {tuple(p.shape)}")
        with torch.no_grad():
            p.copy_(t)
    return sorted(set(own) - set(params))


class ReluRecorder:
    """Records the input of every ReLU module (one entry per module, so a node feeding k
    conv edges appears k times) during forward passes."""

    def __init__(self, model):
        self.inputs = []
        self.handles = [
            m.register_forward_hook(self._hook(name)) for name, m in model.relu_modules()
        ]

    def _hook(self, name):
        def hook(_module, args, _output):
            self.inputs.append((name, args[0].detach().clone()))

        return hook

    def clear(self):
        self.inputs = []

    def remove(self):
        for h in self.handles:
            h.remove()


def naswot_kernel(relu_inputs):
    """K_H[i][j] = number of ReLU units (over every module) where the codes (input > 0)
    of images i and j agree; plus per-image counts of ones and units per image."""
    k = None
    ones = None
    units = 0
    for _name, x in relu_inputs:
        bits = (x.reshape(x.shape[0], -1) > 0).to(torch.int64)
        agree = bits @ bits.T + (1 - bits) @ (1 - bits).T
        k = agree if k is None else k + agree
        o = bits.sum(1)
        ones = o if ones is None else ones + o
        units += bits.shape[1]
    return k, ones, units


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export(profile, arch, c, n, classes, size, batch, seed, stem):
    """Weights, input and labels that nasrank draws for a network, as its golden_export
    example prints them (`profile` "release" builds it in release mode)."""
    cmd = ["cargo", "run", "--quiet", "--example", "golden_export"]
    if profile == "release":
        cmd.append("--release")
    cmd += ["--", arch, str(c), str(n), str(classes), str(size), str(batch), str(seed),
            "stem" if stem else "nostem"]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def exported_params(exported):
    """`{name: float32 array}` of an export."""
    return {p["name"]: np.asarray(p["values"], dtype=np.float32).reshape(p["shape"])
            for p in exported["params"]}


def model_from_export(exported, dtype=torch.float64):
    """The exported network in PyTorch, its weights loaded, in training mode."""
    cfg = exported["config"]
    model = TinyNetwork(
        exported["cell"], channels=cfg["channels"], cells_per_stage=cfg["cells_per_stage"],
        classes=cfg["classes"], input_channels=cfg["input_channels"], stem=cfg["stem"])
    load_params(model, exported_params(exported))
    model = model.to(dtype)
    model.train()
    return model


MASK64 = (1 << 64) - 1


class SplitMix64:
    """engine/data/rng.rs's generator, reimplemented for the golden scripts: the same u64
    stream, `below` (Lemire's multiply-and-reject), `next_f64` (53 bits) and `normal_pair`
    (Box-Muller with Python's math library, which may differ from Rust's in the last bit)."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, bound):
        threshold = ((-bound) & MASK64) % bound
        while True:
            m = self.next_u64() * bound
            if (m & MASK64) >= threshold:
                return m >> 64

    def next_f64(self):
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def normal_pair(self):
        radius = math.sqrt(-2.0 * math.log(1.0 - self.next_f64()))
        angle = 2.0 * math.pi * self.next_f64()
        return radius * math.cos(angle), radius * math.sin(angle)
