#!/usr/bin/env bash
# Session 18, call 6: fused against bare with the bare kernel attending the same (random) gathered
# queries (dcp_decode_perf's bare ran on zero queries before: equal scores, so the online softmax
# never rescaled; call 5's ncu: the fused MLA CTAs executed the rescale's FMULs ~16x as often). MLA
# (Q auto split merge) and GQA rows of issues 13 and 12, two rounds; first the gpu suite of this tree
# (main with the quad split merge; test_gpu_decode's MLA shapes at 4/16/32 heads a rank, pages 16
# and 64). Carry scratch/s18c.tar.xz.
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
rm -rf /tmp/s18new; tar xJf scratch/s18c.tar.xz -C /tmp || exit 1
N=/tmp/s18new; P=$R/perf.txt; T=$R/tests.txt
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
timeout 150 $N/tests/gpu/test_gpu_kernels > /tmp/tk.txt 2>&1; echo "test_gpu_kernels rc $? $(tail -n 1 /tmp/tk.txt) $(el) s"
grep -iE "fail|error" /tmp/tk.txt | head -n 20 >> $T
for np in 1 2 4; do CPCL_TIMEOUT_MS=60000 timeout 200 mpirun -np $np $N/tests/gpu/test_gpu_decode > /tmp/td$np.txt 2>&1
  echo "test_gpu_decode np$np rc $? $(tail -n 1 /tmp/td$np.txt) $(el) s"; echo "== np$np" >> $T; grep -iE "fail|error|expect" /tmp/td$np.txt | head -n 30 >> $T; done
M="1,16,4096,16 64,16,16384,16 32,128,16384,16 32,128,16384,64 128,128,16384,16 128,128,4096,16"
G="1,16,1,4096 16,16,1,32768 64,16,1,8192 128,64,8,4096 32,64,1,32768 8,64,1,131072"
row() { # kind B H K L page
  local left=$(( 540 - $(el) )); [ $left -lt 20 ] && { echo "$1 B$2 H$3 L$5 skipped"; return; }
  local a="-H $3 -K $4 -d 128 -v 128"; [ $1 = mla ] && a="-m 1 -H $3"
  timeout $left mpirun -np 1 $N/tools/dcp_decode_perf -g 1 -a a2a,fused -b $2 -e $2 -l $5 -L $5 $a -t bf16 -p $6 -c 0 -n 20 > /tmp/row.txt 2>&1
  echo "$1 B$2 H$3/$4 L$5 p$6 | $(grep -E ' (a2a|fused) ' /tmp/row.txt | sed 's/  */ /g' | tr '\n' '|')"; }
for round in 1 2; do
  for r in $M; do IFS=, read B H L pg <<< "$r"; row mla $B $H 1 $L $pg; done
  for r in $G; do IFS=, read B H K L <<< "$r"; row gqa $B $H $K $L 16; done
done | tee $P
echo "done $(el) s"
