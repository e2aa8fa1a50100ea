#!/usr/bin/env bash
# The GPU run: on a machine with an NVIDIA GPU, its driver, a Rust toolchain and Python's
# pip, runs the CUDA parity tests on the real device and the GPU benchmarks beside the
# CPU's, and leaves every output in one folder for docs/PERF.md.
#
#   tools/gpu_run.sh [OUT_DIR]        (default: gpu-run-<date>)
#
# Steps: NVRTC from the package registry (tools/ci_nvrtc.sh) unless libnvrtc is already
# found; `cargo test --features cuda` for the kernels' NVRTC compile and the whole-network
# and every-score parity of CudaBackend on GPU 0 (tests/cuda_gpu_backend.rs; it fails
# here, instead of skipping, because NASRANK_REQUIRE_GPU is set); then
# `nasrank bench kernels` and `nasrank bench scores` on the GPU and on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-run-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"

if ! ldconfig -p 2>/dev/null | grep -q libnvrtc.so.12; then
    export LD_LIBRARY_PATH="$(tools/ci_nvrtc.sh)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "gpu_run.sh: nvidia-smi failed (see $out/nvidia-smi.txt)" >&2

export NASRANK_REQUIRE_GPU=1
cargo test --release --features cuda --test kernels_nvrtc --test cuda_gpu_backend -- --nocapture \
    2>&1 | tee "$out/parity.txt"

cargo build --release --features cuda
bin=target/release/nasrank
data=synthetic
[[ -d ../shared/data/cifar10 ]] && data=cifar10:../shared/data/cifar10
for device in cuda cpu; do
    "$bin" bench kernels --device "$device" --json > "$out/kernels-$device.jsonl"
    "$bin" bench kernels --device "$device" > "$out/kernels-$device.txt"
    "$bin" bench scores --device "$device" --archs 5256,1462 --data "$data" \
        --scores naswot,ntk,ntk_exact,mgm,snip,synflow > "$out/scores-$device.txt"
done
echo "gpu_run.sh: outputs in $out" >&2
