#!/usr/bin/env bash
# session 5, call 5 (last): the deferred diagonal store: test np1, rows diag vs claim, anchor; racecheck probes
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
meson setup build-gpu -Dgpu_arch=90a > /tmp/o/setup.log 2>&1 || tail -20 /tmp/o/setup.log
ninja -C build-gpu tests/gpu/test_gpu_prefill tools/prefill_perf > /tmp/o/build.log 2>&1 || { grep -E "error|FAILED" /tmp/o/build.log | head; exit 1; }
echo "build $(el) s"
timeout 100 mpirun -np 1 build-gpu/tests/gpu/test_gpu_prefill > $R/test_prefill.txt 2>&1; echo "np1 rc $?"
grep -E "passed|diagonal|FAIL|rror" $R/test_prefill.txt | tail -6; echo "prefill test at $(el) s"
P=build-gpu/tools/prefill_perf
timeout 25 $P -g 1 -a allgather -n 3 -w 1 -c 1 -B 2 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T "diag check" > $R/diag_check.txt 2>&1; echo "diag check rc $? at $(el) s"; grep -vE "^#|^$" $R/diag_check.txt | tail -1
r() { timeout 25 $P -g 1 -a allgather -n 10 -w 2 "$@"; }
rows() { r -B 1 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B1 4k $1"; r -B 4 -l 4096 -L 4096 -H 32 -K 8 -T "GQA B4 4k $1"; r -B 8 -l 4096 -L 8192 -H 32 -K 8 -T "GQA B8 4k-8k $1";
  r -B 1 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T "MHA B1 4k $1"; r -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T "MHA B4 4k $1";
  r -B 1 -l 16384 -L 16384 -H 32 -K 8 -T "GQA B1 16k $1"; r -B 1 -l 16384 -L 16384 -H 16 -K 16 -d 192 -v 128 -T "MHA B1 16k $1"; }
rows diag > $R/prefill_rows_diag.txt 2>&1
CPCL_PREFILL_SM90_DIAGONAL=0 rows claim > $R/prefill_rows_claim.txt 2>&1
for f in diag claim; do echo "== $f"; grep -vE "^#|^$" $R/prefill_rows_$f.txt | grep -v seqs | awk '{print $1,$2,$3,$5,$6,$11,$14}'; done; echo "rows at $(el) s"
ANCHOR_ROWS=gqa_h32_kv8_d128_L4k_b1,gqa_h32_kv8_d128_L4k_b4,gqa_h32_kv8_d128_L4k_b8,gqa_h32_kv8_d128_L8k_b8,mha_h16_d192_128_L4k_b1,mha_h16_d192_128_L4k_b4,gqa_h32_kv8_d128_L16k_b1,mha_h16_d192_128_L16k_b1 \
  timeout 120 python3 tools/kernel_bench/torch_prefill_anchor_rows.py > $R/anchor.txt 2>&1; grep cudnn $R/anchor.txt; echo "anchor at $(el) s"
for a in "-B 1 -l 256 -L 256" "-B 1 -l 256 -L 256 -C 256" "-l 300 -L 300 -B 3"; do
  timeout 30 compute-sanitizer --tool racecheck --error-exitcode 9 $P -g 1 -a allgather -n 1 -w 0 -H 4 -K 1 $a > /tmp/o/rp.txt 2>&1; echo "racecheck probe [$a] rc $?: $(grep -E 'SUMMARY' /tmp/o/rp.txt | tail -1) $(grep -ciE 'launch failure' /tmp/o/rp.txt)"
done
echo "done at $(el) s"
