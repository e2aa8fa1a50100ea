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
Network construction is excluded from the timings. Prints torch version and threads.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nb201_torch  # noqa: E402

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
    args = ap.parse_args()
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
        for score, fn in [
            ("naswot", lambda: naswot(model, x[:128])),
            ("ntk_exact", lambda: ntk_exact(model, x[:32])),
            ("mgm", lambda: mgm(model, x[:64], labels[:64])),
        ]:
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
