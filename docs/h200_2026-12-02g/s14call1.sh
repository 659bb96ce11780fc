#!/usr/bin/env bash
# Session 14, call 1: prefill libraries B (the mask's fast path, the epilogue's SFU reciprocal / log2, the head block
# posted in sg) and C (B + 16-bit out rows held in registers and stored under the next item's first S) against
# A (main, c1999b4), interleaved row by row (order rotated per rep); cuDNN in the same protocol in the same call;
# B's and C's kernel cases, C's schedules np 1/2/4. Carry: scratch/s13pf.tar.xz, built here:
#   meson setup /tmp/bA <worktree of main> -Dgpu_arch=90a -Dcuda=enabled; B = /tmp/b.patch applied, C = the working tree
#   ninja -C /tmp/bX src/libcpcl.so.0.2.0 tools/prefill_perf tests/gpu/test_gpu_prefill
#   scratch/s13pf/{A,B,C}/{src/libcpcl.so.0.2.0,tools/prefill_perf,tests/gpu/test_gpu_prefill}, tar cJf
# Run: bash docs/h200_2026-12-02g/s14call1.sh (REPS, NPS, SAN, LIMIT below).
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; unset OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
LIBS="A B C"; LAST=C
tar xJf scratch/s13pf.tar.xz -C /tmp && for v in $LIBS; do ln -sf libcpcl.so.0.2.0 /tmp/s13pf/$v/src/libcpcl.so.0; done
V=/tmp/s13pf
for v in B C; do timeout 90 env CPCL_TEST_PREFILL_KERNELS_ONLY=1 $V/$v/tests/gpu/test_gpu_prefill > $R/${v}_kernels.txt 2>&1
  echo "$v kernels-only rc $? $(tail -1 $R/${v}_kernels.txt) $(el) s"; done
T=$V/$LAST/tests/gpu/test_gpu_prefill; B=$LAST
B8="-B 8 -l 4096 -L 4096 -H 32 -K 8"
rows=("-n 300 -B 4 -l 4096 -L 4096 -H 32 -K 8 -T GQA_B4_4k" "-n 300 $B8 -T GQA_B8_4k" "-n 300 -B 1 -l 4096 -L 4096 -H 32 -K 8 -T GQA_B1_4k"
  "-n 300 -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T MHA_B4_4k" "-n 300 -B 1 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T MHA_B1_4k"
  "-n 80 -B 8 -l 8192 -L 8192 -H 32 -K 8 -T GQA_B8_8k" "-n 60 -B 1 -l 16384 -L 16384 -H 32 -K 8 -T GQA_B1_16k"
  "-n 60 -B 1 -l 16384 -L 16384 -H 16 -K 16 -d 192 -v 128 -T MHA_B1_16k" "-n 10 -B 1 -l 65536 -L 65536 -H 32 -K 8 -T GQA_B1_64k")
for rep in $(seq ${REPS:-2}); do for row in "${rows[@]}"; do
  order="$LIBS"; [ $((rep % 2)) -eq 0 ] && order=$(echo $LIBS | tr ' ' '\n' | tac | tr '\n' ' ')
  for v in $order; do
  o=$(timeout 60 $V/$v/tools/prefill_perf -g 1 -a allgather -w 20 $row 2>&1 | grep -vE "^#|^$" | grep -v seqs | awk '{print $5,$6,$7,$11}')
  echo "${row##*-T } $v $o"; done; done; [ $(el) -gt 300 ] && break; done | tee $R/rows.txt; echo "rows $(el) s"
S=tools/kernel_bench/torch_prefill_same_protocol.py
{ timeout 150 python3 $S -n 300 -w 20 gqa_h32_kv8_d128_L4k_b4 gqa_h32_kv8_d128_L4k_b8 gqa_h32_kv8_d128_L4k_b1 mha_h16_d192_128_L4k_b4 mha_h16_d192_128_L4k_b1;
  timeout 60 python3 $S -n 80 -w 10 gqa_h32_kv8_d128_L8k_b8 | tail -1;
  timeout 60 python3 $S -n 60 -w 10 gqa_h32_kv8_d128_L16k_b1 mha_h16_d192_128_L16k_b1 | tail -2;
  timeout 60 python3 $S -n 10 -w 3 gqa_h32_kv8_d128_L64k_b1 | tail -1; } > $R/cudnn.txt 2>&1; cat $R/cudnn.txt; echo "cudnn $(el) s"
{ for np in ${NPS:-1 2 4}; do timeout 90 mpirun -np $np $T | tail -1; echo "np$np rc ${PIPESTATUS[0]}"; done; } > $R/${B}_tests.txt 2>&1; cat $R/${B}_tests.txt; echo "tests $(el) s"
for job in ${SAN:-}; do tool=$job; left=$(( ${LIMIT:-540} - $(el) )); [ $left -lt 30 ] && { echo "$job skipped (time)"; continue; }
  CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout $left compute-sanitizer --tool $tool $T > $R/${B}_$tool.txt 2>&1
  echo "$job rc $? $(el) s: $(grep -E 'SUMMARY|kernel cases' $R/${B}_$tool.txt | tail -2 | tr '\n' ' ')"; done
echo "done $(el) s"
