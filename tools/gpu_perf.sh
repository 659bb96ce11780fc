#!/usr/bin/env bash
# One call on the GPU machine for the kernel issues' tables, side by side in the same call:
# kernel_perf on issue 12's GQA shapes (the copy ceiling is measured by kernel_perf itself) and
# PyTorch's decode anchor, issue 13's MLA rows (pages 16 and 64), issue 16's sparse MLA rows
# (W = 1 and 8 simulated), and the prefill bench (issue 15) with PyTorch's prefill anchor.
# Usage (device tool, from the repository root, with ../shared/bench/*.py copied into scratch/ and
# carry ["scratch"]):  tools/gpu_perf.sh [all|decode|prefill]   logs in /tmp/cpcl-out, tables to $OUT
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=/tmp/cpcl-out
mkdir -p "$LOG"
OUT=${OUT:-$LOG}
MODE=${1:-all}
BUILD=${BUILD_DIR:-build-gpu}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" -Dgpu_arch=90a >"$LOG/setup.log" 2>&1 || { tail -40 "$LOG/setup.log"; exit 1; }
fi
ninja -C "$BUILD" >"$LOG/build.log" 2>&1 || { grep -E "error|FAILED" "$LOG/build.log" | head -30; exit 1; }
rc=0
K="$BUILD/tools/kernel_perf"
if [ "$MODE" != prefill ]; then
  {
    echo "== issue 12: GQA decode, page 16"
    $K -n 50 -C 0 || rc=1
    echo "== issue 13: MLA decode, page 16"
    $K -n 20 -C 0 -p 16 -s 1,16,1,576,4096 -s 64,16,1,576,16384 -s 32,128,1,576,16384 -s 128,128,1,576,16384 \
      -s 128,128,1,576,4096 || rc=1
    echo "== issue 13: MLA decode, page 64"
    $K -n 20 -C 0 -p 64 -s 1,16,1,576,4096 -s 64,16,1,576,16384 -s 32,128,1,576,16384 -s 128,128,1,576,16384 \
      -s 128,128,1,576,4096 || rc=1
    echo "== issue 16: sparse MLA, K 2048, W 1 and 8 simulated, page 64"
    $K -n 20 -C 0 -k 2048 -W 8 -p 64 -s 64,128,1,576,32768 -s 128,128,1,576,32768 || rc=1
  } >"$LOG/kernel_perf.txt" 2>&1
  grep -vE "^#" "$LOG/kernel_perf.txt" | grep -vE "^$"
  if [ -f scratch/torch_decode_anchor.py ]; then
    echo "== PyTorch decode anchor (same call)"
    timeout 300 python3 scratch/torch_decode_anchor.py >"$LOG/anchor_decode.txt" 2>&1 || rc=1
    grep -A30 "^shape" "$LOG/anchor_decode.txt" | grep -E "flash|cudnn|flex|copy|merge|shape"
  fi
  cp "$LOG/kernel_perf.txt" "$LOG/anchor_decode.txt" "$OUT/" 2>/dev/null
fi
if [ "$MODE" != decode ]; then
  OUT="$OUT" tools/kernel_bench/prefill_bench.sh || rc=1
fi
exit $rc
