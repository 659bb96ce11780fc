#!/bin/bash
# One call on the GPU machine: build (or reuse the carried binary), check, time, memcheck.
# Builds from kernels/ and kernels/cuda/ of this repository (no meson).
set -o pipefail
cd "$(dirname "$0")"
OUT=${OUT:-/tmp/gqa_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw \
  --format=csv >"$OUT/gpu.txt" 2>&1
# always rebuilt: a binary carried from an older tree would time the old body
echo "building here"
nvcc -gencode arch=compute_90a,code=sm_90a -O3 -std=c++17 -I../../kernels -I../../kernels/cuda -o gqa_sm90_bench gqa_sm90_bench.cu ../../kernels/cuda/gqa_sm90.cu ../../kernels/cuda/errors.cu || exit 1
timeout 120 ./gqa_sm90_bench check 2>&1 | tee "$OUT/check.log"
crc=$?
modes=
if [ $crc != 0 ]; then
  echo "checks rc $crc: timing the cp.async path only"
  modes=0
fi
GQA_MODES=$modes GQA_LOG="$OUT/times.csv" timeout 300 ./gqa_sm90_bench time 2>&1 | tee "$OUT/bench.log"
trc=$?
if [ "${GQA_SANITIZE:-1}" = 1 ]; then
  GQA_MODES=${modes:-0,2} timeout 150 compute-sanitizer --tool memcheck ./gqa_sm90_bench check >"$OUT/memcheck.log" 2>&1
  echo "memcheck rc $?"
  tail -3 "$OUT/memcheck.log"
fi
[ $crc = 0 ] && [ $trc = 0 ]
