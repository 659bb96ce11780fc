#!/usr/bin/env bash
# Session 15, call 1 (GQA decode, issue 12): the standalone bench (tools/kernel_bench/gqa_sm90_bench.cu, built here
# twice: plain, and with -DCPCL_GQA_TRACE for the timeline) on the library plan's row of each issue-12 shape, with the
# measurement knobs GQA_ORDER (1: the KV heads of a (row, split) adjacent in a 1-D grid) and GQA_L2 (1: K/V boxes
# evict-first), interleaved (order rotated each round), beside main's bench (c1999b4's kernels: "main"); the checks
# with the knobs on and off; the B1 / B64 / B128 timelines; PyTorch's decode anchor (scratch/torch_decode_anchor.py,
# a copy of ../shared/bench's) in the same call. Carry scratch/s15gqa.tar.xz: gb (this tree), gbt (this tree,
# -DCPCL_GQA_TRACE), gbm (main), each built here as tools/kernel_bench/gqa_sm90_bench.sh builds it.
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
cd tools/kernel_bench
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
tar xJf ../../scratch/s15gqa.tar.xz -C /tmp || exit 1
timeout 120 /tmp/gb check > $R/check_plain.txt 2>&1; echo "check knobs off rc $? $(tail -1 $R/check_plain.txt) $(el) s"
GQA_ORDER=1 GQA_L2=1 timeout 120 /tmp/gb check > $R/check_knobs.txt 2>&1; echo "check knobs on rc $? $(tail -1 $R/check_knobs.txt) $(el) s"
K=("m 0 0" "b 0 0" "b 1 0" "b 0 1" "b 1 1")
for rep in 1 2; do for sh in 0 1 2 3 4 5; do
  ks=("${K[@]}"); [ $rep = 2 ] && ks=("b 1 1" "b 0 1" "b 1 0" "b 0 0" "m 0 0")
  for k in "${ks[@]}"; do set -- $k; bin=/tmp/gb; [ $1 = m ] && bin=/tmp/gbm
    o=$(GQA_ORDER=$2 GQA_L2=$3 GQA_PLAN_ONLY=1 GQA_SHAPE=$sh timeout 60 $bin time 2>&1 | grep "library plan" | sed 's/  */ /g')
    echo "rep$rep $1 order$2 l2$3 $o"; done; done; [ $(el) -gt 330 ] && break; done | tee $R/rows.txt; echo "rows $(el) s"
for sh in 3 0 2; do for k in "0 0" "1 1"; do set -- $k
  echo "== trace shape $sh order$1 l2$2"; GQA_ORDER=$1 GQA_L2=$2 GQA_PLAN_ONLY=1 GQA_SHAPE=$sh timeout 60 /tmp/gbt time 2>&1 | grep -A16 "library plan"; done; done | tee $R/trace.txt
echo "trace $(el) s"
cd ../..; timeout 200 python3 scratch/torch_decode_anchor.py > $R/anchor.txt 2>&1; tail -30 $R/anchor.txt; echo "done $(el) s"
