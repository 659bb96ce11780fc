#!/usr/bin/env bash
# Session 10, call 1: a survey of issues 12, 13, 16 (none timed since sessions 4-5) and issue 15's sanitizers on main.
# Binaries built on the development machine from main (7919775) and carried: scratch/s10.tar.xz (kernel_perf,
# test_gpu_prefill: static cpcl; mla_sm90_bench and its -DCPCL_MLA_TRACE build).
# Run: run(command="bash docs/h200_2026-12-02d/s10call1.sh", carry=["scratch/s10.tar.xz"])
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/s10.tar.xz -C /tmp && B=/tmp/s10; echo "unpacked $(el) s"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
KP=$B/kernel_perf
# issue 12: the six GQA rows and the merge row at page 16 (the issue's) and page 64 (the TMA box-size question)
for p in 16 64; do timeout 90 $KP -n 50 -C 0 -p $p -T "gqa p$p" > $R/gqa_p$p.txt 2>&1; echo "gqa p$p rc $? $(el) s"; done
grep -hE "^\|? *[0-9]|auto|copy" $R/gqa_p16.txt | head -30
grep -hE "auto|copy" $R/gqa_p64.txt | head -20
# issue 12: what bounds B64 H16/1 L8k (page 16): one launch of the attention kernel, full set
timeout 120 ncu --set full -k regex:gqaDecodeKernel --launch-skip 3 --launch-count 1 $KP -E 1 -n 5 -w 1 -C 0 -s 64,16,1,128,8192 > $R/ncu_gqa_b64.txt 2>&1
echo "ncu gqa rc $? $(el) s"; grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued" $R/ncu_gqa_b64.txt | head -20
# issue 16: the sparse chunk knob on the W = 8 rows, beside W = 1
for c in 128 256 512; do echo "== chunk $c"; CPCL_MLA_SM90_SPARSE_CHUNK=$c timeout 60 $KP -k 2048 -W 8 -p 64 \
    -s 64,128,1,576,32768 -s 128,128,1,576,32768 -c 1 -C 0; done > $R/sparse_chunk.txt 2>&1; echo "sparse rc $? $(el) s"
grep -vE "^#|^$" $R/sparse_chunk.txt | head -40
# issue 13: the library's MLA rows, pages 16 and 64
for p in 16 64; do timeout 60 $KP -n 30 -C 0 -p $p -s 1,16,1,576,4096 -s 64,16,1,576,16384 -s 32,128,1,576,16384 \
  -s 128,128,1,576,16384 -s 128,128,1,576,4096 -T "mla p$p"; done > $R/mla_rows.txt 2>&1; echo "mla rc $? $(el) s"
grep -vE "^#|^$" $R/mla_rows.txt | head -30
# issue 13: the timelines of variants 13 (the library's) and 16 (FlashMLA's schedule) at B128 H128 L4k, page 64 and 16
for row in 128,128,4096,64 128,128,4096,16; do for v in 13 16; do echo "== trace v$v $row"
  MLA_TRACE=1 MLA_ONLY=$row timeout 60 $B/mla_sm90_bench.trace --perf-only --variants $v 2>&1 | grep -A12 "^trace"; done; done > $R/mla_trace.txt 2>&1
echo "mla trace $(el) s"; head -80 $R/mla_trace.txt
# issue 15: the sanitizers on main's exact kernels (the kernel cases), as long as time is left
T=$B/test_gpu_prefill
for tool in racecheck synccheck memcheck; do
  left=$(( 570 - $(el) )); [ $left -lt 40 ] && { echo "$tool skipped (time)"; continue; }
  CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout $left compute-sanitizer --tool $tool $T > $R/$tool.txt 2>&1
  echo "$tool rc $? $(el) s: $(grep -E 'SUMMARY|passed|copy warps' $R/$tool.txt | tail -3 | cut -c1-160 | tr '\n' ' ')"
done
echo "done $(el) s"
