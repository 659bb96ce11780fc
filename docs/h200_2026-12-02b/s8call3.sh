#!/usr/bin/env bash
# session 8 call 3: the timeline (the trace build, PF90_MARK; it writes at each uncaptured launch) and two K/V stages at D128
# (CPCL_PREFILL_SM90_STAGES=2, that build only): ncu cycles at the base clock, the timeline, timed rows (both stage counts on the trace build)
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o bt; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xzf scratch/bin.tar.gz -C bt && tar xzf scratch/trace.tar.gz -C bt && ln -sf libcpcl.so.0.2.0 bt/src/libcpcl.so.0
PT=bt/tools/prefill_perf; S=tools/kernel_bench/torch_prefill_same_protocol.py
B8="-B 8 -l 4096 -L 4096 -H 32 -K 8"; B16="-B 1 -l 16384 -L 16384 -H 32 -K 8"; B4="-B 4 -l 4096 -L 4096 -H 32 -K 8"
{ for c in "b8_4k|3|$B8" "b8_4k_s2|2|$B8" "b1_16k|3|$B16" "b1_16k_s2|2|$B16" "b4_4k|3|$B4" "b1_4k|3|-B 1 -l 4096 -L 4096 -H 32 -K 8"; do
  n=${c%%|*}; st=${c#*|}; a=${st#*|}; st=${st%%|*}
  CPCL_PREFILL_SM90_STAGES=$st CPCL_PREFILL_SM90_TRACE=/tmp/o/$n.bin timeout 60 $PT -g 1 -a allgather -n 2 -w 1 $a 2>&1 | grep "trace:" | tail -1
  echo "== trace $n (stages $st)"; python3 tools/kernel_bench/prefill_trace.py /tmp/o/$n.bin
done; } 2>&1 | tee $R/trace.txt; gzip -c /tmp/o/b8_4k.bin > $R/trace_b8_4k.bin.gz; echo "trace $(el) s"
M=gpu__time_duration.sum,sm__cycles_elapsed.max,smsp__inst_executed.sum
for c in "b8_4k|$B8" "b1_16k|$B16"; do n=${c%%|*}; a=${c#*|}
  for st in 3 2; do echo "== $n stages $st, base clock"
    CPCL_PREFILL_SM90_STAGES=$st timeout 90 ncu --clock-control base --metrics $M -k regex:prefillSm90Lib --launch-skip 3 --launch-count 1 $PT -g 1 -a allgather -n 3 -w 2 $a 2>&1 | grep -E "gpu__|sm__|smsp__" | sed 's/^ *//'
  done
done 2>&1 | tee $R/ncu_stages.txt; echo "ncu $(el) s"
r() { timeout 60 $PT -g 1 -a allgather -w 5 "$@" | grep -vE "^#|seqs" | awk '{print $5, $6, $7, $11}'; }
for row in "gqa_h32_kv8_d128_L4k_b4|-n 30 $B4" "gqa_h32_kv8_d128_L4k_b8|-n 30 $B8" "gqa_h32_kv8_d128_L16k_b1|-n 30 $B16"; do
  n=${row%%|*}; a=${row#*|}
  echo "== $n (min median max one_us)"; echo "cudnn     $(python3 $S -n 30 -w 5 $n | tail -1)"
  echo "stages 3  $(r $a)"; echo "stages 2  $(CPCL_PREFILL_SM90_STAGES=2 r $a)"; echo "stages 3  $(r $a)"
done 2>&1 | tee $R/rows.txt
echo "done $(el) s"
