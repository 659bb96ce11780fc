#!/usr/bin/env bash
# Session 18, call 8: MLA's tail zeroing as predicated PTX shared stores (zeroTail), which takes the
# fused kernel's main loop from 3306 to 2968 SASS instructions (variant 12; 3617 to 3185 for 19) and
# the standalone one's too: test_gpu_decode np 1/2 and fused / bare MLA rows. Short: little device
# time was left. Carry scratch/s18d.tar.xz.
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
rm -rf /tmp/s18new; tar xJf scratch/s18d.tar.xz -C /tmp || exit 1
N=/tmp/s18new; P=$R/perf.txt
for np in 1 2; do CPCL_TIMEOUT_MS=60000 timeout 60 mpirun -np $np $N/tests/gpu/test_gpu_decode > /tmp/td$np.txt 2>&1
  echo "test_gpu_decode np$np rc $? $(tail -n 1 /tmp/td$np.txt) $(el) s"; grep -iE "fail|error|expect" /tmp/td$np.txt | head -n 10; done
M="1,16,4096,16 128,128,4096,16 32,128,16384,64 64,16,16384,16"
for r in $M; do IFS=, read B H L pg <<< "$r"; left=$(( 100 - $(el) )); [ $left -lt 10 ] && break
  timeout $left mpirun -np 1 $N/tools/dcp_decode_perf -g 1 -a a2a,fused -b $B -e $B -l $L -L $L -m 1 -H $H -t bf16 -p $pg -c 0 -n 20 > /tmp/row.txt 2>&1
  echo "mla B$B H$H L$L p$pg | $(grep -E ' (a2a|fused) ' /tmp/row.txt | sed 's/  */ /g' | tr '\n' '|')"; done | tee $P
echo "done $(el) s"
