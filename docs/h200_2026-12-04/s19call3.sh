#!/usr/bin/env bash
# Session 19, call 3 (prepared; not run in session 19, which had no device time): MLA and sparse MLA with
# session 19's changes. The same binaries as s19call2.sh (carry scratch/s19lib.tar.xz).
#   1. test_gpu_decode np 1/2 with the top-k filter inside the attention (CPCL_MLA_SM90_TOPK=1: the sparse
#      schedules' plans skip the filter kernel; fused plans keep it);
#   2. kernel_perf's sparse rows, K 2048, W 1 and 8, pages 16 and 64: "topk" (filter + attention) against
#      "inattn" (the attention filtering itself), the issue-16 targets;
#   3. dcp_decode_perf fused / bare on issue 13's rows (the shared-memory base now in the shared state
#      space: session 18's call 8 is the before).
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
[ -d /tmp/s19new ] || { tar xJf scratch/s19lib.tar.xz -C /tmp || exit 1; }
N=/tmp/s19new; P=$R/perf3.txt
for np in 1 2; do CPCL_MLA_SM90_TOPK=1 CPCL_TIMEOUT_MS=60000 timeout 150 mpirun -np $np -x CPCL_MLA_SM90_TOPK $N/tests/gpu/test_gpu_decode > /tmp/td$np.txt 2>&1
  echo "test_gpu_decode (topk in attention) np$np rc $? $(tail -n 1 /tmp/td$np.txt) $(el) s"; grep -iE "fail|error|expect" /tmp/td$np.txt | head -n 20; done
for pg in 16 64; do
  echo "== sparse, page $pg ($(el) s)"
  timeout 150 $N/tools/kernel_perf -n 20 -C 0 -k 2048 -W 8 -p $pg -s 64,128,1,576,32768 -s 128,128,1,576,32768 -c 1 2>&1 | grep -vE "^#|^$"
done | tee $P
M="1,16,4096,16 64,16,16384,16 32,128,16384,16 32,128,16384,64 128,128,4096,16"
for r in $M; do IFS=, read B H L pg <<< "$r"; left=$(( 580 - $(el) )); [ $left -lt 20 ] && break
  timeout $left mpirun -np 1 $N/tools/dcp_decode_perf -g 1 -a a2a,fused -b $B -e $B -l $L -L $L -m 1 -H $H -t bf16 -p $pg -c 0 -n 20 > /tmp/row.txt 2>&1
  echo "mla B$B H$H L$L p$pg | $(grep -E ' (a2a|fused) ' /tmp/row.txt | sed 's/  */ /g' | tr '\n' '|')"; done | tee -a $P
echo "done $(el) s"
