#!/usr/bin/env bash
# session 5, call 1: branch s5 (main + pfs spill-free producer + gqa7 tail instantiation)
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
meson setup build-gpu -Dgpu_arch=90a > /tmp/o/setup.log 2>&1 || tail -20 /tmp/o/setup.log
ninja -C build-gpu tests/gpu/test_gpu_kernels tests/gpu/test_gpu_prefill tools/kernel_perf tools/prefill_perf > /tmp/o/build.log 2>&1 || { grep -E "error|FAILED" /tmp/o/build.log | head; exit 1; }
echo "build $(el) s"
timeout 60 build-gpu/tests/gpu/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? at $(el) s: $(tail -1 $R/test_kernels.txt)"
grep -E "FAIL|tail" $R/test_kernels.txt | head -5
{ timeout 60 build-gpu/tools/kernel_perf -n 50 -C 0 -T "rule"; CPCL_GQA_SM90_MERGE=kernel timeout 60 build-gpu/tools/kernel_perf -n 50 -C 0 -T "merge kernel"; } > $R/kernel_perf_gqa.txt 2>&1; echo "kernel_perf rc $? at $(el) s"
grep -E "sm90|copy|^#|rule|merge" $R/kernel_perf_gqa.txt | grep -v mla | awk '{print $1,$2,$4,$5,$6,$8,$10,$12,$13}' | head -40
{ for np in 1 2; do timeout 100 mpirun -np $np build-gpu/tests/gpu/test_gpu_prefill; echo "np$np rc $?"; done; } > $R/test_prefill.txt 2>&1
grep -E "rc |passed|store" $R/test_prefill.txt | tail -6; echo "prefill tests at $(el) s"
CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 120 compute-sanitizer --tool racecheck --error-exitcode 9 build-gpu/tests/gpu/test_gpu_prefill > $R/san_race.txt 2>&1; echo "racecheck rc $? at $(el) s"
grep -E "RACECHECK SUMMARY|kernel cases|launch failure|passed" $R/san_race.txt | tail -3
P=build-gpu/tools/prefill_perf
r() { timeout 60 $P -g 1 -a allgather -n 10 -w 2 "$@"; }
{ r -B 1 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B1 4k"; r -B 4 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B4 4k"; r -B 8 -l 4096 -L 8192 -H 32 -K 8 -T "GQA B8 4k-8k";
  r -B 1 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T "MHA B1 4k"; r -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T "MHA B4 4k";
  r -B 1 -l 16384 -L 16384 -H 32 -K 8 -T "GQA B1 16k"; } > $R/prefill_rows.txt 2>&1
grep -vE "^#|^$" $R/prefill_rows.txt | grep -v seqs | awk '{print $1,$2,$3,$5,$6,$11,$14}'; echo "rows at $(el) s"
ANCHOR_ROWS=gqa_h32_kv8_d128_L4k_b1,gqa_h32_kv8_d128_L4k_b4,gqa_h32_kv8_d128_L4k_b8,gqa_h32_kv8_d128_L8k_b8,mha_h16_d192_128_L4k_b1,mha_h16_d192_128_L4k_b4,gqa_h32_kv8_d128_L16k_b1 \
  timeout 120 python3 tools/kernel_bench/torch_prefill_anchor_rows.py > $R/anchor.txt 2>&1; grep cudnn $R/anchor.txt; echo "anchor at $(el) s"
left=$(( 560 - $(el) )); echo "left $left s"
if [ $left -gt 60 ]; then
  timeout $(( left - 10 )) ncu --clock-control none --launch-skip 6 --launch-count 6 $P -g 1 -a allgather -n 1 -w 1 -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 > /tmp/o/ncu.txt 2>&1
  grep -E "^  [a-zA-Z_].*\(|Duration" /tmp/o/ncu.txt | head -30 | tee $R/ncu_mha_b4_4k.txt
fi
echo "done at $(el) s"
