#!/usr/bin/env bash
# The next session's first call (written at the end of session 10, not yet run): what session 10 could not run.
#  1. test_gpu_kernels with the mended MLA alignment runs (6: q 8 bytes off, 7: out 4 bytes off, bitwise run 1);
#  2. variant 16 without its wgmma serialization, against 13: checks, timing, memcheck, timelines (the bench builds
#     itself here, ~1 min a build).
# Uses scratch/s11.tar.xz when carried (test_gpu_kernels built on the development machine), else builds it (~3 min).
# Run: run(command="bash docs/h200_2026-12-02d/next_call.sh", carry=["scratch/s11.tar.xz"])
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
if [ -f scratch/s11.tar.xz ]; then tar xJf scratch/s11.tar.xz -C /tmp; T=/tmp/s11/test_gpu_kernels
else
  meson setup bl -Dgpu_arch=90a > /tmp/setup.log 2>&1 || tail -20 /tmp/setup.log
  ninja -C bl -j16 tests/gpu/test_gpu_kernels > /tmp/build.log 2>&1 || { grep -E "error|FAILED" /tmp/build.log | head; exit 1; }
  T=bl/tests/gpu/test_gpu_kernels
fi
echo "binaries $(el) s"
timeout 200 $T > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? $(el) s: $(tail -1 $R/test_kernels.txt)"
grep FAIL $R/test_kernels.txt | sort | uniq -c | head
mkdir -p $R/bench; OUT=$R/bench VARIANTS=13,16 BEST=16 NCU=0 TRACE_VARIANTS=13,16 TRACE_ROWS="128,128,4096,64 128,128,4096,16" \
  timeout $(( 580 - $(el) )) bash tools/kernel_bench/mla_sm90_bench.sh 2>&1 | tail -60
echo "done $(el) s"
