#!/usr/bin/env bash
# Session 15, call 2 (GQA decode, issue 12): the bench's library-plan rows, main ("m", c1999b4's kernels) against
# this tree with the L2 evict-first policy (its default, "e") and without any policy (GQA_L2=0, "n"), interleaved,
# order rotated each round. This tree also: barriers before the grid-dependency wait, the bad-page check in the
# producer (no pre-pass over the split's block table), the key groups' merge in float4 straight into the workspace.
# Then the checks and the timelines (B1, B64, B128). Carry scratch/s15gqa.tar.xz: gb, gbt (-DCPCL_GQA_TRACE), gbm.
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
cd tools/kernel_bench
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
tar xJf ../../scratch/s15gqa.tar.xz -C /tmp || exit 1
timeout 120 /tmp/gb check > $R/check.txt 2>&1; echo "check rc $? $(tail -n 1 $R/check.txt) $(el) s"
GQA_L2=0 timeout 120 /tmp/gb check > $R/check_l20.txt 2>&1; echo "check GQA_L2=0 rc $? $(tail -n 1 $R/check_l20.txt) $(el) s"
for rep in 1 2 3; do for sh in 0 1 2 3 4 5; do
  ks="m e n"; [ $rep = 2 ] && ks="n e m"; [ $rep = 3 ] && ks="e m n"
  for k in $ks; do bin=/tmp/gb; l2=1; [ $k = m ] && bin=/tmp/gbm; [ $k = n ] && l2=0
    o=$(GQA_L2=$l2 GQA_PLAN_ONLY=1 GQA_SHAPE=$sh timeout 60 $bin time 2>&1 | grep "library plan" | sed 's/  */ /g')
    echo "rep$rep $k $o"; done; done; [ $(el) -gt 300 ] && break; done | tee $R/rows.txt; echo "rows $(el) s"
for sh in 3 0 2; do echo "== trace shape $sh"; GQA_PLAN_ONLY=1 GQA_SHAPE=$sh timeout 60 /tmp/gbt time 2>&1 | grep -A16 "library plan"; done | tee $R/trace.txt
echo "done $(el) s"
# the library built from this tree (carried as s15lib/: src/libcpcl.so*, tools/kernel_perf, tests/gpu/*): the gpu
# suite's kernel and decode tests, kernel_perf's issue-12 rows with and without the policy (CPCL_GQA_SM90_L2=0)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
L=/tmp/s15lib
timeout 150 $L/tests/gpu/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? $(tail -n 1 $R/test_kernels.txt) $(el) s"
for np in 1 2; do CPCL_TIMEOUT_MS=60000 timeout 120 mpirun -np $np $L/tests/gpu/test_gpu_decode > $R/test_decode_np$np.txt 2>&1
  echo "test_gpu_decode np$np rc $? $(tail -n 1 $R/test_decode_np$np.txt) $(el) s"; done
GQA="-s 64,16,1,128,8192 -s 16,16,1,128,32768 -s 128,64,8,128,4096 -s 1,16,1,128,4096 -s 32,64,1,128,32768 -s 8,64,1,128,131072"
for v in 1 0 0 1; do echo "== CPCL_GQA_SM90_L2=$v"; CPCL_GQA_SM90_L2=$v timeout 100 $L/tools/kernel_perf -n 50 -C 0 $GQA 2>&1 | grep -E "auto/sm90|merge|ceiling" | sed 's/  */ /g' | cut -c1-140; done | tee $R/kernel_perf.txt
echo "all $(el) s"
