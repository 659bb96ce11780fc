#!/usr/bin/env bash
# Session 10, call 3: the MLA body's staged Q load (bulk copies, swizzled in place) and staged epilogue (bulk
# stores), against main. Binaries carried in scratch/s10c.tar.xz: old/ = main 7919775 (kernel_perf, mla_sm90_bench,
# its trace build), new/ = the change (the same three, test_gpu_kernels, test_gpu_decode).
# Run: run(command="bash docs/h200_2026-12-02d/s10call3.sh", carry=["scratch/s10c.tar.xz"])
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; unset OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/s10c.tar.xz -C /tmp && O=/tmp/s10c/old N=/tmp/s10c/new; echo "unpacked $(el) s"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
# correctness: the bench's checks of the changed kernel (kinds 0, 1, 2; dense and sparse), then the library's kernel tests
for v in 1 12 13 11 18; do timeout 60 $N/mla_sm90_bench --check-only --variants $v >> $R/checks.txt 2>&1; echo "check v$v rc $?"; done
grep "correctness" $R/checks.txt; echo "checks $(el) s"
timeout 240 $N/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? $(el) s: $(tail -1 $R/test_kernels.txt)"
grep -iE "fail|mismatch" $R/test_kernels.txt | head -5
# timing: the library (kernel_perf), old and new interleaved (ABBA)
M="-s 1,16,1,576,4096 -s 64,16,1,576,16384 -s 32,128,1,576,16384 -s 128,128,1,576,16384 -s 128,128,1,576,4096"
mla() { for p in 16 64; do timeout 40 $1/kernel_perf -n 30 -C 0 -p $p $M -T "$2 mla p$p"; done; }
sps() { timeout 50 $1/kernel_perf -k 2048 -W 8 -p 64 -s 64,128,1,576,32768 -s 128,128,1,576,32768 -c 1 -C 0 -T "$2 sparse"; }
{ mla $O old; mla $N new; sps $O old; sps $N new; sps $N new; sps $O old; mla $N new; mla $O old; } > $R/perf.txt 2>&1
echo "perf $(el) s"; grep -E "^#|auto/sm90|topk|attn/W|filter" $R/perf.txt | grep -vE "^# *kernel" | cut -c1-150
# the CTA timelines (first CTA): B1, B128 4k pg64, sparse K256 / K2048
for row in 1,16,4096,16 128,128,4096,64; do for b in $O $N; do echo "== trace v13 $row $b"
  MLA_TRACE=1 MLA_ONLY=$row timeout 60 $b/mla_sm90_bench.trace --perf-only --variants 13 2>&1 | grep -E -A9 "^trace"; done; done > $R/trace.txt 2>&1
for b in $O $N; do echo "== trace v18 64,128,16384,64 $b"
  MLA_TRACE=1 MLA_ONLY=64,128,16384,64 timeout 60 $b/mla_sm90_bench.trace --perf-only --variants 18 2>&1 | grep -E -A9 "^trace"; done >> $R/trace.txt 2>&1
echo "traces $(el) s"; grep -E "^==|CTA|pair [0-9]|^perf" $R/trace.txt | cut -c1-200
# schedules on the one GPU (MLA through a2a and the others), then sanitizers of the changed kernel, while time is left
for np in 1 2; do left=$(( 560 - $(el) )); [ $left -lt 60 ] && { echo "decode np$np skipped (time)"; continue; }
  timeout $(( left < 150 ? left : 150 )) mpirun -np $np $N/test_gpu_decode > $R/decode_np$np.txt 2>&1; echo "decode np$np rc $? $(el) s: $(tail -1 $R/decode_np$np.txt)"; done
for tv in memcheck:13 memcheck:18 racecheck:13; do tool=${tv%:*} v=${tv#*:}; left=$(( 580 - $(el) )); [ $left -lt 40 ] && { echo "$tool v$v skipped (time)"; continue; }
  timeout $left compute-sanitizer --tool $tool $N/mla_sm90_bench --check-only --variants $v > $R/${tool}_v$v.txt 2>&1
  echo "$tool v$v rc $? $(el) s: $(grep -E 'SUMMARY|correctness' $R/${tool}_v$v.txt | tail -2 | tr '\n' ' ')"; done
echo "done $(el) s"
