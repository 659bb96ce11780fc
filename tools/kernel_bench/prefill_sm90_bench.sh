#!/bin/bash
# One GPU call for the standalone Hopper causal prefill body (kernels/cuda/prefill_sm90.cu):
# build (ptxas -v kept in build.log), per-variant checks against the CPU fp64 reference (each
# bounded, so a hang costs one variant), timing of the passing variants against a cuBLAS GEMM
# ceiling, compute-sanitizer memcheck on the checks of one
# variant, and PyTorch SDPA on the same shapes when scratch/torch_prefill_anchor.py is there.
#   VARIANTS="0,1,2,3" (prefill_sm90.h: 1 three stages, 2 intra-warpgroup overlap)
#   BEST=<variant> for the sanitizer (default: the last passing one);  SAN=0 skips it
#   PF_ONLY="B,H,Hkv,Dqk,L": time one shape only
# Logs under $OUT (or a temp dir): build.log checks.log perf.log sanitizer.log anchor.txt.
# Exit status: non-zero when the build, any variant's check, the timing or the sanitizer failed.
cd "$(dirname "$0")" || exit 1
OUT=${OUT:-$(mktemp -d)}; BIN=$(mktemp -d)/prefill_sm90_bench; echo "logs in $OUT"
VARIANTS=${VARIANTS:-0,1,2,3}
rc=0
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
nvcc -gencode arch=compute_90a,code=sm_90a -O3 -std=c++17 -Xptxas -v -I../../kernels -I../../kernels/cuda prefill_sm90_bench.cu \
  ../../kernels/cuda/prefill_sm90.cu -lcublas -o $BIN >$OUT/build.log 2>&1 || { tail -30 $OUT/build.log; exit 1; }
echo "ptxas (each line with its count over the 6 kernels):"
grep -E "registers|spill|C75[0-9][0-9]|warning|serializ" $OUT/build.log | sed 's/^ *//' | sort | uniq -c
OKV=""
for v in ${VARIANTS//,/ }; do
  timeout 150 $BIN --check-only --variants $v >>$OUT/checks.log 2>&1; r=$?
  echo "check variant $v rc=$r"
  if [ $r -eq 0 ]; then OKV="$OKV,$v"; else rc=1; fi
done
grep -E "correctness|argument checks|batch invariance|max \|out err\||NOT REFUSED" $OUT/checks.log
OKV=${OKV#,}
echo "timing variants: $OKV"
[ -z "$OKV" ] && { tail -40 $OUT/checks.log; exit 1; }
timeout 300 $BIN --perf-only --variants $OKV >$OUT/perf.log 2>&1 || { echo "perf rc=$?"; rc=1; }
grep -A40 "^| variant" $OUT/perf.log || tail -20 $OUT/perf.log
if [ "${SAN:-1}" != 0 ]; then
  BEST=${BEST:-${OKV##*,}}
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 $BIN --check-only --variants $BEST \
    >$OUT/sanitizer.log 2>&1 || { echo "memcheck rc=$?"; rc=1; }
  grep -E "ERROR SUMMARY|correctness" $OUT/sanitizer.log
fi
ANCHOR=../../scratch/torch_prefill_anchor.py
if [ -f $ANCHOR ]; then
  echo "== PyTorch SDPA on the issue's shapes ($ANCHOR)"
  OUT=$OUT timeout 200 python3 $ANCHOR >$OUT/anchor.txt 2>&1
  cat $OUT/anchor.txt
fi
exit $rc
