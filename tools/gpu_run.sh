#!/usr/bin/env bash
# The GPU run: on a machine with an NVIDIA GPU and its driver, runs the CUDA parity tests on
# the real device and the GPU benchmarks beside the CPU's, and leaves every output in one
# folder for docs/PERF.md.
#
#   tools/gpu_run.sh [OUT_DIR]                    (default: gpu-run-<date>)
#   PREBUILT=DIR tools/gpu_run.sh [OUT_DIR]       (no Rust toolchain on the GPU machine)
#   DATA=cifar10:PATH ...                         (inputs; default ../shared/data or synthetic)
#
# Without PREBUILT it builds with cargo. GPU machines without a Rust toolchain take the
# executables built elsewhere by `tools/gpu_bundle.sh DIR` (same CPU architecture).
#
# NVRTC: an installed libnvrtc (CUDA toolkit, or pip's nvidia-cuda-nvrtc) is used when one
# is found, through a folder holding a `libnvrtc.so` link to it (cudarc's loader tries that
# name); else tools/ci_nvrtc.sh installs NVRTC 12.9 from the package registry.
#
# Steps: the whole-network and every-score parity of CudaBackend on GPU 0 against the CPU
# backend (tests/cuda_gpu_backend.rs; it fails, instead of skipping, because
# NASRANK_REQUIRE_GPU is set); `nasrank bench kernels` and `nasrank bench scores` on the
# GPU and on the CPU; throughput samples (`nasrank score` over ARCHS_SAMPLE archs, default
# 0..300) on both and on the GPU with 1, 2, 4 and 8 archs in flight (--workers); the whole
# space's NASWOT on the GPU; 16-bit activation storage (--storage f32|bf16|f16): `bench
# kernels`, `bench scores` and the scores of the sample, with each score's Spearman between
# f32 and 16 bits (tools/storage_agreement.py: storage-agreement.txt); tools/bench_scores_torch.py on the GPU when PyTorch sees it.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-run-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
sample="${ARCHS_SAMPLE:-0..300}"

if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
    found="$(find /usr/local/cuda*/ /usr/local/lib /usr/lib /opt -name 'libnvrtc.so.[0-9]*' \
        -not -name '*alt*' 2>/dev/null | sort -V | tail -1 || true)"
    if [[ -n "$found" ]]; then
        link_dir="$(mktemp -d)"
        ln -s "$found" "$link_dir/libnvrtc.so"
        export LD_LIBRARY_PATH="$link_dir:$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "gpu_run.sh: NVRTC from $found" >&2
    else
        export LD_LIBRARY_PATH="$(tools/ci_nvrtc.sh)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
fi
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "gpu_run.sh: nvidia-smi failed (see $out/nvidia-smi.txt)" >&2
nproc > "$out/nproc.txt"

# A parity failure is reported at the end: the benchmarks still run.
parity=0
export NASRANK_REQUIRE_GPU=1
if [[ -n "${PREBUILT:-}" ]]; then
    bin="$PREBUILT/nasrank"
    for t in "$PREBUILT"/cuda_gpu_backend-*; do
        "$t" --nocapture 2>&1 | tee "$out/parity.txt" || parity=1
    done
else
    cargo test --release --features cuda --test kernels_nvrtc --test cuda_gpu_backend -- --nocapture \
        2>&1 | tee "$out/parity.txt" || parity=1
    cargo build --release --features cuda
    bin=target/release/nasrank
fi

# DATA overrides the inputs (e.g. DATA=cifar10:PATH); default: ../shared/data's CIFAR-10
# when present, else synthetic.
data="${DATA:-synthetic}"
[[ -z "${DATA:-}" && -d ../shared/data/cifar10 ]] && data=cifar10:../shared/data/cifar10
for device in cuda cpu; do
    "$bin" bench kernels --device "$device" > "$out/kernels-$device.txt"
    "$bin" bench scores --device "$device" --archs 5256,1462 --data "$data" \
        --scores naswot,ntk,ntk_exact,mgm,snip,synflow > "$out/scores-$device.txt"
    { time "$bin" score --device "$device" --archs "$sample" --scores naswot \
        --data "$data" --no-dedup --quiet --out "$out/naswot-$device.csv"; } 2> "$out/naswot-$device.time"
done
# Archs in flight on the GPU (--workers), then the whole space at the default.
for workers in 1 2 4 8; do
    { time "$bin" score --device cuda --workers "$workers" --archs "$sample" --scores naswot \
        --data "$data" --no-dedup --quiet --out "$out/naswot-cuda-w$workers.csv"; } \
        2> "$out/naswot-cuda-w$workers.time"
done
{ time "$bin" score --device cuda --archs all --scores naswot --data "$data" --quiet \
    --out "$out/naswot-all-cuda.csv"; } 2> "$out/naswot-all-cuda.time"
# 16-bit activation storage: speed, and agreement of the rankings with f32.
for storage in f32 bf16 f16; do
    "$bin" bench kernels --device cuda --storage "$storage" > "$out/kernels-cuda-$storage.txt"
    "$bin" bench scores --device cuda --storage "$storage" --archs 5256,1462 --data "$data" \
        --scores naswot,ntk,ntk_exact,mgm,snip > "$out/scores-cuda-$storage.txt"
    "$bin" score --device cuda --storage "$storage" --archs "$sample" --no-dedup --quiet \
        --scores naswot,ntk,mgm,snip,grad_norm,fisher,jacob_cov,zico,grasp --data "$data" \
        --out "$out/storage-$storage.csv"
done
python3 tools/storage_agreement.py "$out/storage-f32.csv" f16="$out/storage-f16.csv" \
    bf16="$out/storage-bf16.csv" > "$out/storage-agreement.txt" || true
# The PyTorch formulation of the same scores on the same GPU, where PyTorch sees one.
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    python3 tools/bench_scores_torch.py --device cuda --reps 3 > "$out/torch-cuda.txt" 2>&1 || true
fi
echo "gpu_run.sh: outputs in $out" >&2
if [[ $parity != 0 ]]; then
    echo "gpu_run.sh: the GPU parity tests FAILED (see $out/parity.txt)" >&2
    exit 1
fi
