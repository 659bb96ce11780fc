#!/usr/bin/env bash
# session 4, call 3: the fused prefill store (tests, bench + anchor); sparse variants 11/17/18 (sp6)
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; mkdir -p /tmp/o; t0=$(date +%s)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
meson setup build-gpu -Dgpu_arch=90a > /tmp/o/setup.log 2>&1 || tail -20 /tmp/o/setup.log
ninja -C build-gpu > /tmp/o/build.log 2>&1 || { grep -E "error|FAILED" /tmp/o/build.log | head; exit 1; }
echo "build $(( $(date +%s)-t0 )) s"
{ timeout 200 mpirun -np 1 build-gpu/tests/gpu/test_gpu_prefill; echo "np1 rc $?"; timeout 150 mpirun -np 2 build-gpu/tests/gpu/test_gpu_prefill; echo "np2 rc $?"; } > $R/test_prefill.txt 2>&1
grep -E "rc |store|FAIL|fail|passed" $R/test_prefill.txt | head -20; echo "tests at $(( $(date +%s)-t0 )) s"
FORMS=0 TEST=0 timeout 300 tools/kernel_bench/prefill_bench.sh > $R/bench.txt 2>&1; echo "bench rc $? at $(( $(date +%s)-t0 )) s"
grep -vE "^#|^$" /tmp/cpcl-out/prefill.txt | grep -vE "seqs" | awk '{print $1,$2,$3,$6,$12,$14}' | head -30
grep -E "cudnn" /tmp/cpcl-out/anchor.txt | awk '{print $1,$3}'
timeout 120 build-gpu/tests/gpu/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? at $(( $(date +%s)-t0 )) s"; tail -3 $R/test_kernels.txt
for v in 11 17 18; do echo "== sparse variant $v"; CPCL_MLA_SM90_SPARSE=$v timeout 60 build-gpu/tools/kernel_perf -n 20 -C 0 -k 2048 -W 8 -p 64 \
  -s 64,128,1,576,32768 -s 128,128,1,576,32768 -c 1 2>&1 | grep -vE "^#|^$"; done > $R/sparse.txt
cat $R/sparse.txt | head -60; echo "done at $(( $(date +%s)-t0 )) s"
