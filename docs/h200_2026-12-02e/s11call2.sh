#!/usr/bin/env bash
# Session 11, call 2: measurements for the MLA body's bounds, no code change.
#  1. tma_latency_probe (extended: 3 stages in flight; CTAs paired on pages as the two 64-head CTAs of one row);
#  2. the first CTA's timeline of the B = 1 rows (variants 12 and 13, trace build);
#  3. the library's B = 1 rows (MLA, GQA) by kernel_perf, and ncu's per-kernel durations of one step there.
# Binaries: scratch/s11b.tar.xz = s11/{tma_latency_probe, mla_sm90_bench.trace, kernel_perf} built at this commit.
# Run: run(command="bash docs/h200_2026-12-02e/s11call2.sh", carry=["scratch/s11b.tar.xz"])
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/s11b.tar.xz -C /tmp || exit 1
B=/tmp/s11
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
echo "== tma_latency_probe"; timeout 60 $B/tma_latency_probe
echo "== B1 timelines ($(el) s)"
for row in 1,16,64,16 1,16,4096,16 1,16,4096,64; do
  for v in 12 13; do
    MLA_TRACE=1 MLA_ONLY=$row timeout 60 $B/mla_sm90_bench.trace --perf-only --variants $v 2>&1 | grep -A4 "^trace\|^perf"
  done
done
echo "== kernel_perf B1 ($(el) s)"
timeout 120 $B/kernel_perf -n 50 -s 1,16,1,576,4096 -s 1,16,1,128,4096 2>&1 | tail -25
for s in 1,16,1,576,4096 1,16,1,128,4096; do
  echo "== ncu kernel_perf -E 1 -s $s ($(el) s)"
  timeout 120 ncu --clock-control none --cache-control none --launch-skip 20 --launch-count 8 \
    --metrics gpu__time_duration.sum,launch__grid_size,sm__cycles_active.max $B/kernel_perf -E 1 -n 5 -s $s > $R/ncu_$s.txt 2>&1
  grep -E "^  [a-zA-Z_].*\(|gpu__time_duration|grid_size|cycles_active" $R/ncu_$s.txt | sed 's/(int, .*//' | head -40
done
echo "done $(el) s"
