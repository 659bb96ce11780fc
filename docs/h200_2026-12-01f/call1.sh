#!/usr/bin/env bash
# session 6, call 1: prefill branches prest and pcopy side by side (tests, call-5 rows, cuDNN anchor, ncu, racecheck probes)
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
for b in prest pcopy; do ( cd scratch/${b}_src && meson setup /tmp/b_$b -Dgpu_arch=90a > /tmp/o/setup_$b.log 2>&1 && ninja -C /tmp/b_$b -j8 tests/gpu/test_gpu_prefill tools/prefill_perf > /tmp/o/build_$b.log 2>&1; echo "$b build rc $?"; grep -E "error|FAILED" /tmp/o/build_$b.log | head -3 ) & done; wait
echo "build $(el) s"
{ timeout 70 mpirun -np 1 /tmp/b_prest/tests/gpu/test_gpu_prefill; echo "prest np1 rc $?"; for np in 1 2; do timeout 90 mpirun -np $np /tmp/b_pcopy/tests/gpu/test_gpu_prefill; echo "pcopy np$np rc $?"; done; } > "$R/test_prefill.txt" 2>&1
grep -E " rc |passed|FAIL|fail" "$R/test_prefill.txt" | tail -8; echo "tests $(el) s"
rows() { P=$1; r() { timeout 25 $P -g 1 -a allgather -n 10 -w 2 "$@"; }
  r -B 1 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B1 4k"; r -B 4 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B4 4k"; r -B 8 -l 4096 -L 8192 -H 32 -K 8 -T "GQA B8 4k-8k";
  r -B 1 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T "MHA B1 4k"; r -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T "MHA B4 4k";
  r -B 1 -l 16384 -L 16384 -H 32 -K 8 -T "GQA B1 16k"; r -B 1 -l 16384 -L 16384 -H 16 -K 16 -d 192 -v 128 -T "MHA B1 16k"; }
for b in prest pcopy; do rows /tmp/b_$b/tools/prefill_perf > "$R/rows_$b.txt" 2>&1; echo "== $b"; grep -vE "^#|^$" "$R/rows_$b.txt" | grep -v seqs | awk '{print $1,$2,$3,$5,$6,$11,$14}'; done
echo "rows $(el) s"
ANCHOR_ROWS=gqa_h32_kv8_d128_L4k_b1,gqa_h32_kv8_d128_L4k_b4,gqa_h32_kv8_d128_L4k_b8,gqa_h32_kv8_d128_L8k_b8,mha_h16_d192_128_L4k_b1,mha_h16_d192_128_L4k_b4,gqa_h32_kv8_d128_L16k_b1,mha_h16_d192_128_L16k_b1 \
  timeout 120 python3 tools/kernel_bench/torch_prefill_anchor_rows.py > "$R/anchor.txt" 2>&1; grep cudnn "$R/anchor.txt"; echo "anchor $(el) s"
P=/tmp/b_pcopy/tools/prefill_perf
for a in "-B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128"; do
  timeout 60 ncu --clock-control none --launch-skip 6 --launch-count 6 $P -g 1 -a allgather -n 1 -w 1 $a > /tmp/o/ncu.txt 2>&1
  echo "== ncu pcopy [$a]"; grep -E "^  [a-zA-Z_].*\(|Duration" /tmp/o/ncu.txt | head -16
done | tee "$R/ncu.txt"
P=/tmp/b_prest/tools/prefill_perf
for a in "-B 1 -l 1024 -L 1024 -H 4 -K 1" "-B 1 -l 1024 -L 1024 -H 4 -K 4 -d 192 -v 128"; do
  for f in 0 1; do
    CPCL_PREFILL_SM90_PERSISTENT=$f timeout 45 compute-sanitizer --tool racecheck --error-exitcode 9 $P -g 1 -a allgather -n 1 -w 0 $a > /tmp/o/rp.txt 2>&1
    echo "racecheck [$a] form $f rc $?: $(grep -E 'SUMMARY' /tmp/o/rp.txt | tail -1) $(grep -ciE 'launch failure' /tmp/o/rp.txt)"
  done
done | tee "$R/racecheck_probes.txt"
echo "done at $(el) s"
