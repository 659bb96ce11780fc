#!/usr/bin/env bash
# Session 11, call 6 (the GQA spread merge form up to 1024 units only, main's form above; the MLA combine back to main's): the merge kernels' B = 1 latency (gqaMergeKernel: one warp a CTA, 32 partials in flight;
# mlaSm90Combine: a warp a CTA over 128 of the 512 dims, 32 in flight; both read the row's batch data before
# the grid-dependency wait). Correctness: test_gpu_kernels (both GQA merge forms bitwise, MLA splits), test_gpu_decode
# np 1. Speed: kernel_perf of main (e4ca3a7, old/) and the change (new/), ABAB, issue 12's rows and the MLA rows
# with splits; ncu's per-kernel durations at B = 1.
# Binaries: scratch/s11f.tar.xz = s11old/kernel_perf (main) and s11new/{kernel_perf, test_gpu_kernels, test_gpu_decode}.
# Run: run(command="bash docs/h200_2026-12-02e/s11call4.sh", carry=["scratch/s11f.tar.xz"])
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/s11f.tar.xz -C /tmp || exit 1
O=/tmp/s11old N=/tmp/s11new
timeout 120 $N/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? $(el) s: $(tail -1 $R/test_kernels.txt)"
grep FAIL $R/test_kernels.txt | sort | uniq -c | head
timeout 200 $N/test_gpu_decode > $R/test_decode.txt 2>&1; echo "test_gpu_decode np1 rc $? $(el) s: $(tail -1 $R/test_decode.txt)"
MLA="-s 1,16,1,576,4096 -s 64,16,1,576,16384 -s 32,128,1,576,16384"
for r in 1 2; do
  for v in old new; do
    B=$O; [ $v = new ] && B=$N
    echo "== round $r $v ($(el) s)"
    timeout 120 $B/kernel_perf -n 50 2>&1 | grep -E "auto/sm90|merge" | awk '{print $1, $2, $4, $5, $6, $7, $8, $10}'
    timeout 120 $B/kernel_perf -n 50 $MLA 2>&1 | grep -E "auto/sm90" | awk '{print $1, $2, $4, $5, $6, $7, $8, $10}'
  done
done
for s in 1,16,1,576,4096 1,16,1,128,4096; do timeout 120 compute-sanitizer --tool memcheck $N/kernel_perf -E 1 -n 2 -s $s 2>&1 | grep -E "ERROR SUMMARY" ; done
echo "done $(el) s"
