#!/usr/bin/env bash
# The next session's first prefill call, on branch ppcopy (the persistent form's copy warps store rows; compiled, not run):
# crash rate, tests np 1/2/4, the cuDNN anchor before and after the rows (its figures moved up to 14% between session 6's
# calls 4 and 5), rows in the default form (by shape) with more replays, ncu of the short rows, racecheck / synccheck / memcheck.
# Compare with session 6 call 5 (docs/PREFILL_SM90.md, "Session 6"); about 6 minutes.
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
meson setup build-gpu -Dgpu_arch=90a > /tmp/o/setup.log 2>&1 || tail -20 /tmp/o/setup.log
ninja -C build-gpu -j16 tests/gpu/test_gpu_prefill tools/prefill_perf > /tmp/o/build.log 2>&1 || { grep -E "error|FAILED" /tmp/o/build.log | head; exit 1; }
echo "build $(el) s"
T=build-gpu/tests/gpu/test_gpu_prefill
for i in 1 2 3; do CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 60 $T > /tmp/o/t.txt 2>&1; echo "kernels-only run $i rc $? ($(grep -c ': ok' /tmp/o/t.txt) ok) $(grep -E 'failure|error' /tmp/o/t.txt | head -1)"; done | tee $R/crash_rate.txt
{ for np in 1 2 4; do timeout 100 mpirun -np $np $T; echo "np$np rc $?"; done; } > "$R/test_prefill.txt" 2>&1
grep -E " rc |passed" "$R/test_prefill.txt"; echo "tests $(el) s"
P=build-gpu/tools/prefill_perf
AR=gqa_h32_kv8_d128_L4k_b1,gqa_h32_kv8_d128_L4k_b4,gqa_h32_kv8_d128_L4k_b8,gqa_h32_kv8_d128_L8k_b8,mha_h16_d192_128_L4k_b1,mha_h16_d192_128_L4k_b4,gqa_h32_kv8_d128_L16k_b1,mha_h16_d192_128_L16k_b1
ANCHOR_ROWS=$AR timeout 120 python3 tools/kernel_bench/torch_prefill_anchor_rows.py > "$R/anchor_before.txt" 2>&1; grep cudnn "$R/anchor_before.txt"
r() { timeout 40 $P -g 1 -a allgather -n 30 -w 5 "$@"; }
{ r -B 1 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B1 4k"; r -B 4 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B4 4k"; r -B 8 -l 4096 -L 8192 -H 32 -K 8 -T "GQA B8 4k-8k";
  r -B 1 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T "MHA B1 4k"; r -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T "MHA B4 4k";
  r -B 1 -l 16384 -L 16384 -H 32 -K 8 -T "GQA B1 16k"; r -B 1 -l 16384 -L 16384 -H 16 -K 16 -d 192 -v 128 -T "MHA B1 16k";
  r -B 1 -l 65536 -L 65536 -H 32 -K 8 -T "GQA B1 64k"; r -B 1 -l 65536 -L 65536 -H 16 -K 16 -d 192 -v 128 -T "MHA B1 64k"; } > "$R/rows.txt" 2>&1
grep -vE "^#|^$" "$R/rows.txt" | grep -v seqs | awk '{print $1,$2,$3,$5,$6,$11,$14}'; echo "rows $(el) s"
ANCHOR_ROWS=gqa_h32_kv8_d128_L4k_b1,gqa_h32_kv8_d128_L4k_b4,gqa_h32_kv8_d128_L4k_b8,gqa_h32_kv8_d128_L8k_b8,mha_h16_d192_128_L4k_b1,mha_h16_d192_128_L4k_b4,gqa_h32_kv8_d128_L16k_b1,mha_h16_d192_128_L16k_b1,gqa_h32_kv8_d128_L64k_b1,mha_h16_d192_128_L64k_b1 \
  timeout 150 python3 tools/kernel_bench/torch_prefill_anchor_rows.py > "$R/anchor.txt" 2>&1; grep cudnn "$R/anchor.txt"; echo "anchor $(el) s"
for a in "-B 1 -l 4096 -L 4096 -H 32 -K 8" "-B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128"; do
  timeout 60 ncu --clock-control none --launch-skip 6 --launch-count 8 $P -g 1 -a allgather -n 1 -w 1 $a > /tmp/o/ncu.txt 2>&1
  echo "== ncu [$a]"; grep -E "^  [a-zA-Z_].*\(|Duration" /tmp/o/ncu.txt | sed 's/(cpcl.*//' | head -16
done > "$R/ncu.txt" 2>&1; cat $R/ncu.txt | grep -E "==|Duration|Kernel|kernel|Rest" | head -24; echo "ncu $(el) s"
CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 150 compute-sanitizer --tool racecheck $T > $R/racecheck.txt 2>&1; echo "racecheck rc $? $(el) s: $(grep -E 'RACECHECK SUMMARY|passed' $R/racecheck.txt | tail -2 | tr '\n' ' ')"
CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 100 compute-sanitizer --tool synccheck $T > $R/synccheck.txt 2>&1; echo "synccheck rc $? $(el) s: $(grep -E 'ERROR SUMMARY|passed' $R/synccheck.txt | tail -2 | tr '\n' ' ')"
CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 150 compute-sanitizer --tool memcheck $T > $R/memcheck.txt 2>&1; echo "memcheck rc $? $(el) s: $(grep -E 'ERROR SUMMARY|passed' $R/memcheck.txt | tail -2 | tr '\n' ' ')"
echo "done at $(el) s"
