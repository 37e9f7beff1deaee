#!/usr/bin/env bash
# The CPU-vs-GPU table of docs/benchmarks.md on a machine with a real GPU, in one run:
# batched dopri5 solves and full training steps, batch 16 to 65,536, latent/hidden 32/64 and
# 64/128, with the share of GPU wall time spent inside kernels (timestamp queries).
# The CPU column is pinned to two cores, the development machine's size, so "GPU/CPU" reads
# against the issue's target (at least 20x at batch >= 4096).
#
# Usage: benches/gpu/real-gpu.sh [OUT_DIR]     (needs a Vulkan/Metal/DX12 driver for the GPU)
set -euo pipefail
out=${1:-${OUT:-.}}
cd "$(dirname "$0")/../.."
if [ ! -x target/release/gpu-table ]; then
  cargo build --release -p ode-benches --bin gpu-table
fi
(nvidia-smi -L || vulkaninfo --summary || true) 2>&1 | head -20 | tee "$out/gpu-info.txt"
cores=$(nproc)
pin=""
if [ "$cores" -gt 2 ] && command -v taskset >/dev/null; then pin="taskset -c 0,1"; fi
$pin target/release/gpu-table --max-batch 65536 --min-seconds 2 | tee "$out/gpu-table.md"
