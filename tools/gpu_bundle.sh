#!/usr/bin/env bash
# Builds what tools/gpu_run.sh needs (the nasrank executable with the `cuda` feature and
# the GPU parity test executable) and copies it, stripped, into DIR, for a GPU machine with
# no Rust toolchain:
#
#   tools/gpu_bundle.sh DIR      then, there:   PREBUILT=DIR tools/gpu_run.sh OUT
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:?usage: tools/gpu_bundle.sh DIR}"
mkdir -p "$dir"
rm -f "$dir"/cuda_gpu_backend-* "$dir"/nasrank
cargo build --release --features cuda --bin nasrank
cp target/release/nasrank "$dir/"
cargo test --release --features cuda --test cuda_gpu_backend --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda_gpu_backend":
        print(m["executable"])' | while read -r exe; do cp "$exe" "$dir/"; done
strip "$dir"/nasrank "$dir"/cuda_gpu_backend-*
ls -l "$dir" >&2
