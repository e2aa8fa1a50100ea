#!/usr/bin/env python3
"""The Python package's overheads (docs/PERF.md, "Python package"):

1. per call of a reused `nasrank.Scorer`: wall time of `scorer.many([arch])` minus the
   engine's own time for the arch (its `seconds` column), over ARCHS calls;
2. `nasrank.score(range(N))` against `nasrank score --archs 0..N` (the release CLI) with the
   same options, each timed end to end (the CLI's includes process start and data loading).

    python3 tools/bench_python.py [--data cifar10:PATH] [--scores naswot] [--archs 200]
"""
import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import nasrank


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="synthetic")
    p.add_argument("--scores", default="naswot")
    p.add_argument("--archs", type=int, default=200)
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--cli", default=str(Path(__file__).resolve().parents[1] / "target/release/nasrank"))
    a = p.parse_args()

    scorer = nasrank.Scorer(a.scores, data=a.data)
    scorer.many([0], frame=False)  # warm-up
    overheads, engine = [], []
    for arch in range(1, a.calls + 1):
        t = time.perf_counter()
        cols = scorer.many([arch], frame=False)
        wall = time.perf_counter() - t
        engine.append(float(cols["seconds"][0]))
        overheads.append(wall - engine[-1])
    med_o, med_e = statistics.median(overheads), statistics.median(engine)
    print(f"Scorer per call ({a.calls} calls, {a.scores}): engine median {1e3 * med_e:.2f} ms, "
          f"overhead median {1e3 * med_o:.3f} ms ({100 * med_o / med_e:.2f} %), "
          f"max {1e3 * max(overheads):.3f} ms")

    t = time.perf_counter()
    nasrank.score(range(a.archs), scores=a.scores, data=a.data, frame=False)
    py = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        subprocess.run([a.cli, "score", "--quiet", "--archs", f"0..{a.archs}", "--scores", a.scores,
                        "--data", a.data, "--out", f"{d}/cli.csv"], check=True)
        cli = time.perf_counter() - t
    print(f"{a.archs} archs, {a.scores}: nasrank.score {py:.2f} s, nasrank score (CLI) {cli:.2f} s")


if __name__ == "__main__":
    main()
