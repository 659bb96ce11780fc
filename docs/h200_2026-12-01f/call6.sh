#!/usr/bin/env bash
# session 6, call 6 (the last 315 s of device time): branch ppcopy's first run: kernel cases, np 1, the short GQA rows vs cuDNN
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
( cd scratch/ppcopy_src && meson setup /tmp/bp -Dgpu_arch=90a > /tmp/o/setup.log 2>&1 && ninja -C /tmp/bp -j16 tests/gpu/test_gpu_prefill tools/prefill_perf > /tmp/o/build.log 2>&1 ) || { grep -E "error|FAILED" /tmp/o/build.log | head; exit 1; }
echo "build $(el) s"
T=/tmp/bp/tests/gpu/test_gpu_prefill; P=/tmp/bp/tools/prefill_perf
CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 40 $T > $R/kernels_only.txt 2>&1; echo "kernels-only rc $? ($(grep -c ': ok' $R/kernels_only.txt) ok) $(grep -E 'failure|error|FAIL' $R/kernels_only.txt | head -1)"
r() { timeout 20 $P -g 1 -a allgather -n 20 -w 3 "$@"; }
{ r -B 1 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B1 4k"; r -B 4 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B4 4k"; r -B 8 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B8 4k"; } > $R/rows.txt 2>&1
grep -vE "^#|^$" $R/rows.txt | grep -v seqs | awk '{print $1,$2,$3,$5,$6,$11,$14}'; echo "rows $(el) s"
ANCHOR_ROWS=gqa_h32_kv8_d128_L4k_b1,gqa_h32_kv8_d128_L4k_b4,gqa_h32_kv8_d128_L4k_b8 timeout 40 python3 tools/kernel_bench/torch_prefill_anchor_rows.py > $R/anchor.txt 2>&1; grep cudnn $R/anchor.txt; echo "anchor $(el) s"
timeout 40 mpirun -np 1 $T > $R/test_np1.txt 2>&1; echo "np1 rc $? $(grep passed $R/test_np1.txt) $(el) s"
CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 100 compute-sanitizer --tool racecheck $T > $R/racecheck.txt 2>&1; echo "racecheck rc $? $(el) s: $(grep -E 'RACECHECK SUMMARY' $R/racecheck.txt | tail -1)"
