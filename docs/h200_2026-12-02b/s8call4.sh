#!/usr/bin/env bash
# session 8 call 4 (call 3's script again, its trace build now really built with -DCPCL_PF90_TRACE), and energy per call:
# the card's energy counter (nvidia-smi total_energy_consumption, mJ) around long runs, less the idle power over the same time
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o bt bl; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xzf scratch/bin.tar.gz -C bl && ln -sf libcpcl.so.0.2.0 bl/src/libcpcl.so.0
tar xzf scratch/bin.tar.gz -C bt && tar xzf scratch/trace.tar.gz -C bt && ln -sf libcpcl.so.0.2.0 bt/src/libcpcl.so.0
P=bl/tools/prefill_perf; PT=bt/tools/prefill_perf; S=tools/kernel_bench/torch_prefill_same_protocol.py
B8="-B 8 -l 4096 -L 4096 -H 32 -K 8"; B16="-B 1 -l 16384 -L 16384 -H 32 -K 8"; B4="-B 4 -l 4096 -L 4096 -H 32 -K 8"
{ for c in "b8_4k|3|$B8" "b8_4k_s2|2|$B8" "b1_16k|3|$B16" "b4_4k|3|$B4" "b1_4k|3|-B 1 -l 4096 -L 4096 -H 32 -K 8"; do
  n=${c%%|*}; st=${c#*|}; a=${st#*|}; st=${st%%|*}
  CPCL_PREFILL_SM90_STAGES=$st CPCL_PREFILL_SM90_TRACE=/tmp/o/$n.bin timeout 60 $PT -g 1 -a allgather -n 2 -w 1 $a 2>&1 | grep "trace:" | tail -1
  echo "== trace $n (stages $st)"; python3 tools/kernel_bench/prefill_trace.py /tmp/o/$n.bin
done; } 2>&1 | tee $R/trace.txt; gzip -c /tmp/o/b8_4k.bin > $R/trace_b8_4k.bin.gz; echo "trace $(el) s"
E() { nvidia-smi --query-gpu=total_energy_consumption --format=csv,noheader,nounits; }
now() { date +%s.%N; }
e0=$(E); s0=$(now); sleep 3; e1=$(E); s1=$(now); idle=$(python3 -c "print(($e1-$e0)/1e3/($s1-$s0))")
echo "idle W $idle" | tee $R/energy.txt
en() { local n=$1 calls=$2; shift 2; local a=$(E) ta=$(now); "$@" > /tmp/o/en.txt 2>&1; local b=$(E) tb=$(now)
  echo "$n $(python3 -c "w=$tb-$ta; e=($b-$a)/1e3-$idle*w; print('wall %.2f s, energy above idle %.1f J, %.2f mJ a call over %d calls' % (w, e, e*1e3/$calls, $calls))") | $(grep -vE '^#|seqs|shape' /tmp/o/en.txt | head -2 | tr '\n' ' ')" | tee -a $R/energy.txt; }
for i in 1 2; do
  en cudnn_b8_4k 1008 python3 $S --data uniform -n 1000 -w 5 gqa_h32_kv8_d128_L4k_b8
  en cpcl_b8_4k 2012 timeout 120 $P -g 1 -a allgather -n 1000 -w 5 $B8
  en cudnn_b1_16k 508 python3 $S --data uniform -n 500 -w 5 gqa_h32_kv8_d128_L16k_b1
  en cpcl_b1_16k 1012 timeout 120 $P -g 1 -a allgather -n 500 -w 5 $B16
done; echo "energy $(el) s"
M=gpu__time_duration.sum,sm__cycles_elapsed.max,smsp__inst_executed.sum
for c in "b8_4k|$B8" "b4_4k|$B4"; do n=${c%%|*}; a=${c#*|}
  for st in 3 2; do echo "== $n stages $st, base clock"
    CPCL_PREFILL_SM90_STAGES=$st timeout 90 ncu --clock-control base --metrics $M -k regex:prefillSm90Lib --launch-skip 3 --launch-count 1 $PT -g 1 -a allgather -n 3 -w 2 $a 2>&1 | grep -E "gpu__|sm__|smsp__" | sed 's/^ *//'
  done
done 2>&1 | tee $R/ncu_stages.txt; echo "done $(el) s"
