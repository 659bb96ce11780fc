#!/usr/bin/env bash
# Session 12, call 10: compute-sanitizer racecheck on the bench's checks of variant 19 (the library's seesaw since
# 176ade9) and of 13 (before), with scratch/s12/mla_bench_a (3f5d9da's kernels: 13 and 19 as 176ade9's).
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; t0=$(date +%s)
tar xJf scratch/s12.tar.xz -C scratch
A=$PWD/scratch/s12/mla_bench_a
for v in 19 13; do
  timeout 270 compute-sanitizer --tool racecheck --racecheck-report hazard $A --check-only --variants $v > $R/racecheck_$v.log 2>&1
  echo "== racecheck v$v rc=$? $(( $(date +%s)-t0 )) s"
  grep -E "RACECHECK SUMMARY|ERROR SUMMARY|correctness" $R/racecheck_$v.log | tail -3
  grep -E "^========= (Error|Warning): Race" -A3 $R/racecheck_$v.log | grep -E "Write|Read|at 0x|in " | sed 's/0x[0-9a-f]*//g' | sort | uniq -c | sort -rn | head -8
  gzip -f $R/racecheck_$v.log
done
echo "elapsed $(( $(date +%s)-t0 )) s"
