#!/usr/bin/env python3
"""PyTorch formulations of the training-free scores, timed per arch, for comparison with
`nasrank score` (docs/PERF.md).

    python tools/bench_scores_torch.py [--threads T] [--reps R] [--device cpu|cuda] [--json FILE]

C=16, N=5, 10 classes, 32x32 inputs (standard normal, fixed seed), BN in train mode, f32,
for the median and largest archs of tools/bench_torch.py. Each score as the papers'
released code computes it:
  naswot     batch 128: one forward with hooks on every ReLU module; K = c c^T + (1-c)(1-c)^T
             by float matrix products per module, summed; slogdet (Mellor et al.).
  ntk_exact  batch 32: one forward, then one backward per image of the summed logits of
             that image (retain_graph), gradients of the weights flattened into J; the
             eigenvalues of J J^T (TE-NAS's get_ntk_n).
  mgm        64 images, each forwarded and backpropagated alone (batch of one, CE loss);
             per-image gradients flattened; MGM = ||mean g||^2 (KNAS, paper quantity).
  swap       16 images, 32 re-initialisations of every conv and linear weight from N(0, 1),
             each a forward with hooks on every ReLU; distinct rows of sign(A)^T (SWAP).
  meco       1 image through zero-cost-NAS's NAS201Model module tree (the one in
             tests/golden/scores_meco.py), a hook on every module: corrcoef, eig, min real
             part, summed (MeCo's released NAS_Bench_201.py).
  meco_opt   the same with 8 channels per hook drawn by random.sample, min real part
             times C/8 (MeCo_opt as released).
  az_nas     64 N(0, 1) images, Kaiming-normal re-initialisation; stem and cell features,
             eigvalsh entropies, one autograd VJP per cell with a Rademacher probe,
             pixel-unshuffle, svdvals (AZ-NAS's released compute_az_nas_score.py).
Network construction is excluded from the timings. Prints torch version and threads.
"""

import argparse
import json
import os
import random
import statistics
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "golden"))
import nb201_torch  # noqa: E402
import scores_meco  # noqa: E402

ARCHS = [
    ("median",
     "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"),
    ("largest",
     "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"),
]


def naswot(model, x):
    rec = nb201_torch.ReluRecorder(model)
    with torch.no_grad():
        model(x)
    n = x.shape[0]
    k = torch.zeros(n, n, device=x.device)
    for _name, a in rec.inputs:
        c = (a.reshape(n, -1) > 0).float()
        k += c @ c.T + (1 - c) @ (1 - c).T
    rec.remove()
    return torch.linalg.slogdet(k.double())[1].item()


def weights(model):
    return [p for name, p in model.named_parameters() if name.endswith("weight")]


def ntk_exact(model, x):
    ws = weights(model)
    out = model(x)
    rows = []
    for b in range(x.shape[0]):
        model.zero_grad(set_to_none=True)
        out[b].sum().backward(retain_graph=True)
        rows.append(torch.cat([w.grad.reshape(-1) for w in ws if w.grad is not None]))
    j = torch.stack(rows).double()
    ev = torch.linalg.eigvalsh(j @ j.T)
    return (ev[-1] / ev[0]).item()


def mgm(model, x, labels):
    params = [p for p in model.parameters()]
    total = None
    for i in range(x.shape[0]):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[i:i + 1]), labels[i:i + 1]).backward()
        g = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None]).double()
        total = g if total is None else total + g
    mean = total / x.shape[0]
    return (mean @ mean).item()


def swap(model, x, reinits=32):
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    total = 0
    for _ in range(reinits):
        with torch.no_grad():
            for m in convs:
                torch.nn.init.normal_(m.weight)
        seen = []
        hooks = [m.register_forward_hook(lambda _m, i, o: seen.append(o.detach()))
                 for m in model.modules() if isinstance(m, torch.nn.ReLU)]
        with torch.no_grad():
            model(x)
        for h in hooks:
            h.remove()
        a = torch.cat([f.reshape(x.shape[0], -1) for f in seen], 1)
        total += torch.unique(torch.sign(a).T, dim=0).size(0)
    return total / reinits


