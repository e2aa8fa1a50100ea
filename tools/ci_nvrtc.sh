#!/usr/bin/env bash
# Installs the NVRTC shared library from the Python package registry (the CUDA 12.9 runtime
# wheel nvidia-cuda-nvrtc-cu12, which matches cudarc's `cuda-12090` bindings) into a
# directory of its own, and prints the directory holding libnvrtc.so.12 on stdout (all
# other output goes to stderr), for LD_LIBRARY_PATH:
#
#   export LD_LIBRARY_PATH="$(tools/ci_nvrtc.sh)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
#
# Usage: tools/ci_nvrtc.sh [TARGET_DIR]   (default: ${NASRANK_CACHE:-~/.cache/nasrank}/nvrtc)
# NVRTC_WHEEL may name a local wheel file or another requirement to install instead.
set -euo pipefail

target="${1:-${NASRANK_CACHE:-$HOME/.cache/nasrank}/nvrtc}"
requirement="${NVRTC_WHEEL:-nvidia-cuda-nvrtc-cu12==12.9.*}"
lib="$target/nvidia/cuda_nvrtc/lib"

if [[ ! -e "$lib/libnvrtc.so.12" ]]; then
    mkdir -p "$target"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --upgrade \
        --target "$target" "$requirement" >&2
fi
if [[ ! -e "$lib/libnvrtc.so.12" ]]; then
    echo "ci_nvrtc.sh: $lib/libnvrtc.so.12 missing after installing $requirement" >&2
    exit 1
fi
# No libnvrtc.so link is needed: cudarc's candidate names include libnvrtc.so.12.
cd "$lib" && pwd
