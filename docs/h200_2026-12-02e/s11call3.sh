#!/usr/bin/env bash
# Session 11, call 3: variants 19 and 20 (13 and 12 with 32-key blocks in four stages) against 13 and 12 in the
# MLA bench: checks, timing, memcheck of 19, timelines of the compute-bound row.
# Binaries: scratch/s11c.tar.xz = s11/{mla_new, mla_new.trace}: the bench and its -DCPCL_MLA_TRACE build at this commit.
# Run: run(command="bash docs/h200_2026-12-02e/s11call3.sh", carry=["scratch/s11c.tar.xz"])
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/s11c.tar.xz -C /tmp || exit 1
mkdir -p $R/bench; OUT=$R/bench BENCH_BIN=/tmp/s11/mla_new VARIANTS=12,13,19,20 BEST=19 NCU=0 TRACE_VARIANTS=13,19 \
  TRACE_ROWS="128,128,4096,64 128,128,4096,16" timeout $(( 560 - $(el) )) bash tools/kernel_bench/mla_sm90_bench.sh 2>&1 |
  grep -v "probe |" | tail -75
grep -E "FAIL" $R/bench/checks.log | head
echo "done $(el) s"
