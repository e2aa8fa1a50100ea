#!/usr/bin/env bash
# The GPU run: on a machine with an NVIDIA GPU and its driver, runs the CUDA parity tests on
# the real device, times every score and kernel, and runs the whole space with four scores,
# leaving every output in one folder for docs/PERF.md. Rerun it first on any GPU before
# changing CUDA code.
#
#   tools/gpu_run.sh [OUT_DIR]                    (default: gpu-run-<date>)
#   PREBUILT=DIR tools/gpu_run.sh [OUT_DIR]       (no Rust toolchain on the GPU machine)
#   DATA=cifar10:PATH ...                         (inputs; default ../shared/data or synthetic)
#   CPU_BENCH=1 ...                               (also time the CPU backend on that machine)
#   WHOLE_SPACE_LIMIT=S ...                       (seconds the whole-space run may take; 240)
#   WHOLE_SPACE_WORKERS="default 8" ...           (the whole space with these --workers; default:
#                                                  the default only)
#   WHOLE_SPACE_PROCS=P ...                       (and split over P processes; default 2, 1: skip)
#   STEPS="parity profile whole" ...              (only these steps; default: all, listed below)
#
# Without PREBUILT it builds with cargo. GPU machines without a Rust toolchain take the
# executables built elsewhere by `tools/gpu_bundle.sh DIR` (same CPU architecture).
#
# NVRTC: an installed libnvrtc (CUDA toolkit, or pip's nvidia-cuda-nvrtc) is used when one
# is found, through a folder holding a `libnvrtc.so` link to it (cudarc's loader tries that
# name); else tools/ci_nvrtc.sh installs NVRTC 12.9 from the package registry.
#
# Steps, in order of what matters most when the lease is short (each is time-boxed and its
# wall time goes to steps.txt; a step that fails or runs out of time is noted there and the
# run goes on):
#  1. parity: CudaBackend on GPU 0 against the CPU backend (tests/cuda_gpu_backend.rs; it
#     fails, instead of skipping, because NASRANK_REQUIRE_GPU is set): whole-network
#     forward and backward, every score on several archs, device-drawn parameters bit for
#     bit, 16-bit storage.
#  2. `bench scores --scores all` on the median and the largest arch (5256, 1462), and
#     `bench kernels` (the split-K gradient Gram among them).
#  3. The whole space with four scores (naswot,ntk,mgm,synflow) on the GPU, timed (with each
#     of WHOLE_SPACE_WORKERS workers, and split over WHOLE_SPACE_PROCS processes); then each
#     of the four alone over ARCHS_SAMPLE (default 0..300) for where the time goes, and
#     NASWOT over the sample with 1, 2, 4, 8 archs in flight (--workers).
#  4. 16-bit activation storage (--storage f32|bf16|f16): `bench kernels`, `bench scores`
#     and nine scores of the sample, with each score's Spearman between f32 and 16 bits
#     (tools/storage_agreement.py: storage-agreement.txt).
#  5. tools/bench_scores_torch.py on the GPU when PyTorch sees it; CPU_BENCH=1 adds the CPU
#     backend's `bench kernels|scores` and sample on the same machine.
#  6. profile: naswot,ntk,mgm over ARCHS_SAMPLE with 1 and 8 workers and every stream
#     operation timed (NASRANK_CUDA_PROFILE, tools/cuda_profile.py): device and host time
#     per kernel, profile-w*.txt.
# STEPS names: parity bench whole procs sample storage torch profile (cpu: CPU_BENCH=1).
set -uo pipefail
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
        echo "gpu_run.sh: NVRTC from $found" | tee "$out/nvrtc.txt" >&2
    else
        export LD_LIBRARY_PATH="$(tools/ci_nvrtc.sh)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
fi
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "gpu_run.sh: nvidia-smi failed (see $out/nvidia-smi.txt)" >&2
nproc > "$out/nproc.txt"

# want STEP: whether STEPS (default: all) asks for STEP.
want() { [[ -z "${STEPS:-}" || " $STEPS " == *" $1 "* ]]; }

# step NAME LIMIT_S CMD...: runs CMD with its output in NAME.txt and its wall time (or its
# failure) in steps.txt.
step() {
    local name="$1" limit="$2"
    shift 2
    local start rc
    start=$EPOCHREALTIME
    timeout "$limit" "$@" > "$out/$name.txt" 2>&1
    rc=$?
    awk -v n="$name" -v a="$start" -v b="$EPOCHREALTIME" -v rc="$rc" \
        'BEGIN { printf "%-28s %8.2f s  rc=%s\n", n, b - a, rc }' | tee -a "$out/steps.txt" >&2
    return $rc
}

parity=0
export NASRANK_REQUIRE_GPU=1
if [[ -n "${PREBUILT:-}" ]]; then
    bin="$PREBUILT/nasrank"
    if want parity; then
        for t in "$PREBUILT"/cuda_gpu_backend-*; do
            step parity 120 "$t" --nocapture || parity=1
        done
    fi
else
    if want parity; then
        step parity 900 cargo test --release --features cuda --test kernels_nvrtc \
            --test cuda_gpu_backend -- --nocapture || parity=1
    fi
    cargo build --release --features cuda
    bin=target/release/nasrank
fi

# DATA overrides the inputs (e.g. DATA=cifar10:PATH); default: ../shared/data's CIFAR-10
# when present, else synthetic.
data="${DATA:-synthetic}"
[[ -z "${DATA:-}" && -d ../shared/data/cifar10 ]] && data=cifar10:../shared/data/cifar10
echo "$data" > "$out/data.txt"

