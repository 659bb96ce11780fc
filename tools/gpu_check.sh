#!/usr/bin/env bash
# One call on the GPU machine: build, the gpu suite (kernels; the GPU schedules across 1-4
# processes sharing the GPU over ipc; NCCL with one rank; graph replay; a stalled peer), the
# decode benchmark per schedule against the bare kernel, then (full) compute-sanitizer (kernels,
# decode schedules, prefill), the kernel benchmarks and PyTorch's anchor. Short tables last.
# The prefill benchmark is its own call: tools/kernel_bench/prefill_bench.sh.
# Usage (device tool): tools/gpu_check.sh [quick|decode|full]     logs under $OUT (or /tmp/cpcl-out)
#   quick: build + gpu suite;  decode (default): + cpcl_info + dcp_decode_perf;  full: + the rest
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cpcl-out}
mkdir -p "$OUT"
BUILD=${BUILD_DIR:-build-gpu}
MODE=${1:-decode}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" -Dgpu_arch=90a >"$OUT/setup.log" 2>&1 || { tail -40 "$OUT/setup.log"; exit 1; }
fi
ninja -C "$BUILD" >"$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -30; exit 1; }
grep -E "cuda|nccl|ucx|hwloc" "$OUT/setup.log" 2>/dev/null | grep -E ": (YES|NO|true|false)" | head -6
"$BUILD/tools/cpcl_info" >"$OUT/cpcl_info.txt" 2>&1
sed -n '1,10p' "$OUT/cpcl_info.txt"
echo "== gpu suite"
meson test -C "$BUILD" --suite gpu --print-errorlogs >"$OUT/gpu_suite.log" 2>&1; suite=$?
cp "$BUILD/meson-logs/testlog.txt" "$OUT/gpu_testlog.txt" 2>/dev/null
grep -E "^ *[0-9]+/[0-9]+ " "$OUT/gpu_suite.log" | sed 's/  */ /g'
grep -hE "checks,|passed|gave up|nccl \(" "$OUT/gpu_testlog.txt" | sort -u | head -12
[ $suite -ne 0 ] && grep -E "\[rank|FAIL|error" "$OUT/gpu_testlog.txt" | head -20
# the Hopper GQA body at the split counts the rule gives only to many-row plans (CL 1: no partials;
# CL 2), forced on the suite's kernel cases and one-rank schedules
for cl in 1 2; do
  CPCL_GQA_SM90_SPLITS=$cl "$BUILD/tests/gpu/test_gpu_kernels" >"$OUT/kernels_cl$cl.txt" 2>&1 || suite=1
  CPCL_GQA_SM90_SPLITS=$cl CPCL_TIMEOUT_MS=60000 mpirun -np 1 -x CPCL_GQA_SM90_SPLITS -x CPCL_TIMEOUT_MS \
    "$BUILD/tests/gpu/test_gpu_decode" >"$OUT/decode_cl$cl.txt" 2>&1 || suite=1
  echo "CPCL_GQA_SM90_SPLITS=$cl: $(tail -n 1 "$OUT/kernels_cl$cl.txt"); $(tail -n 1 "$OUT/decode_cl$cl.txt")"
done
# sparse plans: both places of the top-k filter (the suite's few-row plans filter inside the attention)
for tk in 0 1; do
  CPCL_MLA_SM90_TOPK=$tk CPCL_TIMEOUT_MS=60000 mpirun -np 1 -x CPCL_MLA_SM90_TOPK -x CPCL_TIMEOUT_MS \
    "$BUILD/tests/gpu/test_gpu_decode" >"$OUT/decode_topk$tk.txt" 2>&1 || suite=1
  echo "CPCL_MLA_SM90_TOPK=$tk: $(tail -n 1 "$OUT/decode_topk$tk.txt")"
done
[ "$MODE" = quick ] && exit $suite

