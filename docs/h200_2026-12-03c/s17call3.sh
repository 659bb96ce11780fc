#!/usr/bin/env bash
# Session 17, calls 3 and 4 (issue 12): call 1's split-merge CTAs inside the fused kernel back
# (call 2's programmatic dependent beside it evidently ran only after the fused kernel: slower, and
# its counts never reached the merge CTAs at np 2 and 4, which timed out), with the tail merge for
# form 1 units of at most 32 KB (B64 H16/1 L8k); call 3 (scratch/s17c.tar.xz) with two items a warp
# in batches of 8 splits, call 4 (scratch/s17d.tar.xz, the default) one item a warp in batches of
# 16 (call 1's). The library of the tree ("new") against 1b6b2f5's ("old": every fused split merge
# in the tail), the same dcp_decode_perf over each: the gpu tests of the new one (test_gpu_decode
# compares fused with a2a bitwise), one-rank a2a / fused rows of the issue-12 shapes, then memcheck
# of the fused path (GQA shape 0). Usage: bash s17call3.sh [s17c|s17d]; carry scratch/<that>.tar.xz.
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/${1:-s17d}.tar.xz -C /tmp || exit 1
N=/tmp/s17new; O=/tmp/s17old; T=$R/tests.txt
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
timeout 150 $N/tests/gpu/test_gpu_kernels > /tmp/tk.txt 2>&1; echo "test_gpu_kernels rc $? $(tail -n 1 /tmp/tk.txt) $(el) s"
grep -iE "fail|error" /tmp/tk.txt | head -n 20 >> $T
for np in 1 2 4; do CPCL_TIMEOUT_MS=60000 timeout 150 mpirun -np $np $N/tests/gpu/test_gpu_decode > /tmp/td$np.txt 2>&1
  echo "test_gpu_decode np$np rc $? $(tail -n 1 /tmp/td$np.txt) $(el) s"; echo "== np$np" >> $T; grep -iE "fail|error|expect" /tmp/td$np.txt | head -n 30 >> $T; done
P=$R/perf.txt
G="1,16,1,4096 16,16,1,32768 64,16,1,8192 128,64,8,4096 32,64,1,32768 8,64,1,131072"
row() { # lib kind B H K L (lib tail: new with CPCL_GQA_SM90_MERGE=tail)
  local d=$N; [ $1 = old ] && d=$O; local env=""; [ $1 = tail ] && env="-x CPCL_GQA_SM90_MERGE=tail"; local left=$(( 430 - $(el) )); [ $left -lt 20 ] && { echo "$1 $2 B$3 H$4 L$6 skipped"; return; }
  local a="-H $4 -K $5 -d 128 -v 128"; [ $2 = mla ] && a="-m 1 -H $4"
  timeout $left mpirun -np 1 $env $d/tools/dcp_decode_perf -g 1 -a a2a,fused -b $3 -e $3 -l $6 -L $6 $a -t bf16 -p 16 -c 0 -n 20 > /tmp/row.txt 2>&1
  echo "$1 $2 B$3 H$4/$5 L$6 | $(grep -E ' (a2a|fused) ' /tmp/row.txt | sed 's/  */ /g' | tr '\n' '|')"; }
for lib in new old new; do
  for r in $G; do IFS=, read B H K L <<< "$r"; row $lib gqa $B $H $K $L; done
done | tee $P
echo "perf $(el) s"
for s in 0; do left=$(( 500 - $(el) ))
  [ $left -gt 20 ] && { CPCL_TEST_SHAPE=$s timeout $left compute-sanitizer --tool memcheck $N/tests/gpu/test_gpu_decode > /tmp/mc.txt 2>&1
    echo "memcheck shape $s rc $? $(grep -E 'ERROR SUMMARY' /tmp/mc.txt) $(grep -cE 'Invalid|out of bounds' /tmp/mc.txt) access errors $(el) s"
    grep -B2 -A12 -m 3 -E "Invalid|out of bounds" /tmp/mc.txt >> $R/sanitizer.txt; }; done
echo "done $(el) s"
