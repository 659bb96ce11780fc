#!/usr/bin/env bash
# session 5, call 2: the np1 prefill crash: s5 vs main (9a3020d, scratch/main_src); memcheck; gqa tests
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
meson setup build-gpu -Dgpu_arch=90a > /tmp/o/setup.log 2>&1 || tail -20 /tmp/o/setup.log
( cd scratch/main_src && meson setup /tmp/bm -Dgpu_arch=90a > /tmp/o/setup_m.log 2>&1 && ninja -C /tmp/bm -j8 tests/gpu/test_gpu_prefill > /tmp/o/build_m.log 2>&1; echo "main build rc $?" ) &
ninja -C build-gpu -j10 tests/gpu/test_gpu_kernels tests/gpu/test_gpu_prefill tools/kernel_perf > /tmp/o/build.log 2>&1 || { grep -E "error|FAILED" /tmp/o/build.log | head; exit 1; }
wait; echo "build $(el) s"
for i in 1 2; do CUDA_LAUNCH_BLOCKING=1 CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 60 build-gpu/tests/gpu/test_gpu_prefill > /tmp/o/tp_s5_$i.txt 2>&1; echo "s5 kernels-only run $i rc $?: $(grep -c ': ok' /tmp/o/tp_s5_$i.txt) ok"; grep -E "failure|error" /tmp/o/tp_s5_$i.txt | head -2; done
CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 60 /tmp/bm/tests/gpu/test_gpu_prefill > $R/tp_main.txt 2>&1; echo "main kernels-only rc $?: $(grep -c ': ok' $R/tp_main.txt) ok"; tail -2 $R/tp_main.txt
CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 150 compute-sanitizer --tool memcheck --show-backtrace device build-gpu/tests/gpu/test_gpu_prefill > $R/memcheck_s5.txt 2>&1; echo "memcheck s5 rc $? at $(el) s"
grep -vE ": ok$" $R/memcheck_s5.txt | head -40
CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 100 compute-sanitizer --tool racecheck /tmp/bm/tests/gpu/test_gpu_prefill > $R/race_main.txt 2>&1; echo "racecheck main rc $? at $(el) s"; grep -E "SUMMARY|failure|passed" $R/race_main.txt | head -3
timeout 90 build-gpu/tests/gpu/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? at $(el) s: $(tail -1 $R/test_kernels.txt)"; grep FAIL $R/test_kernels.txt | head -5
echo "done at $(el) s"
