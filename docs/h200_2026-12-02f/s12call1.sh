#!/usr/bin/env bash
# Session 12, calls 1-4 (one script, the variants of the moment): checks, timing, timelines. What each ran (the
# numbers then; docs/MLA_SM90.md "Session 12"): call 1 13, 19 = 13 + warpgroup 1's softmax over its own maxima, 18,
# 20 = 18 + the same; call 2 13, 19 = 13 + kFlagHandOrder, 21 = 19 + own maxima, 18, 20 = 18 + kFlagHandOrder; call 3
# 13, 19, 21 = 19 + WG1's softmax under its P0 V0_R, 18, 20, 22 = 20 + the same; call 4 12, 21 = 12 + kFlagHandOrder,
# 13, 19, 18, 20; call 8 (VARIANTS=12,22,19,21, TRACE_VARIANTS=19,21,22) 21 = 19 + kFlagPair, 22 = 12 + kFlagHandOrder +
# kFlagPair (commit "record" after 176ade9; removed after). Now built: 12, 13, 18, 19, 20 (the default below).
# Carry: scratch/s12.tar.xz, the bench built on the development machine (from tools/kernel_bench):
#   nvcc -gencode arch=compute_90a,code=sm_90a -O3 -std=c++17 -I../../kernels -I../../kernels/cuda mla_sm90_bench.cu \
#     ../../kernels/cuda/mla_sm90.cu ../../kernels/cuda/errors.cu -lcublas -o scratch/s12/mla_bench  (+ -DCPCL_MLA_TRACE -> .trace)
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; t0=$(date +%s)
tar xJf scratch/s12.tar.xz -C scratch
B=$PWD/scratch/s12/mla_bench; mkdir -p $R/mla
OUT=$R/mla BENCH_BIN=$B VARIANTS=${VARIANTS:-12,13,19,18,20} BEST=19 NCU=0 TRACE_VARIANTS=13,19 \
  TRACE_ROWS="128,128,4096,64 128,128,4096,16 32,128,16384,16" bash tools/kernel_bench/mla_sm90_bench.sh 2>&1 | tail -60
echo "elapsed $(( $(date +%s)-t0 )) s"
