#!/bin/bash
# One GPU call for the Hopper MLA body: build, per-variant checks (each bounded, so a hang costs one
# variant), timing of the passing ones, compute-sanitizer on the checks of one variant, and ncu:
# each kernel's duration at B1 (attention vs merge), and stall reasons plus tensor-pipe use on a
# compute-bound and a memory-bound row.
#   VARIANTS="1,4,12,13,77" (64 = kMlaSm90EvictFirst or-ed in; 1, 2, 4, 9, 11-16 are built, and the
#   sparse-only 17 and 18: session 4's gather, checked and timed on the sparse rows only)  BEST=13 (sanitizer and ncu)
#   NCU=0 skips ncu; TRACE_ROWS="B,H,L,pg ..." (or none) and TRACE_VARIANTS (default 4; 16 has its own
#   events; sparse rows take 11, 17, 18, e.g. TRACE_ROWS=64,128,16384,64: B64 H128 K2048 and K256): the
#   clock64 timeline of the first CTA on those rows;  RACECHECK=v: compute-sanitizer racecheck on the
#   checks of variant v;  PERF=0 skips the timing;  logs under $OUT (or a temp dir): checks.log perf.log
#   ncu_*.txt trace.log;  BENCH_BIN=path: a prebuilt bench (and path.trace for the timelines), built as below
#   elsewhere, so the call spends no device time compiling
cd "$(dirname "$0")" || exit 1
OUT=${OUT:-$(mktemp -d)}; BIN=${BENCH_BIN:-$(mktemp -d)/mla_sm90_bench}; echo "logs in $OUT"
VARIANTS=${VARIANTS:-1,2,4,11,12,13,14,15,16}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
[ -n "$BENCH_BIN" ] ||
  nvcc -gencode arch=compute_90a,code=sm_90a -O3 -std=c++17 -I../../kernels -I../../kernels/cuda mla_sm90_bench.cu \
    ../../kernels/cuda/mla_sm90.cu ../../kernels/cuda/errors.cu -lcublas -o $BIN 2>$OUT/build.log || { tail $OUT/build.log; exit 1; }
OKV=""
for v in ${VARIANTS//,/ }; do
  timeout 60 $BIN --check-only --variants $v >> $OUT/checks.log 2>&1; rc=$?
  echo "check variant $v rc=$rc"
  [ $rc -eq 0 ] && [ $((v & 63)) -ne 2 ] && OKV="$OKV,$v"
done
grep "correctness" $OUT/checks.log
OKV=${OKV#,}
echo "timing variants: $OKV"
[ -z "$OKV" ] && exit 1
if [ "${PERF:-1}" != 0 ]; then timeout 400 $BIN --perf-only --variants $OKV > $OUT/perf.log 2>&1; echo "perf rc=$?"; fi
BEST=${BEST:-${OKV##*,}}
timeout 90 compute-sanitizer --tool memcheck $BIN --check-only --variants $BEST 2>&1 | grep -E "ERROR SUMMARY|correctness"
if [ -n "$RACECHECK" ]; then
  timeout 300 compute-sanitizer --tool racecheck $BIN --check-only --variants $RACECHECK > $OUT/racecheck.log 2>&1
  echo "== racecheck v$RACECHECK rc=$?"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY|correctness" $OUT/racecheck.log
fi
if [ "${NCU:-1}" != 0 ]; then
  STALLS='regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio'
  PIPES='regex:sm__pipe_tensor_op_.*cycles_active\.avg\.pct_of_peak_sustained_active'
  MLA_ONLY=1,16,4096,16 timeout 60 ncu --clock-control none --cache-control none -k regex:mlaSm90 --launch-skip 4 --launch-count 4 \
    --metrics gpu__time_duration.sum $BIN --perf-only --variants $BEST > $OUT/ncu_b1.txt 2>&1
  echo "== ncu B1 H16 L4k pg16 v$BEST (attention, merge, attention, merge)"
  grep -E "mlaSm90|gpu__time_duration" $OUT/ncu_b1.txt | sed 's/ *(.*//' | head -8
  for row in 128,128,4096,64 64,16,16384,16; do
    MLA_ONLY=$row timeout 120 ncu --clock-control none -k regex:mlaSm90Kernel --launch-skip 2 --launch-count 1 \
      --section SpeedOfLight --metrics "$STALLS,$PIPES,gpu__time_duration.sum" \
      $BIN --perf-only --variants $BEST > $OUT/ncu_${row//,/_}.txt 2>&1
    echo "== ncu $row v$BEST rc=$?: stall reasons (warps per issue), tensor pipes (% of peak)"
    grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|stalled|pipe_tensor" $OUT/ncu_${row//,/_}.txt |
      awk '{ if ($NF+0 >= 0.05 || $0 ~ /Duration|Throughput|pipe_tensor/) print }' | sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | head -40
  done
fi
# the per-pair timeline of the first CTA (a build with the clock64 probe compiled in; its timings
# are not the library's code, so only the trace lines are kept)
TRACE_ROWS=${TRACE_ROWS:-128,128,4096,64 128,128,4096,16 64,16,16384,64}
if [ "$TRACE_ROWS" != none ]; then
  { [ -n "$BENCH_BIN" ] || nvcc -gencode arch=compute_90a,code=sm_90a -O3 -std=c++17 -DCPCL_MLA_TRACE -I../../kernels \
    -I../../kernels/cuda mla_sm90_bench.cu ../../kernels/cuda/mla_sm90.cu ../../kernels/cuda/errors.cu -lcublas \
    -o $BIN.trace 2>>$OUT/build.log; } &&
    for row in $TRACE_ROWS; do
      MLA_TRACE=1 MLA_ONLY=$row timeout 60 $BIN.trace --perf-only --variants ${TRACE_VARIANTS:-4} 2>&1 | grep -A7 "^trace"
    done | tee $OUT/trace.log
fi
grep -A100 "^| variant" $OUT/perf.log 2>/dev/null
