#!/bin/bash
# one GPU call: build, per-variant checks (each bounded, so a hang costs one variant), timing of
# the passing ones, compute-sanitizer on the checks of the best guess, ncu on one compute-bound row
cd "$(dirname "$0")" || exit 1
OUT=${OUT:-$(mktemp -d)}; BIN=$(mktemp -d)/mla_sm90_bench; echo "logs in $OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
nvcc -gencode arch=compute_90a,code=sm_90a -O3 -std=c++17 -I../../kernels -I../../kernels/cuda mla_sm90_bench.cu ../../kernels/cuda/mla_sm90.cu ../../kernels/cuda/errors.cu -lcublas -o $BIN 2>/dev/null || exit 1
cuobjdump -sass $BIN > $OUT/bench.sass
OKV=""
for v in 0 1 2 3 4 5 6; do
  timeout 60 $BIN --check-only --variants $v >> $OUT/checks.log 2>&1; rc=$?
  echo "check variant $v rc=$rc"
  [ $rc -eq 0 ] && [ $v -ne 2 ] && OKV="$OKV,$v"
done
grep "correctness" $OUT/checks.log
OKV=${OKV#,}
echo "timing variants: $OKV"
[ -z "$OKV" ] && exit 1
timeout 300 $BIN --perf-only --variants $OKV > $OUT/perf.log 2>&1; echo "perf rc=$?"
BEST=""; for v in 4 3 0 5 1 6; do case ",$OKV," in *,$v,*) BEST=$v; break;; esac; done
timeout 90 compute-sanitizer --tool memcheck $BIN --check-only --variants $BEST 2>&1 | grep -E "ERROR SUMMARY|correctness"
MLA_ONLY=128,128,4096,64 timeout 100 ncu --clock-control none -k regex:mlaSm90Kernel --launch-skip 2 --launch-count 1 \
  --section SpeedOfLight --section WarpStateStats --section Occupancy $BIN --perf-only --variants $BEST > $OUT/ncu_v$BEST.txt 2>&1
echo "ncu v$BEST rc=$?"
grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Stall|Warp Cycles Per Issued|Issue Slots" $OUT/ncu_v$BEST.txt | head -20
grep -A100 "^| variant" $OUT/perf.log
