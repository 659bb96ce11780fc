#!/usr/bin/env bash
# Session 9, call 3: where the fixed tree's item boundary goes (ncu source counters of the persistent kernel, GQA B8 4k,
# one launch at the base clock), and the sustained gap (300 replays) beside cuDNN on the rows cuDNN still wins.
# Carry: scratch (bins.tar.xz, libs/fix.so.xz).
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
mkdir -p v/fix/src && tar xJf scratch/bins.tar.xz -C v/fix && xz -dc scratch/libs/fix.so.xz > v/fix/src/libcpcl.so.0.2.0 && ln -sf libcpcl.so.0.2.0 v/fix/src/libcpcl.so.0
P=v/fix/tools/prefill_perf; B8="-B 8 -l 4096 -L 4096 -H 32 -K 8"
timeout 240 ncu --clock-control base --section SourceCounters --section WarpStateStats --section SchedulerStats --import-source no \
  -k regex:prefillSm90Lib --launch-skip 3 --launch-count 1 -o /tmp/epi $P -g 1 -a allgather -n 3 -w 2 $B8 > /tmp/ncu.log 2>&1; echo "ncu rc $? $(el) s"
tail -3 /tmp/ncu.log
ncu --import /tmp/epi.ncu-rep --page source --print-source sass --csv 2>/dev/null | gzip > $R/ncu_b8_sass.csv.gz
ncu --import /tmp/epi.ncu-rep --page details > $R/ncu_b8_details.txt 2>&1; grep -E "Warp Cycles|Stall|Issued|Eligible|Active" $R/ncu_b8_details.txt | head -30
S=tools/kernel_bench/torch_prefill_same_protocol.py
{ for a in "$B8 -T B8_4k" "-B 4 -l 4096 -L 4096 -H 32 -K 8 -T B4_4k" "-B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T MHA_B4_4k" "-B 8 -l 8192 -L 8192 -H 32 -K 8 -T B8_8k"; do
  n=300; case "$a" in *8192*) n=80;; esac
  timeout 90 $P -g 1 -a allgather -w 20 -n $n $a 2>&1 | grep -vE "^#|^$" | grep -v seqs | awk -v t="${a##*-T }" '{print t, $5,$6,$7,$11}'; done; } > $R/sustained_ours.txt 2>&1; cat $R/sustained_ours.txt; echo "ours $(el) s"
{ timeout 120 python3 $S -n 300 -w 20 gqa_h32_kv8_d128_L4k_b8 gqa_h32_kv8_d128_L4k_b4 mha_h16_d192_128_L4k_b4; timeout 60 python3 $S -n 80 -w 10 gqa_h32_kv8_d128_L8k_b8 | tail -1; } > $R/sustained_cudnn.txt 2>&1; cat $R/sustained_cudnn.txt; echo "done $(el) s"
