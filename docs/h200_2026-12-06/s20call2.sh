#!/usr/bin/env bash
# Session 20, call 2: what holds GQA B128 H64/8 L4k and B64 H16/1 L8k below the targets (issue 12), and the
# sparse MLA top-k filter inside the attention against the filter kernel (issue 16).
# Binaries: the bench scratch/s19b/gqa_sm90_bench (built here per docs/h200_2026-12-04/s19call1.sh's header)
# and the library of s20call1.sh (scratch/s20lib.tar.xz). Carry both.
#   1. bench (fp64-checked first with the bulk tail, GQA_TAIL=1): fewer splits than the plan's floor of 4
#      (CL 1, 2), the same bytes with one KV head a row (B1024 H8/1: 4 KB contiguous pages), pages in
#      address order (GQA_SEQUENTIAL=1) against scrambled, 6 stages (one CTA an SM);
#   2. kernel_perf (bare) on the same rows: the rule, the bulk tail merge in place of the merge kernel
#      (TAIL=bulk MERGE=tail), with 2 splits, with 2 splits and 6 stages;
#   3. kernel_perf's sparse rows, K 2048, W 1 / 8, page 64: "topk" (filter kernel + attention) against
#      "inattn" (the attention filtering its own slice).
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
LIMIT=${LIMIT:-575}
B=scratch/s19b/gqa_sm90_bench
[ -d /tmp/s20lib ] || { tar xJf scratch/s20lib.tar.xz -C /tmp || exit 1; }
N=/tmp/s20lib; K=$N/tools/kernel_perf
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem --format=csv,noheader | tee $R/gpu.txt
GQA_TAIL=1 timeout 120 $B check > $R/check_tail_bulk.txt 2>&1; echo "bench check (bulk tail) rc $? $(tail -n 1 $R/check_tail_bulk.txt) $(el) s"
V128="4:256:3:2:0:0:2,2:256:3:2:0:0:2,1:256:3:2:0:0:1,2:256:6:2:0:0:2,1:256:6:2:0:0:1"
V64="4:256:3:2:0:0:1,4:256:3:2:0:0:2,2:256:3:2:0:0:2,2:256:6:2:0:0:2,8:256:3:2:0:0:1,8:256:6:2:0:0:1"
for seq in 0 1; do
  left=$(( LIMIT - 200 - $(el) )); [ $left -lt 20 ] && break
  echo "== GQA_SEQUENTIAL=$seq page 16 ($(el) s)"
  GQA_SEQUENTIAL=$seq GQA_VARIANTS=$V128 GQA_SHAPES=128:64:8:4096,1024:8:1:4096 timeout $(( left / 2 )) $B time 2>&1 | grep -E "us "
  GQA_SEQUENTIAL=$seq GQA_VARIANTS=$V64 GQA_SHAPES=64:16:1:8192,16:16:1:32768 timeout $(( left / 2 )) $B time 2>&1 | grep -E "us "
done | tee $R/rows.txt
for ENVS in "" "CPCL_GQA_SM90_TAIL=bulk CPCL_GQA_SM90_MERGE=tail" "CPCL_GQA_SM90_SPLITS=2 CPCL_GQA_SM90_TAIL=bulk CPCL_GQA_SM90_MERGE=tail" \
            "CPCL_GQA_SM90_SPLITS=2 CPCL_GQA_SM90_STAGES=6 CPCL_GQA_SM90_TAIL=bulk CPCL_GQA_SM90_MERGE=tail" "CPCL_GQA_SM90_SPLITS=2"; do
  left=$(( LIMIT - 90 - $(el) )); [ $left -lt 20 ] && break
  echo "== kernel_perf [$ENVS] ($(el) s)"
  timeout $left env $ENVS $K -n 50 -C 0 -s 64,16,1,128,8192 -s 16,16,1,128,32768 -s 128,64,8,128,4096 -s 1,16,1,128,4096 2>&1 | grep -vE "^#|^$"
done | tee $R/knobs.txt
left=$(( LIMIT - $(el) )); echo "== sparse, page 64 ($(el) s)"
timeout $left $K -n 20 -C 0 -k 2048 -W 8 -p 64 -s 64,128,1,576,32768 -s 128,128,1,576,32768 -c 1 2>&1 | grep -vE "^#|^$" | tee $R/sparse.txt
echo "done $(el) s"
