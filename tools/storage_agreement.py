#!/usr/bin/env python3
"""Spearman of each score between an f32 run and 16-bit runs of `nasrank score`.

    tools/storage_agreement.py F32.csv f16=F16.csv bf16=BF16.csv

Rows are matched by index; only rows scored in their own right (`scored_as` equal to
`index`: distinct archs, or every row of a --no-dedup run) count, and of those only the
ones where both values are finite. Prints one line per score: the Spearman and how many
archs it is over, per 16-bit run, and the non-finite counts of every run.
"""
import csv
import math
import sys


def load(path):
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r["scored_as"] == r["index"]]
    return {r["index"]: r for r in rows}


def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    spread = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / spread if spread > 0 else float("nan")


def main(argv):
    if len(argv) < 3 or any("=" not in a for a in argv[2:]):
        sys.exit(__doc__)
    base = load(argv[1])
    others = [(name, load(path)) for name, path in (a.split("=", 1) for a in argv[2:])]
    fixed = ("index", "arch", "unique", "seconds", "scored_as")
    scores = [c for c in next(iter(base.values())) if c not in fixed]
    print("score", *(name for name, _ in others), "non-finite f32 / " +
          " / ".join(name for name, _ in others), sep="\t")
    for s in scores:
        row = [s]
        nonfinite = [sum(not math.isfinite(float(r[s])) for r in base.values())]
        for _, other in others:
            pairs = [(float(base[i][s]), float(other[i][s])) for i in base if i in other]
            nonfinite.append(sum(not math.isfinite(y) for _, y in pairs))
            pairs = [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
            rho = spearman(*zip(*pairs)) if len(pairs) > 1 else float("nan")
            row.append(f"{rho:.4f} ({len(pairs)} archs)")
        print(*row, " / ".join(map(str, nonfinite)), sep="\t")


if __name__ == "__main__":
    main(sys.argv)
