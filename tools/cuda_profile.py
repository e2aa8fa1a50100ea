#!/usr/bin/env python3
"""Where the GPU time goes: sums the per-launcher totals that NASRANK_CUDA_PROFILE=FILE
makes `nasrank` append (engine/backend/cuda/driver.rs, `StreamProfile`) and prints one
row per operation, largest device time first.

    python3 tools/cuda_profile.py FILE [ARCHS]

ARCHS (optional) divides the totals into per-arch figures. Columns: count, device ms (time
between the timing events around the operation on its stream), mean device us, host ms
spent in the call that queued it, mean host us, share of all device time.
"""
import sys
from collections import defaultdict


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    archs = float(sys.argv[2]) if len(sys.argv) == 3 else None
    totals = defaultdict(lambda: [0, 0.0, 0.0])
    walls = []
    with open(sys.argv[1]) as f:
        for line in f:
            name, count, device_ms, host_ms = line.rstrip("\n").split("\t")
            if name == "wall":
                walls.append(float(host_ms))
                continue
            t = totals[name]
            t[0] += int(count)
            t[1] += float(device_ms)
            t[2] += float(host_ms)
    device_all = sum(t[1] for t in totals.values())
    host_all = sum(t[2] for t in totals.values())
    ops = sum(t[0] for t in totals.values())
    print(f"launchers {len(walls)}, their lifetimes {sum(walls):.1f} ms in all")
    print(f"operations {ops}, device {device_all:.1f} ms, host (queueing calls) {host_all:.1f} ms")
    if archs:
        print(f"per arch: {ops / archs:.0f} operations, device {device_all / archs:.3f} ms, "
              f"host {host_all / archs:.3f} ms")
    print(f"{'operation':<32}{'count':>9}{'device ms':>12}{'dev us':>9}{'host ms':>10}{'host us':>9}{'share':>8}")
    for name, (count, device_ms, host_ms) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:<32}{count:>9}{device_ms:>12.2f}{1e3 * device_ms / count:>9.2f}"
              f"{host_ms:>10.2f}{1e3 * host_ms / count:>9.2f}{100 * device_ms / device_all:>7.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
