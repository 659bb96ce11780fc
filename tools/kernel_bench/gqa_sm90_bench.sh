#!/bin/bash
# One call on the GPU machine: build, check, time, memcheck (fits the 600 s of one device call when
# the checks pass: check ~30-60 s, time ~6 x 20-40 s, memcheck < 150 s).
# Builds from kernels/ and kernels/cuda/ of this repository (no meson).
# A failing check confines the damage: each feature (W wgmma consumers, S workspace merge in a second
# kernel, F workspace merge in the last split's tail, P programmatic dependent launch) is rechecked in
# its own process and, if it fails there, left out of
# the timing (GQA_SKIP); a failing base TMA check times cp.async only (GQA_MODES=0). Each shape is
# timed in its own process, so a fault in one variant loses only the rest of that shape.
set -o pipefail
cd "$(dirname "$0")"
OUT=${OUT:-/tmp/gqa_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw \
  --format=csv >"$OUT/gpu.txt" 2>&1
# always rebuilt: a binary carried from an older tree would time the old body
echo "building here"
nvcc -gencode arch=compute_90a,code=sm_90a -O3 -std=c++17 -Xptxas -v -I../../kernels -I../../kernels/cuda \
  -o gqa_sm90_bench gqa_sm90_bench.cu ../../kernels/cuda/gqa_sm90.cu ../../kernels/cuda/gqa_sm90_fused.cu ../../kernels/cuda/errors.cu \
  >"$OUT/ptxas.log" 2>&1 || {
  tail -30 "$OUT/ptxas.log"
  exit 1
}
timeout 120 ./gqa_sm90_bench check 2>&1 | tee "$OUT/check.log"
crc=$?
modes=
skip=
if [ $crc != 0 ]; then
  echo "checks rc $crc: each feature on its own"
  for f in W S F P; do
    GQA_ONLY=$f timeout 60 ./gqa_sm90_bench check >"$OUT/check_$f.log" 2>&1 || skip=$skip$f
    echo "feature $f: $(tail -1 "$OUT/check_$f.log")"
  done
  GQA_SKIP=WSFP timeout 60 ./gqa_sm90_bench check >"$OUT/check_base.log" 2>&1 || modes=0
  echo "base: $(tail -1 "$OUT/check_base.log"); timing with GQA_SKIP=$skip GQA_MODES=$modes"
fi
trc=0
: >"$OUT/bench.log"
for i in 0 1 2 3 4 5; do
  GQA_SHAPE=$i GQA_SKIP=$skip GQA_MODES=$modes GQA_LOG="$OUT/times_$i.csv" timeout 100 ./gqa_sm90_bench time 2>&1 |
    tee -a "$OUT/bench.log" || trc=1
done
if [ "${GQA_SANITIZE:-1}" = 1 ]; then
  GQA_SKIP=$skip GQA_MODES=${modes:-0,2} timeout 150 compute-sanitizer --tool memcheck ./gqa_sm90_bench check \
    >"$OUT/memcheck.log" 2>&1
  echo "memcheck rc $?"
  tail -3 "$OUT/memcheck.log"
fi
[ $crc = 0 ] && [ $trc = 0 ]