echo "== decode, one rank: every schedule against the bare kernel (CUDA-graph replays)"
P="$BUILD/tools/dcp_decode_perf"
# each run's rows also as JSON (-J); a run whose rows fail their check or cannot be planned exits 1
$P -g 1 -H 16 -K 1 -b 1 -e 64 -f 4 -l 4096 -L 32768 -F 2 -n 30 -T "one rank, GQA H16/Hkv1" \
  -J "$OUT/decode_np1_gqa.json" >"$OUT/decode_np1.txt" 2>&1 || suite=1
$P -g 1 -H 16 -K 1 -b 128 -e 128 -l 4096 -L 32768 -F 2 -n 30 -T "one rank, GQA H16/Hkv1" \
  -J "$OUT/decode_np1_gqa_b128.json" >>"$OUT/decode_np1.txt" 2>&1 || suite=1
$P -g 1 -m 1 -H 16 -b 1 -e 64 -f 8 -l 4096 -L 16384 -F 4 -n 20 -T "one rank, MLA H16" \
  -J "$OUT/decode_np1_mla.json" >>"$OUT/decode_np1.txt" 2>&1 || suite=1
$P -g 1 -H 64 -K 1 -b 1 -e 32 -f 4 -l 8192 -L 32768 -F 4 -n 20 -T "one rank, GQA H64/Hkv1 (wide body from 8 rows)" \
  -J "$OUT/decode_np1_h64.json" >>"$OUT/decode_np1.txt" 2>&1 || suite=1
cat "$OUT/decode_np1.txt"
echo "== decode, 2 and 4 processes on the one GPU over ipc (-c 1: checked; times mean nothing)"
for np in 2 4; do
  mpirun -np $np $P -g 1 -X ipc -H 8 -K 1 -b 4 -e 16 -f 4 -l 4096 -L 4096 -n 5 -w 2 -c 1 -T "np $np" \
    -J "$OUT/decode_np$np.json" >"$OUT/decode_np$np.txt" 2>&1 || suite=1
  tail -7 "$OUT/decode_np$np.txt"
done
[ "$MODE" != full ] && exit $suite

for tool in memcheck racecheck synccheck; do
  timeout 400 compute-sanitizer --tool $tool --error-exitcode 9 "$BUILD/tests/gpu/test_gpu_kernels" \
    >"$OUT/sanitizer_$tool.log" 2>&1
  echo "== compute-sanitizer $tool, kernels: exit $? ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer_$tool.log" | tail -1))"
  # the schedules, one process (the exchange and fused kernels, graphs, NCCL). memcheck also
  # reports 4 API errors (no kernel image, cudaFuncGetAttributes) from inside ncclCommInitRank.
  CPCL_TIMEOUT_MS=60000 timeout 300 compute-sanitizer --tool $tool "$BUILD/tests/gpu/test_gpu_decode" \
    >"$OUT/sanitizer_decode_$tool.log" 2>&1
  echo "== compute-sanitizer $tool, schedules: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer_decode_$tool.log" | tail -1), $(grep -c 'Invalid' "$OUT/sanitizer_decode_$tool.log") invalid accesses"
  # prefill, one process: the kernel cases alone (every prefill body against the host reference)
  CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 400 compute-sanitizer --tool $tool --error-exitcode 9 "$BUILD/tests/gpu/test_gpu_prefill" \
    >"$OUT/sanitizer_prefill_$tool.log" 2>&1
  echo "== compute-sanitizer $tool, prefill: exit $? ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer_prefill_$tool.log" | tail -1))"
done
echo "== kernels"
"$BUILD/tools/kernel_perf" -c 1 -C 0 -J "$OUT/kernel_perf.json" 2>&1 | tee "$OUT/kernel_perf.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || suite=1
if [ -f scratch/torch_decode_anchor.py ]; then
  echo "== PyTorch anchor (same machine, same call)"
  python3 scratch/torch_decode_anchor.py >"$OUT/anchor.log" 2>&1
  grep -A30 "^shape" "$OUT/anchor.log" | grep -E "flash|cudnn|flex|copy|merge|shape"
fi
exit $suite