if want bench; then
    step scores-cuda 90 "$bin" bench scores --device cuda --repeat 3 --archs 5256,1462 \
        --data "$data" --scores all
    step kernels-cuda 60 "$bin" bench kernels --device cuda --repeat 20
fi

four=naswot,ntk,mgm,synflow
# Where the time of the GPU part goes, operation by operation (first: it is short).
if want profile; then
    for workers in 1 8; do
        rm -f "$out/profile-w$workers.tsv"
        step "profile-w$workers" 120 env NASRANK_CUDA_PROFILE="$out/profile-w$workers.tsv" \
            "$bin" score --device cuda --workers "$workers" --archs "$sample" --scores naswot,ntk,mgm \
            --data "$data" --no-dedup --quiet --out "$out/profile-w$workers.csv"
        python3 tools/cuda_profile.py "$out/profile-w$workers.tsv" \
            "$(($(wc -l < "$out/profile-w$workers.csv") - 1))" > "$out/profile-w$workers.txt" 2>&1
    done
fi
if want whole; then
    for workers in ${WHOLE_SPACE_WORKERS:-default}; do
        if [[ $workers == default ]]; then
            step whole-space-cuda "${WHOLE_SPACE_LIMIT:-240}" "$bin" score --device cuda \
                --archs all --scores "$four" --data "$data" --out "$out/all4-cuda.csv"
        else
            step "whole-space-cuda-w$workers" "${WHOLE_SPACE_LIMIT:-240}" "$bin" score \
                --device cuda --workers "$workers" --archs all --scores "$four" --data "$data" \
                --quiet --out "$out/all4-cuda-w$workers.csv"
        fi
    done
fi
# The same split over WHOLE_SPACE_PROCS processes on the one GPU (--shard k/P), each with a
# context of its own: whether the launch cost that bounds the space is per context
# (docs/PERF.md, "Session 14"). 0 or 1 skips it.
procs="${WHOLE_SPACE_PROCS:-2}"
if want procs && [[ "$procs" -gt 1 ]]; then
    start=$EPOCHREALTIME
    for k in $(seq 1 "$procs"); do
        timeout "${WHOLE_SPACE_LIMIT:-240}" "$bin" score --device cuda --archs all \
            --scores "$four" --data "$data" --shard "$k/$procs" --quiet \
            --out "$out/all4-cuda-shard$k.csv" > "$out/whole-space-cuda-shard$k.txt" 2>&1 &
    done
    rc=0
    for k in $(seq 1 "$procs"); do wait -n || rc=$?; done
    awk -v n="whole-space-cuda-${procs}proc" -v a="$start" -v b="$EPOCHREALTIME" -v rc="$rc" \
        'BEGIN { printf "%-28s %8.2f s  rc=%s\n", n, b - a, rc }' | tee -a "$out/steps.txt" >&2
fi
want sample && for score in ${four//,/ }; do
    step "sample-$score-cuda" 60 "$bin" score --device cuda --archs "$sample" --scores "$score" \
        --data "$data" --no-dedup --quiet --out "$out/sample-$score-cuda.csv"
done
want sample && for workers in 1 2 4 8; do
    step "naswot-cuda-w$workers" 60 "$bin" score --device cuda --workers "$workers" \
        --archs "$sample" --scores naswot --data "$data" --no-dedup --quiet \
        --out "$out/naswot-cuda-w$workers.csv"
done

# 16-bit activation storage: speed, and agreement of the rankings with f32.
want storage && for storage in f32 bf16 f16; do
    [[ $storage != f32 ]] && step "kernels-cuda-$storage" 60 "$bin" bench kernels \
        --device cuda --storage "$storage"
    step "scores-cuda-$storage" 60 "$bin" bench scores --device cuda --storage "$storage" \
        --archs 5256,1462 --data "$data" --scores naswot,ntk,mgm,snip
    step "storage-$storage" 90 "$bin" score --device cuda --storage "$storage" \
        --archs "$sample" --no-dedup --quiet --data "$data" \
        --scores naswot,ntk,mgm,snip,grad_norm,fisher,jacob_cov,zico,grasp \
        --out "$out/storage-$storage.csv"
done
want storage && { python3 tools/storage_agreement.py "$out/storage-f32.csv" \
    f16="$out/storage-f16.csv" bf16="$out/storage-bf16.csv" > "$out/storage-agreement.txt" 2>&1 || true; }

# The PyTorch formulation of the same scores on the same GPU, where PyTorch sees one.
if want torch && python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    step torch-cuda 120 python3 tools/bench_scores_torch.py --device cuda --reps 3
fi
if [[ "${CPU_BENCH:-0}" == 1 ]]; then
    step kernels-cpu 120 "$bin" bench kernels --device cpu
    step scores-cpu 180 "$bin" bench scores --device cpu --archs 5256,1462 --data "$data" \
        --scores naswot,ntk,ntk_exact,mgm,snip,synflow
    step sample-naswot-cpu 120 "$bin" score --device cpu --archs "$sample" --scores naswot \
        --data "$data" --no-dedup --quiet --out "$out/sample-naswot-cpu.csv"
fi
echo "gpu_run.sh: outputs in $out" >&2
if [[ $parity != 0 ]]; then
    echo "gpu_run.sh: the GPU parity tests FAILED (see $out/parity.txt)" >&2
    exit 1
fi