def meco(model, x, channels=None):
    """MeCo; with `channels`, MeCo_opt: per hook that many channels sampled without
    replacement (`random.sample`, as released), lambda_min times C / channels."""
    values = []

    def hook(_m, _i, out):
        fea = out[0].detach().reshape(out[0].shape[0], -1)
        scale = 1.0
        if channels is not None:
            c = fea.shape[0]
            fea = fea[random.sample(range(c), channels)]
            scale = c / channels
        corr = torch.corrcoef(fea)
        corr[torch.isnan(corr)] = 0
        corr[torch.isinf(corr)] = 0
        values.append(torch.min(torch.real(torch.linalg.eig(corr)[0])) * scale)

    hooks = [m.register_forward_hook(hook) for _, m in model.named_modules()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    t = torch.stack(values)
    return float(t[torch.isfinite(t)].sum())


def az_nas(model, x):
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    feats = [model.stem(x)]
    for cell in model.cells:
        feats.append(cell(feats[-1]))
    entropies = []
    for f in feats:
        b, c, h, w = f.size()
        v = f.detach().permute(0, 2, 3, 1).reshape(b * h * w, c)
        v = v - v.mean(dim=0, keepdim=True)
        s = torch.linalg.eigvalsh(v.t() @ v / v.size(0))
        p = s / s.sum()
        entropies.append(float((-p * torch.log(p + 1e-8)).sum()))
    cells = []
    for i in reversed(range(1, len(feats))):
        g_out = (torch.bernoulli(torch.full_like(feats[i], 0.5)) - 0.5) * 2
        g_in = torch.autograd.grad(feats[i], feats[i - 1], g_out, retain_graph=False)[0]
        if g_out.size() == g_in.size() and torch.all(g_in == g_out):
            cells.append(float("-inf"))
            continue
        if g_out.size(2) != g_in.size(2):
            g_in = torch.nn.PixelUnshuffle(g_in.size(2) // g_out.size(2))(g_in)
        bo, co, ho, wo = g_out.size()
        mat = (g_in.permute(0, 2, 3, 1).reshape(bo * ho * wo, -1).t()
               @ g_out.permute(0, 2, 3, 1).reshape(bo * ho * wo, co)) / (bo * ho * wo)
        if mat.size(0) < mat.size(1):
            mat = mat.t()
        sv = float(torch.linalg.svdvals(mat).max())
        cells.append(-sv - 1 / (sv + 1e-6) + 2)
    return sum(entropies), sum(cells) / len(cells)


def timed(fn, reps, sync):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()  # a GPU's queued work is part of the score's time
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (PyTorch's device string)")
    ap.add_argument("--scores", default="naswot,ntk_exact,mgm,swap,meco,meco_opt,az_nas",
                    help="comma list of the scores to time")
    args = ap.parse_args()
    wanted = args.scores.split(",")
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(128, 3, 32, 32).to(device)
    labels = torch.randint(0, 10, (128,)).to(device)
    print(f"torch {torch.__version__} on {device}, {torch.get_num_threads()} threads; seconds per arch, "
          f"median (min) of {args.reps} after 1 warm-up")
    rows = []
    for label, arch in ARCHS:
        model = nb201_torch.TinyNetwork(arch, channels=16, cells_per_stage=5, classes=10).to(device)
        model.train()
        samsung = scores_meco.NAS201Model(arch, 16, 5, 10).to(device).train()
        for score, fn in [
            ("naswot", lambda: naswot(model, x[:128])),
            ("ntk_exact", lambda: ntk_exact(model, x[:32])),
            ("mgm", lambda: mgm(model, x[:64], labels[:64])),
            ("swap", lambda: swap(model, x[:16])),
            ("meco", lambda: meco(samsung, x[:1])),
            ("meco_opt", lambda: meco(samsung, x[:1], channels=8)),
            ("az_nas", lambda: az_nas(model, x[:64])),
        ]:
            if score not in wanted:
                continue
            med, low = timed(fn, args.reps, sync)
            rows.append({"arch": label, "score": score, "median_s": med, "min_s": low})
            print(f"{label:8} {score:10} {med:8.3f} ({low:.3f})", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "device": str(device),
                       "threads": torch.get_num_threads(),
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
