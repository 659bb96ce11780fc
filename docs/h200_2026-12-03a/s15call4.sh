#!/usr/bin/env bash
# Session 15, call 4 (GQA decode, issue 12): the tree committed, main's kernels with the L2 evict-first policy on the
# K/V boxes (the library's default; CPCL_GQA_SM90_L2=0 drops it) and the -DCPCL_GQA_TRACE marks (empty in this
# build). The bench's plan rows, main ("m") against it ("e"), three rounds interleaved; its checks; the library's
# gpu kernel and decode tests; kernel_perf's issue-12 rows; racecheck of main's bench and of this one on the
# cp.async mode's checks (GQA_MODES=0), where call 3's tree reported hazards. Carry scratch/s15gqa.tar.xz.
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/s15gqa.tar.xz -C /tmp || exit 1
timeout 120 /tmp/gb check > $R/check.txt 2>&1; echo "check rc $? $(tail -n 1 $R/check.txt) $(el) s"
for rep in 1 2 3; do for sh in 0 1 2 3 4 5; do
  ks="m e"; [ $rep = 2 ] && ks="e m"
  for k in $ks; do bin=/tmp/gb; [ $k = m ] && bin=/tmp/gbm
    o=$(GQA_PLAN_ONLY=1 GQA_SHAPE=$sh timeout 60 $bin time 2>&1 | grep "library plan" | sed 's/  */ /g')
    echo "rep$rep $k $o"; done; done; done | tee $R/rows.txt; echo "rows $(el) s"
L=/tmp/s15lib
timeout 150 $L/tests/gpu/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? $(tail -n 1 $R/test_kernels.txt) $(el) s"
for np in 1 2; do CPCL_TIMEOUT_MS=60000 timeout 120 mpirun -np $np $L/tests/gpu/test_gpu_decode > $R/test_decode_np$np.txt 2>&1
  echo "test_gpu_decode np$np rc $? $(tail -n 1 $R/test_decode_np$np.txt) $(el) s"; done
GQA="-s 64,16,1,128,8192 -s 16,16,1,128,32768 -s 128,64,8,128,4096 -s 1,16,1,128,4096 -s 32,64,1,128,32768 -s 8,64,1,128,131072"
timeout 100 $L/tools/kernel_perf -n 50 -C 0 $GQA 2>&1 | grep -E "auto/sm90|merge|ceiling" | sed 's/  */ /g' | cut -c1-140 | tee $R/kernel_perf.txt
for job in "gbm 0" "gb 0"; do set -- $job; left=$(( 520 - $(el) )); [ $left -lt 30 ] && { echo "$job skipped"; continue; }
  GQA_MODES=$2 timeout $left compute-sanitizer --tool racecheck /tmp/$1 check > $R/race_$1_mode$2.txt 2>&1
  echo "$1 mode $2 rc $? $(grep -E 'SUMMARY|checks:' $R/race_$1_mode$2.txt | tr '\n' ' ') $(el) s"
  grep "Race reported between" $R/race_$1_mode$2.txt | sed 's/.*gqaDecodeKernel<\([^>]*\)>.*/\1/' | sort | uniq -c; done
echo "done $(el) s"
