#!/usr/bin/env bash
# Session 11, call 1 (session 10's next_call.sh with prebuilt binaries): test_gpu_kernels with the mended MLA
# alignment runs, then variant 16 (no wgmma serialization since 2af6caf) against 13: checks, timing, memcheck,
# timelines. Binaries (built on the development machine at 657ff60 + the bench's BENCH_BIN):
#   ninja -C build tests/gpu/test_gpu_kernels; the bench and its -DCPCL_MLA_TRACE build as mla_sm90_bench.sh says;
#   tar cJf scratch/s11.tar.xz -C /tmp s11   (s11/test_gpu_kernels, s11/mla_sm90_bench, s11/mla_sm90_bench.trace)
# Run: run(command="bash docs/h200_2026-12-02e/s11call1.sh", carry=["scratch/s11.tar.xz"])
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/s11.tar.xz -C /tmp || exit 1
timeout 200 /tmp/s11/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? $(el) s: $(tail -1 $R/test_kernels.txt)"
grep FAIL $R/test_kernels.txt | sort | uniq -c | head
mkdir -p $R/bench; OUT=$R/bench BENCH_BIN=/tmp/s11/mla_sm90_bench VARIANTS=13,16 BEST=16 NCU=0 TRACE_VARIANTS=13,16 \
  TRACE_ROWS="128,128,4096,64 128,128,4096,16" timeout $(( 580 - $(el) )) bash tools/kernel_bench/mla_sm90_bench.sh 2>&1 | tail -70
echo "done $(el) s"
