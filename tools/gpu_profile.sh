#!/usr/bin/env bash
# Nsight Compute on the attention kernels for given shapes (device machine): builds if needed,
# then one profiled launch per kernel of kernel_perf -s SHAPE.
# Usage: tools/gpu_profile.sh B,H,Hkv,D,L [...]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cpcl-out}
mkdir -p "$OUT"
BUILD=${BUILD_DIR:-build-gpu}
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" -Dgpu_arch=90a >"$OUT/setup.log" 2>&1
ninja -C "$BUILD" >"$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head; exit 1; }
for shape in "$@"; do
  echo "== $shape"
  ncu --kernel-name regex:'attn|splitMerge' --launch-skip 6 --launch-count 2 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section MemoryWorkloadAnalysis \
      "$BUILD/tools/kernel_perf" -n 3 -s "$shape" >"$OUT/ncu_${shape//,/_}.txt" 2>&1
  grep -E "^  [a-zA-Z]|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit|Grid Size|Waves Per SM|Stall|Warp Cycles Per Issued|L2 Hit|L1/TEX Hit|Dynamic Shared" \
    "$OUT/ncu_${shape//,/_}.txt" | head -60
done
