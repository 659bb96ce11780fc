#!/usr/bin/env bash
# Session 10, call 2: profiles for issues 13, 16 and 12 (no code change): variant 16's timeline with its own events
# (the bench printed it with variant 13's labels before), variant 18's CTA timeline on the sparse W = 8 row (K 256),
# ncu source counters (per SASS instruction) of MLA variant 13 at B128 H128 L4k pg64 and of the GQA decode kernel at
# B64 H16/1 L8k pg16. Binaries from main + the bench's print fix, carried: scratch/s10b.tar.xz.
# Run: run(command="bash docs/h200_2026-12-02d/s10call2.sh", carry=["scratch/s10b.tar.xz"])
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/s10b.tar.xz -C /tmp && B=/tmp/s10; echo "unpacked $(el) s"
for row in 128,128,4096,64 128,128,4096,16; do for v in 16; do echo "== trace v$v $row"
  MLA_TRACE=1 MLA_ONLY=$row timeout 60 $B/mla_sm90_bench.trace --perf-only --variants $v 2>&1 | grep -A4 "^trace"; done; done > $R/mla_trace16.txt 2>&1
echo "== sparse trace v18 64,128,16384,64 (K 2048 and K 256)" >> $R/mla_trace16.txt
MLA_TRACE=1 MLA_ONLY=64,128,16384,64 timeout 60 $B/mla_sm90_bench.trace --perf-only --variants 18 2>&1 | grep -E -A7 "^trace|^perf" >> $R/mla_trace16.txt
echo "traces $(el) s"; cat $R/mla_trace16.txt
# ncu source counters of v13 (the library's seesaw) at B128 H128 L4k pg64, the base clock
MLA_ONLY=128,128,4096,64 timeout 200 ncu --clock-control base --section SourceCounters --section WarpStateStats --section SchedulerStats \
  --section SpeedOfLight --import-source no -k regex:mlaSm90Kernel --launch-skip 2 --launch-count 1 -o /tmp/v13 \
  $B/mla_sm90_bench --perf-only --variants 13 > /tmp/ncu13.log 2>&1; echo "ncu v13 rc $? $(el) s"; tail -2 /tmp/ncu13.log
ncu --import /tmp/v13.ncu-rep --page source --print-source sass --csv 2>/dev/null | gzip > $R/ncu_v13_sass.csv.gz
ncu --import /tmp/v13.ncu-rep --page details > $R/ncu_v13_details.txt 2>&1
grep -E "Duration|Warp Cycles|Issued Warp|Eligible|Tensor|SM Busy" $R/ncu_v13_details.txt | head
# the same of the GQA decode kernel, B64 H16/1 L8k pg16 (eager launches)
timeout 150 ncu --clock-control base --section SourceCounters --section WarpStateStats --section SchedulerStats --section SpeedOfLight \
  --import-source no -k regex:gqaDecodeKernel --launch-skip 3 --launch-count 1 -o /tmp/gqa $B/kernel_perf -E 1 -n 5 -w 1 -C 0 \
  -s 64,16,1,128,8192 > /tmp/ncugqa.log 2>&1; echo "ncu gqa rc $? $(el) s"; tail -2 /tmp/ncugqa.log
ncu --import /tmp/gqa.ncu-rep --page source --print-source sass --csv 2>/dev/null | gzip > $R/ncu_gqa_b64_sass.csv.gz
ncu --import /tmp/gqa.ncu-rep --page details > $R/ncu_gqa_b64_details.txt 2>&1
grep -E "Duration|Warp Cycles|Issued Warp|Eligible" $R/ncu_gqa_b64_details.txt | head
echo "done $(el) s"
