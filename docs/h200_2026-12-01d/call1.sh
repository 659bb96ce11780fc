#!/usr/bin/env bash
# session 4, call 1: build; prefill bench in the three forms + anchor; prefill test np1/np2; sanitizer on prefill kernels
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; export OUT=/tmp/cpcl-out; mkdir -p $OUT
t0=$(date +%s)
meson setup build-gpu -Dgpu_arch=90a > $OUT/setup.log 2>&1 || tail -20 $OUT/setup.log
ninja -C build-gpu > $OUT/build.log 2>&1 || { grep -E "error|FAILED" $OUT/build.log | head; exit 1; }
echo "build $(( $(date +%s)-t0 )) s"
FORMS="0 1 2" TEST=0 timeout 330 tools/kernel_bench/prefill_bench.sh > $R/bench.txt 2>&1; echo "bench rc $? at $(( $(date +%s)-t0 )) s"
grep -E "^\s*[0-9]|form|check|ok|FAIL" $R/bench.txt | head -5 >/dev/null
cp /tmp/cpcl-out/prefill.txt $R/prefill.txt; cp /tmp/cpcl-out/anchor.txt $R/anchor.txt 2>/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
timeout 150 mpirun -np 1 build-gpu/tests/gpu/test_gpu_prefill > $R/test_np1.txt 2>&1; echo "test np1 rc $? at $(( $(date +%s)-t0 )) s"
tail -3 $R/test_np1.txt
CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 120 compute-sanitizer --tool racecheck --error-exitcode 9 build-gpu/tests/gpu/test_gpu_prefill > $R/san_race.txt 2>&1; echo "racecheck rc $? at $(( $(date +%s)-t0 )) s"
grep -E "RACECHECK SUMMARY|ERROR SUMMARY" $R/san_race.txt | tail -2
