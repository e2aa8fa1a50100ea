"""An independent PyTorch implementation of the NATS-Bench size-space network.

Written from ../shared/spec/nats_sss.md (A2, A3: the benchmark's `DynamicShapeTinyNet`
with its fixed cell), not from nasrank's plan builder. With widths C1..C5 and input side H:
  stem      Conv3x3(3 -> C1, pad 1, no bias) -> BN
  cell      C1 -> C1 at H
  resblock  C1 -> C2, stride 2 (H/2)
  cell      C2 -> C3 at H/2
  resblock  C3 -> C4, stride 2 (H/4)
  cell      C4 -> C5 at H/4
  lastact   BN -> ReLU; global average pool; Linear(C5, classes) with bias.
The cell is the fixed genotype (topology-space arch 9930)
  |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|
An edge leaving node 0 maps Cin -> Cout, the others Cout -> Cout; a skip edge whose widths
differ is conv1x1 (no bias) -> BN, no ReLU (the benchmark's FactorizedReduce at stride 1).

Parameter names follow nasrank (tools/nb201_torch.py's scheme): the width-changing skip
is `cells.{p}.edge03.skip_connect.conv.weight` and `.bn.weight` / `.bn.bias`.
"""

import torch
import torch.nn as nn

import nb201_torch

GENOTYPE = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
            "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")


class ConvBN(nn.Module):
    """conv1x1 -> BN: a skip edge that changes the width."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, affine=True)

    def forward(self, x):
        return self.bn(self.conv(x))


class SizedCell(nb201_torch.Cell):
    """The fixed cell from `cin` to `cout` channels (nb201_torch.Cell's forward)."""

    def __init__(self, cin, cout):
        nn.Module.__init__(self)
        self.edge_ops = nb201_torch.parse_cell(GENOTYPE)
        for (frm, to), ops in zip(nb201_torch.EDGES, self.edge_ops):
            c = cin if frm == 0 else cout
            mods = {}
            for op in ops:
                if op == "skip_connect":
                    mods[op] = ConvBN(c, cout) if c != cout else nb201_torch.Identity()
                else:
                    k = nb201_torch.CONV_KERNEL[op]
                    mods[op] = nb201_torch.ReLUConvBN(c, cout, k, 1, k // 2)
            self.add_module(f"edge{frm}{to}", nn.ModuleDict(mods))


class SizedNetwork(nn.Module):
    def __init__(self, widths, classes=10):
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        self.stem = nb201_torch.Stem(3, c1)
        self.cells = nn.ModuleList([
            SizedCell(c1, c1), nb201_torch.ResBlock(c1, c2), SizedCell(c2, c3),
            nb201_torch.ResBlock(c3, c4), SizedCell(c4, c5)])
        self.lastact = nb201_torch.LastAct(c5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c5, classes, bias=True)

    def forward(self, x):
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.classifier(self.pool(self.lastact(x)).flatten(1))


def params_and_flops(model, size):
    """The benchmark's counts (spec A4): every parameter; multiply-adds of convs and linear
    layers per image (plus their bias adds), measured with forward hooks on one image."""
    flops = [0]

    def conv_hook(m, _inp, out):
        kh, kw = m.kernel_size
        flops[0] += kh * kw * m.in_channels * m.out_channels * out.shape[2] * out.shape[3]

    def linear_hook(m, _inp, _out):
        flops[0] += m.in_features * m.out_features + (m.out_features if m.bias is not None else 0)

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules()
             if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules()
              if isinstance(m, nn.Linear)]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return sum(p.numel() for p in model.parameters()), flops[0]
