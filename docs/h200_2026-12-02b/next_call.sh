#!/usr/bin/env bash
# The next session's first call: main as session 8 left it (the claim as before, O in 16-byte chunks, one head-block
# division an item, the persistent form at D192 by shape), which ran on the device only in parts.
# Uses scratch/bin.tar.gz (and scratch/trace.tar.gz) when carried (docs/PREFILL_SM90.md, "Session 8": how to build them
# here), else builds here (~3 min more). Kernel cases, the ten rows and cuDNN in the same protocol, the timeline, tests
# np 1/2/4, then racecheck / synccheck / memcheck of the kernel cases, each while time is left (~520 s in all with a build).
# Run: run(command="bash docs/h200_2026-12-02b/next_call.sh", carry=["scratch"])
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; unset OUT; mkdir -p /tmp/o bl; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
if [ -f scratch/bin.tar.gz ]; then
  tar xzf scratch/bin.tar.gz -C bl && ln -sf libcpcl.so.0.2.0 bl/src/libcpcl.so.0
else
  meson setup bl -Dgpu_arch=90a > /tmp/setup.log 2>&1 || tail -20 /tmp/setup.log
  ninja -C bl -j16 tools/prefill_perf tests/gpu/test_gpu_prefill > /tmp/build.log 2>&1 || { grep -E "error|FAILED" /tmp/build.log | head; exit 1; }
fi
echo "binaries $(el) s"
P=bl/tools/prefill_perf; T=bl/tests/gpu/test_gpu_prefill; S=tools/kernel_bench/torch_prefill_same_protocol.py
timeout 90 env CPCL_TEST_PREFILL_KERNELS_ONLY=1 $T > $R/test_kernels.txt 2>&1; echo "kernels-only rc $? $(tail -1 $R/test_kernels.txt) $(el) s"
B8="-B 8 -l 4096 -L 4096 -H 32 -K 8"
if [ -f scratch/trace.tar.gz ]; then
  mkdir -p bt && tar xzf scratch/bin.tar.gz -C bt && tar xzf scratch/trace.tar.gz -C bt && ln -sf libcpcl.so.0.2.0 bt/src/libcpcl.so.0
  CPCL_PREFILL_SM90_TRACE=/tmp/o/b8.bin timeout 60 bt/tools/prefill_perf -g 1 -a allgather -n 2 -w 1 $B8 2>&1 | grep "trace:" | tail -1
  python3 tools/kernel_bench/prefill_trace.py /tmp/o/b8.bin > $R/trace_b8_4k.txt 2>&1; cut -c1-200 $R/trace_b8_4k.txt | head -5
fi
r() { timeout 60 $P -g 1 -a allgather -w 5 "$@"; }
{ r -n 30 -B 1 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B1 4k"; r -n 30 -B 4 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B4 4k"; r -n 30 $B8 -T "GQA B8 4k";
  r -n 30 -B 8 -l 8192 -L 8192 -H 32 -K 8 -T "GQA B8 8k";
  r -n 30 -B 1 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T "MHA B1 4k"; r -n 30 -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T "MHA B4 4k";
  r -n 30 -B 1 -l 16384 -L 16384 -H 32 -K 8 -T "GQA B1 16k"; r -n 30 -B 1 -l 16384 -L 16384 -H 16 -K 16 -d 192 -v 128 -T "MHA B1 16k";
  r -n 15 -B 1 -l 65536 -L 65536 -H 32 -K 8 -T "GQA B1 64k"; r -n 15 -B 1 -l 65536 -L 65536 -H 16 -K 16 -d 192 -v 128 -T "MHA B1 64k"; } > $R/rows.txt 2>&1
grep -vE "^#|^$" $R/rows.txt | grep -v seqs | awk '{print $1,$3,$5,$6,$7,$11,$14}'; echo "rows $(el) s"
AR="gqa_h32_kv8_d128_L4k_b1 gqa_h32_kv8_d128_L4k_b4 gqa_h32_kv8_d128_L4k_b8 gqa_h32_kv8_d128_L8k_b8 mha_h16_d192_128_L4k_b1 mha_h16_d192_128_L4k_b4 gqa_h32_kv8_d128_L16k_b1 mha_h16_d192_128_L16k_b1"
{ timeout 80 python3 $S -n 30 -w 5 $AR; timeout 60 python3 $S -n 15 -w 3 gqa_h32_kv8_d128_L64k_b1 mha_h16_d192_128_L64k_b1 | tail -2; } > $R/cudnn_same_protocol.txt 2>&1; cat $R/cudnn_same_protocol.txt; echo "cudnn $(el) s"
{ for np in 1 2 4; do timeout 80 mpirun -np $np $T | tail -1; echo "np$np rc ${PIPESTATUS[0]}"; done; } > $R/test_prefill.txt 2>&1; cat $R/test_prefill.txt; echo "tests $(el) s"
for tool in racecheck synccheck memcheck; do
  left=$(( 560 - $(el) )); [ $left -lt 30 ] && { echo "$tool skipped (time)"; continue; }
  CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout $left compute-sanitizer --tool $tool $T > $R/$tool.txt 2>&1; echo "$tool rc $? $(el) s: $(grep -E 'SUMMARY|passed' $R/$tool.txt | tail -2 | tr '\n' ' ')"
done
echo "done $(el) s"
