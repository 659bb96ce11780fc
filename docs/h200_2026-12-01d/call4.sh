#!/usr/bin/env bash
# session 4, call 4: the measurement call (prefill with the fused store vs cuDNN; decode tables with
# the GQA tail merge and sparse v18 vs the anchors), the prefill tests np1/2/4 + racecheck, MLA v16
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
MB=/tmp/o/mlab
( cd tools/kernel_bench && nvcc -gencode arch=compute_90a,code=sm_90a -O3 -std=c++17 -I../../kernels -I../../kernels/cuda mla_sm90_bench.cu \
  ../../kernels/cuda/mla_sm90.cu ../../kernels/cuda/errors.cu -lcublas -o $MB > /tmp/o/mlab_build.log 2>&1 ) &
meson setup build-gpu -Dgpu_arch=90a > /tmp/o/setup.log 2>&1 || tail -20 /tmp/o/setup.log
ninja -C build-gpu > /tmp/o/build.log 2>&1 || { grep -E "error|FAILED" /tmp/o/build.log | head; exit 1; }
echo "build $(el) s"
wait
timeout 60 build-gpu/tests/gpu/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? at $(el) s: $(tail -1 $R/test_kernels.txt)"
grep -E "FAIL|tail" $R/test_kernels.txt | head -5
FORMS=0 TEST=0 timeout 280 tools/kernel_bench/prefill_bench.sh > /tmp/o/bench.txt 2>&1; echo "prefill bench rc $? at $(el) s"
cp /tmp/cpcl-out/prefill.txt /tmp/cpcl-out/anchor.txt $R/ 2>/dev/null
grep -E "ok|FAIL" /tmp/cpcl-out/prefill_check.txt | grep -vE "^#" | awk '{print $NF}' | sort | uniq -c
grep -vE "^#|^$" /tmp/cpcl-out/prefill.txt | grep -vE "seqs" | awk '{print $1,$2,$3,$5,$6,$11,$14}'
grep -E "cudnn" /tmp/cpcl-out/anchor.txt | awk '{print $1,$3}'
{ for np in 1 2 4; do timeout 100 mpirun -np $np build-gpu/tests/gpu/test_gpu_prefill; echo "np$np rc $?"; done; } > $R/test_prefill.txt 2>&1
grep -E "rc |passed" $R/test_prefill.txt; echo "prefill tests at $(el) s"
{ for np in 1 2; do CPCL_TIMEOUT_MS=60000 timeout 70 mpirun -np $np build-gpu/tests/gpu/test_gpu_decode; echo "decode np$np rc $?"; done; } > /tmp/o/test_decode.txt 2>&1
grep -E "rc |passed|cases" /tmp/o/test_decode.txt | tail -4; echo "decode tests at $(el) s"
CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 110 compute-sanitizer --tool racecheck --error-exitcode 9 build-gpu/tests/gpu/test_gpu_prefill > $R/san_race.txt 2>&1; echo "racecheck rc $? at $(el) s"
grep -E "RACECHECK SUMMARY|kernel cases" $R/san_race.txt | tail -2
timeout $(( 560 - $(el) )) tools/gpu_perf.sh decode > /tmp/o/dec.txt 2>&1; echo "decode perf rc $? at $(el) s"
cp /tmp/cpcl-out/kernel_perf.txt /tmp/cpcl-out/anchor_decode.txt $R/ 2>/dev/null
grep -E "sm90|copy|cudnn|flash|merge" /tmp/o/dec.txt | head -60
left=$(( 585 - $(el) )); echo "left $left s for MLA v16"
if [ $left -gt 40 ]; then
  { for v in 13 16; do timeout 30 $MB --check-only --variants $v | grep correctness; done
    timeout $(( left - 65 )) $MB --perf-only --variants 13,16 | grep -A40 "^| variant"; } > $R/mla.txt 2>&1
  cat $R/mla.txt | head -40
fi
echo "done at $(el) s"
