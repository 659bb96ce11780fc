#!/usr/bin/env bash
# Session 12, call 9: Q's bulk copies issued before the CTA barrier (so ahead of the producer's first K/V boxes in the
# copy engine) against 176ade9's order: bench A = 3f5d9da's kernels (19, 12, 20 as 176ade9), B = the change; ABBA
# timing of 12, 19, 20, the first CTA's timeline at B1, and B's checks. Carry scratch/s12.tar.xz (scratch/s12/
# mla_bench_a{,.trace} and mla_bench{,.trace}, built as s12call1.sh says).
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; t0=$(date +%s)
tar xJf scratch/s12.tar.xz -C scratch
A=$PWD/scratch/s12/mla_bench_a B=$PWD/scratch/s12/mla_bench
timeout 120 $B --check-only --variants 12,19,20 > $R/checks.log 2>&1; echo "checks rc $?"; grep -E "correctness|FAIL" $R/checks.log
for row in 1,16,64,16 1,16,4096,16 1,16,4096,64 64,16,16384,16; do
  for v in A B; do X=$A; [ $v = B ] && X=$B
    echo "== $v $row"; MLA_TRACE=1 MLA_ONLY=$row timeout 60 $X.trace --perf-only --variants 12 2>&1 | grep -E "CTA \(cycles|producer \(stage"
  done
done
k=0
for v in A B B A; do k=$((k+1)); X=$A; [ $v = B ] && X=$B
  timeout 200 $X --perf-only --variants 12,19,20 > $R/perf_$k.log 2>&1; echo "run $k $v rc=$?"
done
for k in 1 2 3 4; do grep -E "^\| " $R/perf_$k.log | grep -v "probe\|(256)\|(64)\|^| variant\|^|---" | awk -F'|' -v k=$k '{gsub(/ +$/,"",$2); print k"|"$2"|"$3"|"$4"|"$7}'; done | sort -t'|' -k3,3 -k4,4 -k2,2 -k1,1
echo "elapsed $(( $(date +%s)-t0 )) s"
