#!/usr/bin/env bash
# Session 9, call 2: the GQA regression of main (session 8's 16-byte stores under a data-dependent branch: ptxas wrapped
# each SHFL in a WARPSYNC loop) against the fix (shuffles outside the branch) and session 7's prefill_sm90 (5d83219),
# the three libraries interleaved row by row on one machine, cuDNN in the same protocol; the fix's tests and timeline.
# Carry: scratch (bins.tar.xz: prefill_perf, test_gpu_prefill; libs/{main,fix,old,fix_trace}.so.xz).
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; unset OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
for v in main fix old fix_trace; do
  mkdir -p v/$v/src && tar xJf scratch/bins.tar.xz -C v/$v && xz -dc scratch/libs/$v.so.xz > v/$v/src/libcpcl.so.0.2.0 && ln -sf libcpcl.so.0.2.0 v/$v/src/libcpcl.so.0
done
echo "unpacked $(el) s"; compute-sanitizer --tool memcheck env 2>/dev/null | grep -iE "inject|sanit|preload" | cut -c1-200
T=v/fix/tests/gpu/test_gpu_prefill
timeout 60 env CPCL_TEST_PREFILL_KERNELS_ONLY=1 $T > $R/fix_kernels.txt 2>&1; echo "fix kernels-only rc $? $(tail -1 $R/fix_kernels.txt) $(el) s"
B8="-B 8 -l 4096 -L 4096 -H 32 -K 8"
CPCL_PREFILL_SM90_TRACE=/tmp/b8.bin timeout 60 v/fix_trace/tools/prefill_perf -g 1 -a allgather -n 2 -w 1 $B8 2>&1 | grep "trace:" | tail -1
python3 tools/kernel_bench/prefill_trace.py /tmp/b8.bin > $R/trace_fix_b8_4k.txt 2>&1; cut -c1-150 $R/trace_fix_b8_4k.txt | head -5
rows=("-n 30 -B 1 -l 4096 -L 4096 -H 32 -K 8 -T GQA_B1_4k" "-n 30 -B 4 -l 4096 -L 4096 -H 32 -K 8 -T GQA_B4_4k" "-n 30 $B8 -T GQA_B8_4k"
  "-n 20 -B 8 -l 8192 -L 8192 -H 32 -K 8 -T GQA_B8_8k" "-n 30 -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T MHA_B4_4k"
  "-n 30 -B 1 -l 16384 -L 16384 -H 32 -K 8 -T GQA_B1_16k" "-n 10 -B 1 -l 65536 -L 65536 -H 32 -K 8 -T GQA_B1_64k")
for row in "${rows[@]}"; do for v in main fix old; do
  o=$(timeout 60 v/$v/tools/prefill_perf -g 1 -a allgather -w 5 $row 2>&1 | grep -vE "^#|^$" | grep -v seqs | awk '{print $5,$6,$7,$11,$14}')
  echo "${row##*-T } $v $o"; done; done | tee $R/rows3.txt; echo "rows $(el) s"
S=tools/kernel_bench/torch_prefill_same_protocol.py
{ timeout 90 python3 $S -n 30 -w 5 gqa_h32_kv8_d128_L4k_b1 gqa_h32_kv8_d128_L4k_b4 gqa_h32_kv8_d128_L4k_b8 gqa_h32_kv8_d128_L8k_b8 mha_h16_d192_128_L4k_b4 gqa_h32_kv8_d128_L16k_b1;
  timeout 50 python3 $S -n 10 -w 3 gqa_h32_kv8_d128_L64k_b1 | tail -1; } > $R/cudnn.txt 2>&1; cat $R/cudnn.txt; echo "cudnn $(el) s"
{ for np in 1 2 4; do timeout 80 mpirun -np $np $T | tail -1; echo "np$np rc ${PIPESTATUS[0]}"; done; } > $R/fix_tests.txt 2>&1; cat $R/fix_tests.txt; echo "tests $(el) s"
left=$(( 540 - $(el) )); [ $left -gt 40 ] && { CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout $left compute-sanitizer --tool memcheck $T > $R/fix_memcheck.txt 2>&1; echo "memcheck rc $? $(grep -E 'SUMMARY|copy warps' $R/fix_memcheck.txt | tail -2 | cut -c1-200 | tr '\n' ' ')"; }
echo "done $(el) s"
