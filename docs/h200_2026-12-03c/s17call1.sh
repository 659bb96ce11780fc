#!/usr/bin/env bash
# Session 17, call 1 (issue 12): the fused kernel's split-merge CTAs (form 1 plans: the partials
# merged a head a warp after the attention CTAs, in place of one CTA's tail). The library of this
# tree ("new") against 1b6b2f5's ("old": every fused split merge in the tail), the same
# dcp_decode_perf over each (public ABI): the gpu tests of the new one (test_gpu_decode compares
# fused with a2a bitwise: shape 0 takes form 1 at np 1, 2 and 4, shape 1 form 2), one-rank a2a /
# fused rows of the issue-12 shapes, then memcheck and racecheck of the new fused path.
# Carry scratch/s17.tar.xz.
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/s17.tar.xz -C /tmp || exit 1
N=/tmp/s17new; O=/tmp/s17old
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
timeout 150 $N/tests/gpu/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? $(tail -n 1 $R/test_kernels.txt) $(el) s"
for np in 1 2 4; do CPCL_TIMEOUT_MS=60000 timeout 150 mpirun -np $np $N/tests/gpu/test_gpu_decode > $R/test_decode_np$np.txt 2>&1
  echo "test_gpu_decode np$np rc $? $(tail -n 1 $R/test_decode_np$np.txt) $(el) s"; done
ROWS="1,16,1,4096 16,16,1,32768 64,16,1,8192 128,64,8,4096 32,64,1,32768 8,64,1,131072"
for lib in new old new; do d=$N; [ $lib = old ] && d=$O
  for r in $ROWS; do IFS=, read B H K L <<< "$r"; left=$(( 400 - $(el) )); [ $left -lt 20 ] && { echo "$lib $r skipped"; continue; }
    f=$R/perf_${lib}_B${B}_H${H}_L${L}.txt; timeout $left mpirun -np 1 $d/tools/dcp_decode_perf -g 1 -a a2a,fused -b $B -e $B \
      -l $L -L $L -H $H -K $K -d 128 -v 128 -t bf16 -p 16 -c 0 -n 30 >> $f 2>&1
    echo "$lib B$B H$H/$K L$L | $(grep -E 'a2a|fused' $f | tail -n 2 | sed 's/  */ /g' | tr '\n' '|')"; done; done | tee $R/perf.txt
echo "perf $(el) s"
left=$(( 480 - $(el) ))
[ $left -gt 30 ] && { CPCL_TEST_SHAPE=0 timeout $left compute-sanitizer --tool memcheck $N/tests/gpu/test_gpu_decode > $R/memcheck.txt 2>&1
  echo "memcheck rc $? $(grep -E 'ERROR SUMMARY' $R/memcheck.txt) $(grep -c 'Invalid\|out of bounds' $R/memcheck.txt) access errors $(el) s"; }
left=$(( 575 - $(el) ))
[ $left -gt 30 ] && { CPCL_TEST_SHAPE=0 timeout $left compute-sanitizer --tool racecheck $N/tests/gpu/test_gpu_decode > $R/racecheck.txt 2>&1
  echo "racecheck rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $R/racecheck.txt | tail -n 1) $(el) s"; }
echo "done $(el) s"
