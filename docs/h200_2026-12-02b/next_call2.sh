#!/usr/bin/env bash
# The next session's second call: branch pdiv (lanes 1-31 of warp 8 claim the next item while lane 0 streams) against
# main, by the PF90_MARK timeline and the rows; and where main's epilogue (2.9k cycles of O stores) stalls: ncu source
# counters of the persistent kernel at GQA B8 4k. Needs, built here and carried (docs/PREFILL_SM90.md, "Session 8"):
#   scratch/bin.tar.gz (main: src/libcpcl.so.0.2.0 tools/prefill_perf tests/gpu/test_gpu_prefill),
#   scratch/trace_main.tar.gz, scratch/trace_pdiv.tar.gz (src/libcpcl.so.0.2.0 of each, prefill_sm90.cu with -DCPCL_PF90_TRACE),
#   scratch/lib_pdiv.tar.gz (pdiv's src/libcpcl.so.0.2.0, no define).
# Run: run(command="bash docs/h200_2026-12-02b/next_call2.sh", carry=["scratch"])
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
for v in main pdiv; do
  mkdir -p b_$v t_$v; tar xzf scratch/bin.tar.gz -C b_$v; tar xzf scratch/bin.tar.gz -C t_$v; tar xzf scratch/trace_$v.tar.gz -C t_$v
  ln -sf libcpcl.so.0.2.0 b_$v/src/libcpcl.so.0; ln -sf libcpcl.so.0.2.0 t_$v/src/libcpcl.so.0
done
tar xzf scratch/lib_pdiv.tar.gz -C b_pdiv
timeout 90 env CPCL_TEST_PREFILL_KERNELS_ONLY=1 b_pdiv/tests/gpu/test_gpu_prefill > $R/test_kernels_pdiv.txt 2>&1; echo "pdiv kernels-only rc $? $(tail -1 $R/test_kernels_pdiv.txt)"
B8="-B 8 -l 4096 -L 4096 -H 32 -K 8"; S=tools/kernel_bench/torch_prefill_same_protocol.py
for v in main pdiv; do
  CPCL_PREFILL_SM90_TRACE=/tmp/o/$v.bin timeout 60 t_$v/tools/prefill_perf -g 1 -a allgather -n 2 -w 1 $B8 2>&1 | grep "trace:" | tail -1
  echo "== $v"; python3 tools/kernel_bench/prefill_trace.py /tmp/o/$v.bin | cut -c1-400
done 2>&1 | tee $R/trace.txt; echo "trace $(el) s"
r() { timeout 60 $1 -g 1 -a allgather -w 5 "${@:2}" | grep -vE "^#|seqs" | awk '{print $5, $6, $7, $11}'; }
for row in "gqa_h32_kv8_d128_L4k_b4|-n 30 -B 4 -l 4096 -L 4096 -H 32 -K 8" "gqa_h32_kv8_d128_L4k_b8|-n 30 $B8" "gqa_h32_kv8_d128_L16k_b1|-n 30 -B 1 -l 16384 -L 16384 -H 32 -K 8"; do
  n=${row%%|*}; a=${row#*|}
  echo "== $n (min median max one_us)"; echo "cudnn $(python3 $S -n 30 -w 5 $n | tail -1)"
  echo "main  $(r b_main/tools/prefill_perf $a)"; echo "pdiv  $(r b_pdiv/tools/prefill_perf $a)"; echo "main  $(r b_main/tools/prefill_perf $a)"
done 2>&1 | tee $R/rows.txt; echo "rows $(el) s"
timeout 200 ncu --clock-control base --section SourceCounters --section WarpStateStats --import-source no -k regex:prefillSm90Lib --launch-skip 3 --launch-count 1 \
  -o /tmp/o/epi b_main/tools/prefill_perf -g 1 -a allgather -n 3 -w 2 $B8 > /tmp/o/ncu.log 2>&1; echo "ncu rc $? $(el) s"
ncu --import /tmp/o/epi.ncu-rep --page source --print-source sass --csv 2>/dev/null | gzip > $R/ncu_b8_sass.csv.gz
ncu --import /tmp/o/epi.ncu-rep --page details > $R/ncu_b8_details.txt 2>&1; grep -E "Warp Cycles|Stall|Issued" $R/ncu_b8_details.txt | head -20
echo "done $(el) s"
