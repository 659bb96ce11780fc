#!/usr/bin/env bash
# Session 19, call 1: what holds GQA B128 H64/8 L4k at ~3.95 TB/s and B64 H16/1 L8k at ~3.5 (issue 12).
# The standalone bench (built here from this tree with the GQA_VARIANTS / GQA_SHAPES / GQA_SEQUENTIAL /
# GQA_PAGE knobs; carried as scratch/s19b/gqa_sm90_bench): fewer splits than the plan's floor of 4
# (CL 1, 2), the same bytes with one KV head a row (B1024 H8/1: 4 KB contiguous pages), pages in address
# order against scrambled, page 64; then ncu's memory tables of the plan row, scrambled and in order.
# Build the bench here first (~5 min on 2 cores), from tools/kernel_bench:
#   for f in ../../kernels/cuda/gqa_sm90.cu ../../kernels/cuda/gqa_sm90_fused.cu ../../kernels/cuda/errors.cu gqa_sm90_bench.cu; do
#     nvcc -gencode arch=compute_90a,code=sm_90a -O3 -std=c++17 -I../../kernels -I../../kernels/cuda -c -o ../../scratch/s19b/$(basename $f .cu).o $f & done; wait
#   nvcc -gencode arch=compute_90a,code=sm_90a -o ../../scratch/s19b/gqa_sm90_bench ../../scratch/s19b/*.o -lcuda
# and run it with carry ["scratch/s19b/gqa_sm90_bench"]. GQA_TAIL=1 in front of a line times the F variants' bulk tail.
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
B=scratch/s19b/gqa_sm90_bench
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv > $R/gpu.txt
echo "== bench checks with the bulk tail (GQA_TAIL=1; the F variants against the fp64 reference) ($(el) s)"
GQA_TAIL=1 timeout 120 $B check > $R/check_tail_bulk.txt 2>&1; echo "rc $? $(tail -n 1 $R/check_tail_bulk.txt)"
V128="4:256:3:2:0:0:2,1:256:6:2:0:0:1,2:256:6:2:0:0:2,4:256:3:2:0:0:1,2:256:3:2:0:0:2,2:256:3:2:0:0:1,1:256:3:2:0:0:1,1:256:3:2:1:0:1,8:256:3:2:0:0:2"
V64="2:256:3:2:0:0:1,2:256:3:2:0:0:2,2:256:6:2:0:0:2,4:256:3:2:0:0:1,4:256:3:2:0:0:2,8:256:3:2:0:0:1,8:256:6:2:0:0:1,8:256:6:2:0:0:2,16:256:3:2:0:0:1"
for seq in 0 1; do
  echo "== GQA_SEQUENTIAL=$seq page 16 ($(el) s)"
  GQA_SEQUENTIAL=$seq GQA_VARIANTS=$V128 GQA_SHAPES=128:64:8:4096,1024:8:1:4096 timeout 150 $B time 2>&1 | grep -v "^device"
  GQA_SEQUENTIAL=$seq GQA_VARIANTS=$V64 GQA_SHAPES=64:16:1:8192,16:16:1:32768 timeout 120 $B time 2>&1 | grep -E "us "
done | tee $R/rows.txt
echo "== page 64, scrambled ($(el) s)" | tee -a $R/rows.txt
GQA_PAGE=64 GQA_VARIANTS=4:256:3:2:0:0:2,1:256:3:2:0:0:1 GQA_SHAPES=128:64:8:4096 timeout 60 $B time 2>&1 | grep -E "us " | tee -a $R/rows.txt
for seq in 0 1; do
  echo "== ncu plan row B128 H64/8, sequential=$seq ($(el) s)"
  GQA_SEQUENTIAL=$seq GQA_VARIANTS=4:256:3:2:0:0:2 GQA_SHAPES=128:64:8:4096 timeout 120 ncu --target-processes all --clock-control none \
    -k regex:gqaDecodeKernel -s 3 -c 1 --section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
    --section Occupancy $B time > $R/ncu_b128_seq$seq.txt 2>&1
  grep -E "Duration|DRAM Throughput|Memory Throughput|L2 Hit|L1/TEX Hit|Achieved Occupancy|dram__|Mem Busy|Max Bandwidth" $R/ncu_b128_seq$seq.txt | head -20
done
echo "done $(el) s"
