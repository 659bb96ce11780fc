#!/usr/bin/env bash
# One call on the GPU machine: build, the gpu suite, compute-sanitizer (memcheck, racecheck,
# synccheck) on it, the kernel benchmarks and PyTorch's anchor, short table last.
# Usage (device tool): tools/gpu_check.sh [quick]     logs under $OUT (or /tmp/cpcl-out)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cpcl-out}
mkdir -p "$OUT"
BUILD=${BUILD_DIR:-build-gpu}
MODE=${1:-full}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" -Dgpu_arch=90a >"$OUT/setup.log" 2>&1 || { tail -40 "$OUT/setup.log"; exit 1; }
fi
ninja -C "$BUILD" >"$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -30; exit 1; }
"$BUILD/tools/cpcl_info" >"$OUT/cpcl_info.txt" 2>&1; head -12 "$OUT/cpcl_info.txt"
echo "== gpu suite"
meson test -C "$BUILD" --suite gpu --print-errorlogs >"$OUT/gpu_suite.log" 2>&1; suite=$?
grep -E "^ *[0-9]+/|checks" "$OUT/gpu_suite.log" "$BUILD/meson-logs/testlog.txt" | tail -4
if [ "$MODE" != quick ]; then
  for tool in memcheck racecheck synccheck; do
    timeout 400 compute-sanitizer --tool $tool --error-exitcode 9 "$BUILD/tests/gpu/test_gpu_kernels" \
      >"$OUT/sanitizer_$tool.log" 2>&1
    echo "== compute-sanitizer $tool: exit $? ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer_$tool.log" | tail -1))"
  done
fi
echo "== kernels"
"$BUILD/tools/kernel_perf" 2>&1 | tee "$OUT/kernel_perf.txt"
if [ -f scratch/torch_decode_anchor.py ] && [ "$MODE" != quick ]; then
  echo "== PyTorch anchor (same machine, same call)"
  python3 scratch/torch_decode_anchor.py >"$OUT/anchor.log" 2>&1
  grep -A30 "^shape" "$OUT/anchor.log" | grep -E "flash|cudnn|flex|copy|merge|shape"
fi
exit $suite
