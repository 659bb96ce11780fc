#!/usr/bin/env bash
# Session 12, call 2: the new schedules against the old in alternating orders (ABBA), so that the clock's drift
# over a run does not favour either: dense 13/19 and 12/21 (21 then: 12 + kFlagHandOrder, since removed), sparse 18/20.
# Carry: scratch/s12.tar.xz (as call 1). ORDERS overrides the orders (the default is what call 5 ran).
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; t0=$(date +%s)
tar xJf scratch/s12.tar.xz -C scratch
B=$PWD/scratch/s12/mla_bench
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu --format=csv,noheader
k=0
for order in ${ORDERS:-13,19,12,21,18,20 20,18,21,12,19,13 13,19,12,21,18,20 20,18,21,12,19,13}; do
  k=$((k+1))
  timeout 200 $B --perf-only --variants $order > $R/perf_$k.log 2>&1
  echo "run $k ($order) rc=$? $(( $(date +%s)-t0 )) s"
  nvidia-smi --query-gpu=clocks.sm,power.draw,temperature.gpu --format=csv,noheader
done
for k in 1 2 3 4; do grep -E "^\| " $R/perf_$k.log | grep -v "probe\|(256)\|(64)\|^| variant\|^|---" | awk -F'|' -v k=$k '{gsub(/ +$/,"",$2); print k"|"$2"|"$3"|"$4"|"$7}'; done | sort -t'|' -k3,3 -k4,4 -k2,2 -k1,1
echo "elapsed $(( $(date +%s)-t0 )) s"
