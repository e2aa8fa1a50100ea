#!/usr/bin/env python3
"""PyTorch CPU timings of the NAS-Bench-201 TinyNetwork, for comparison with nasrank.

    /opt/torchenv/bin/python tools/bench_torch.py [--threads T] [--reps R] [--json FILE]

Times, for the reference network of tools/nb201_torch.py at C=16, N=5, 10 classes,
batch 128 of 32x32x3 inputs (standard normal, fixed seed), BN in train mode (batch
statistics), f32:
  forward          logits = model(x)                  (under torch.no_grad())
  forward+backward CE loss (mean) backward to every parameter (grads zeroed each time)
for three archs:
  smallest  |none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|   (no conv in cells)
  median    |nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|
            (two 3x3 and one 1x1 conv per cell, two pools: 82.5 M multiply-adds per image,
             in the space's range 7.8..220.1 M)
  largest   all six edges nor_conv_3x3
Each timing: warm-up runs, then the median (and the minimum) of the repetitions (wall
clock, time.perf_counter). Prints the torch version, torch.get_num_threads() and a table.
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
    ("smallest", "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"),
    ("median",
     "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"),
    ("largest",
     "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"),
]


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, min(times) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (default: PyTorch's own choice)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32)
    labels = torch.randint(0, 10, (args.batch,))
    rows = []
    for label, arch in ARCHS:
        model = nb201_torch.TinyNetwork(arch, channels=16, cells_per_stage=5, classes=10)
        model.train()

        def forward():
            with torch.no_grad():
                model(x)

        def forward_backward():
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), labels).backward()

        fwd, fwd_min = timed(forward, args.warmup, args.reps)
        fb, fb_min = timed(forward_backward, args.warmup, args.reps)
        rows.append({"label": label, "arch": arch, "forward_ms": fwd, "forward_min_ms": fwd_min,
                     "fwd_bwd_ms": fb, "fwd_bwd_min_ms": fb_min,
                     "params": sum(p.numel() for p in model.parameters())})
    info = {"torch_version": torch.__version__, "threads": torch.get_num_threads(),
            "batch": args.batch, "input": "3x32x32", "C": 16, "N": 5, "classes": 10,
            "bn": "train (batch statistics)", "dtype": "float32", "warmup": args.warmup,
            "reps": args.reps, "statistic": "median wall-clock ms", "results": rows}
    print(f"torch {info['torch_version']}, {info['threads']} threads, batch {args.batch}, "
          f"32x32, C=16 N=5, train-mode BN, f32; median of {args.reps} after {args.warmup} "
          f"warm-up")
    print(f"{'arch':<9} {'params':>9} {'forward ms':>11} {'(min)':>7} {'fwd+bwd ms':>11} "
          f"{'(min)':>7}  arch string")
    for r in rows:
        print(f"{r['label']:<9} {r['params']:>9} {r['forward_ms']:>11.1f} "
              f"{r['forward_min_ms']:>7.1f} {r['fwd_bwd_ms']:>11.1f} {r['fwd_bwd_min_ms']:>7.1f}"
              f"  {r['arch']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
