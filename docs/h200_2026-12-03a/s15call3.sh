#!/usr/bin/env bash
# Session 15, call 3 (GQA decode, issue 12): call 2's tree plus the split's block-table lines prefetched into L1 by
# the producer (call 2 had lost B64's L1-warm page lookups with the page pre-pass). The bench's plan rows, main ("m")
# against this tree ("e": evict-first, its default), three rounds interleaved; the checks and memcheck / racecheck
# of them; the library's gpu kernel and decode tests (np 1, 2, 4) and kernel_perf's issue-12 rows.
# Carry scratch/s15gqa.tar.xz: gb (this tree), gbm (main), s15lib/ (the library, kernel_perf, the gpu tests).
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
cd tools/kernel_bench
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
tar xJf ../../scratch/s15gqa.tar.xz -C /tmp || exit 1
timeout 120 /tmp/gb check > $R/check.txt 2>&1; echo "check rc $? $(tail -n 1 $R/check.txt) $(el) s"
for rep in 1 2 3; do for sh in 0 1 2 3 4 5; do
  ks="m e"; [ $rep = 2 ] && ks="e m"
  for k in $ks; do bin=/tmp/gb; [ $k = m ] && bin=/tmp/gbm
    o=$(GQA_PLAN_ONLY=1 GQA_SHAPE=$sh timeout 60 $bin time 2>&1 | grep "library plan" | sed 's/  */ /g')
    echo "rep$rep $k $o"; done; done; done | tee $R/rows.txt; echo "rows $(el) s"
L=/tmp/s15lib
timeout 150 $L/tests/gpu/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? $(tail -n 1 $R/test_kernels.txt) $(el) s"
for np in 1 2 4; do CPCL_TIMEOUT_MS=60000 timeout 120 mpirun -np $np $L/tests/gpu/test_gpu_decode > $R/test_decode_np$np.txt 2>&1
  echo "test_gpu_decode np$np rc $? $(tail -n 1 $R/test_decode_np$np.txt) $(el) s"; done
GQA="-s 64,16,1,128,8192 -s 16,16,1,128,32768 -s 128,64,8,128,4096 -s 1,16,1,128,4096 -s 32,64,1,128,32768 -s 8,64,1,128,131072"
for v in 1 2; do echo "== round $v"; timeout 100 $L/tools/kernel_perf -n 50 -C 0 $GQA 2>&1 | grep -E "auto/sm90|merge|ceiling" | sed 's/  */ /g' | cut -c1-140; done | tee $R/kernel_perf.txt
for tool in memcheck racecheck; do left=$(( 560 - $(el) )); [ $left -lt 40 ] && { echo "$tool skipped"; continue; }
  GQA_ONLY= timeout $left compute-sanitizer --tool $tool /tmp/gb check > $R/san_$tool.txt 2>&1
  echo "$tool rc $? $(grep -E 'SUMMARY|checks:' $R/san_$tool.txt | tr '\n' ' ') $(el) s"; done
echo "done $(el) s"
