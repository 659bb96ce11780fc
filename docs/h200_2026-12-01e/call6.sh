#!/usr/bin/env bash
# session 5, call 6: the decode schedules with gqa7's plan (the tail merge via the plan's split counters)
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
meson setup build-gpu -Dgpu_arch=90a > /tmp/o/setup.log 2>&1 || tail -20 /tmp/o/setup.log
ninja -C build-gpu -j16 tests/gpu/test_gpu_decode > /tmp/o/build.log 2>&1 || { grep -E "error|FAILED" /tmp/o/build.log | head; exit 1; }
echo "build $(el) s"
for np in 1 2; do CPCL_TIMEOUT_MS=30000 timeout 45 mpirun -np $np build-gpu/tests/gpu/test_gpu_decode > $R/test_decode_np$np.txt 2>&1; echo "decode np$np rc $? at $(el) s"; grep -E "passed|FAIL|rror|tail" $R/test_decode_np$np.txt | tail -3; done
