#!/usr/bin/env bash
# session 8 call 2 (the working tree after 5d83219: the epilogue's head-block division once an item, CPCL_PREFILL_SM90_REST=3,
# the PF90_MARK timeline in a second build; both built here, carried):
#  A. the kernel cases of test_gpu_prefill (the store-apart run is new)
#  B. ncu at the base clock, GQA B8 4k: the attention with the fused store and without (REST=3)
#  C. the timeline of GQA B8 4k (fused, apart) and B1 16k
#  D. clocks and power over 200 replays: ours fused / apart, cuDNN on randn and on prefill_perf's uniform data
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o bl bt; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xzf scratch/bin.tar.gz -C bl && ln -sf libcpcl.so.0.2.0 bl/src/libcpcl.so.0 && ln -sf libcpcl.so.0 bl/src/libcpcl.so
tar xzf scratch/bin.tar.gz -C bt && tar xzf scratch/trace.tar.gz -C bt && ln -sf libcpcl.so.0.2.0 bt/src/libcpcl.so.0
P=bl/tools/prefill_perf; PT=bt/tools/prefill_perf; T=bl/tests/gpu/test_gpu_prefill; S=tools/kernel_bench/torch_prefill_same_protocol.py
timeout 90 env CPCL_TEST_PREFILL_KERNELS_ONLY=1 $T > $R/test_kernels.txt 2>&1; echo "kernels-only rc $? $(grep -c ok $R/test_kernels.txt) ok: $(tail -1 $R/test_kernels.txt) $(el) s"
M=gpu__time_duration.sum,sm__cycles_elapsed.max,dram__bytes.sum,smsp__inst_executed.sum
B8="-B 8 -l 4096 -L 4096 -H 32 -K 8"
for rest in 1 3; do echo "== B8 4k base clock REST=$rest"
  CPCL_PREFILL_SM90_REST=$rest timeout 90 ncu --clock-control base --metrics $M -k regex:prefillSm90Lib --launch-skip 3 --launch-count 1 $P -g 1 -a allgather -n 3 -w 2 $B8 2>&1 | grep -E "gpu__|sm__|dram__|smsp__" | sed 's/^ *//'
done 2>&1 | tee $R/ncu_rest.txt; echo "ncu $(el) s"
{ for c in "b8_4k_fused|1|$B8" "b8_4k_apart|3|$B8" "b1_16k_fused|1|-B 1 -l 16384 -L 16384 -H 32 -K 8" "b4_4k_fused|1|-B 4 -l 4096 -L 4096 -H 32 -K 8"; do
  n=${c%%|*}; rest=${c#*|}; a=${rest#*|}; rest=${rest%%|*}
  CPCL_PREFILL_SM90_REST=$rest CPCL_PREFILL_SM90_TRACE=/tmp/o/$n.bin timeout 60 $PT -g 1 -a allgather -n 2 -w 1 $a > /dev/null 2>&1
  echo "== trace $n (REST=$rest)"; python3 tools/kernel_bench/prefill_trace.py /tmp/o/$n.bin
done; } 2>&1 | tee $R/trace.txt; cp /tmp/o/b8_4k_fused.bin $R/trace_b8_4k_fused.bin; echo "trace $(el) s"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active --format=csv,noheader -lms 20 > $R/smi.csv 2>&1 &
SMI=$!; mark() { echo "MARK $1 $(date +%H:%M:%S.%N)" >> $R/marks.txt; }
for i in 1 2; do
  sleep 1; mark "cudnn_randn$i"; python3 $S -n 200 -w 5 gqa_h32_kv8_d128_L4k_b8 | tail -1
  sleep 1; mark "cudnn_uniform$i"; python3 $S --data uniform -n 200 -w 5 gqa_h32_kv8_d128_L4k_b8 | tail -1
  sleep 1; mark "cpcl_fused$i"; timeout 60 $P -g 1 -a allgather -n 200 -w 5 $B8 | grep -vE "^#|seqs" | awk '{print "fused", $5, $6, $7, $11}'
  sleep 1; mark "cpcl_apart$i"; CPCL_PREFILL_SM90_REST=3 timeout 60 $P -g 1 -a allgather -n 200 -w 5 $B8 | grep -vE "^#|seqs" | awk '{print "apart", $5, $6, $7, $11}'
done 2>&1 | tee $R/long_b8.txt; mark end; kill $SMI; echo "long $(el) s"
r() { timeout 60 $P -g 1 -a allgather -w 5 "$@" | grep -vE "^#|seqs" | awk '{print $5, $6, $7, $11}'; }
for row in "gqa_h32_kv8_d128_L4k_b1|-n 30 -B 1 -l 4096 -L 4096 -H 32 -K 8" "gqa_h32_kv8_d128_L4k_b4|-n 30 -B 4 -l 4096 -L 4096 -H 32 -K 8" \
  "gqa_h32_kv8_d128_L4k_b8|-n 30 $B8" "mha_h16_d192_128_L4k_b4|-n 30 -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128"; do
  n=${row%%|*}; a=${row#*|}
  echo "== $n (min median max one_us)"; echo "cudnn randn   $(python3 $S -n 30 -w 5 $n | tail -1)"; echo "cudnn uniform $(python3 $S --data uniform -n 30 -w 5 $n | tail -1)"
  echo "cpcl          $(r $a)"; echo "cpcl apart    $(CPCL_PREFILL_SM90_REST=3 r $a)"
done 2>&1 | tee $R/rows.txt
echo "done $(el) s"
