#!/usr/bin/env bash
# session 4, call 5 (last): after reverting gqa6 (G64 rows 150 -> 187 us in call 4) and the racecheck fix
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
meson setup build-gpu -Dgpu_arch=90a > /tmp/o/setup.log 2>&1 || tail -20 /tmp/o/setup.log
ninja -C build-gpu tests/gpu/test_gpu_kernels tests/gpu/test_gpu_prefill tools/kernel_perf tools/prefill_perf > /tmp/o/build.log 2>&1 || { grep -E "error|FAILED" /tmp/o/build.log | head; exit 1; }
echo "build $(el) s"
timeout 60 build-gpu/tests/gpu/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? at $(el) s: $(tail -1 $R/test_kernels.txt)"
timeout 60 build-gpu/tools/kernel_perf -n 50 -C 0 > $R/kernel_perf_gqa.txt 2>&1; echo "kernel_perf rc $? at $(el) s"; grep -E "sm90|copy" $R/kernel_perf_gqa.txt | awk '{print $1,$2,$4,$5,$6,$8,$10,$12,$13}'
timeout 40 mpirun -np 1 build-gpu/tests/gpu/test_gpu_prefill > $R/test_prefill.txt 2>&1; echo "prefill np1 rc $? at $(el) s"; grep -E "store|passed" $R/test_prefill.txt | tail -4
CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 110 compute-sanitizer --tool racecheck --error-exitcode 9 build-gpu/tests/gpu/test_gpu_prefill > $R/san_race.txt 2>&1; echo "racecheck rc $? at $(el) s"
grep -E "RACECHECK SUMMARY|kernel cases|launch failure" $R/san_race.txt | tail -3
P=build-gpu/tools/prefill_perf
{ $P -g 1 -a allgather -n 10 -w 2 -B 1 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B1 4k"; $P -g 1 -a allgather -n 10 -w 2 -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T "MHA B4 4k"; } > $R/prefill_rows.txt 2>&1
grep -vE "^#|^$" $R/prefill_rows.txt | grep -v seqs; echo "done at $(el) s"
