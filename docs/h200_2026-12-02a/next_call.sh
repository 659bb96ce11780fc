#!/usr/bin/env bash
# The next session's first call (prefill, about 5 minutes with the build): what session 7 left unmeasured.
#  1. the persistent form at D192 now that it fuses the store (ppcopy): session 6's switch (grid at D192) predates it;
#  2. the band rule on the rows it leaves at slot order (B4/B8 4k, B8 8k) and on the grid form;
#  3. cuDNN in the same protocol beside each row (tools/kernel_bench/torch_prefill_same_protocol.py).
# Compare with docs/PREFILL_SM90.md, "Session 7" (call 5's table). Run: run(command="bash docs/h200_2026-12-02a/next_call.sh")
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
meson setup build-gpu -Dgpu_arch=90a > /tmp/setup.log 2>&1 || tail -20 /tmp/setup.log
ninja -C build-gpu -j16 tools/prefill_perf > /tmp/build.log 2>&1 || { grep -E "error|FAILED" /tmp/build.log | head; exit 1; }
echo "build $(el) s"
P=build-gpu/tools/prefill_perf; S=tools/kernel_bench/torch_prefill_same_protocol.py
r() { timeout 60 $P -g 1 -a allgather -w 5 "$@" | grep -vE "^#|seqs" | awk '{print $5, $6, $7, $11}'; }
for row in "mha_h16_d192_128_L4k_b1|-n 30 -B 1 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128" \
  "mha_h16_d192_128_L4k_b4|-n 30 -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128" \
  "mha_h16_d192_128_L16k_b1|-n 30 -B 1 -l 16384 -L 16384 -H 16 -K 16 -d 192 -v 128" \
  "mha_h16_d192_128_L64k_b1|-n 15 -B 1 -l 65536 -L 65536 -H 16 -K 16 -d 192 -v 128"; do
  n=${row%%|*}; a=${row#*|}
  echo "== $n (min median max one_us)"; echo "cudnn      $(python3 $S -n 30 -w 5 $n | tail -1)"
  echo "grid       $(CPCL_PREFILL_SM90_PERSISTENT=0 r $a)"; echo "persistent $(CPCL_PREFILL_SM90_PERSISTENT=1 r $a)"
  echo "grid b132  $(CPCL_PREFILL_SM90_PERSISTENT=0 CPCL_PREFILL_SM90_BAND=132 r $a)"
  echo "pers b132  $(CPCL_PREFILL_SM90_PERSISTENT=1 CPCL_PREFILL_SM90_BAND=132 r $a)"
done 2>&1 | tee $R/d192_forms.txt
for row in "gqa_h32_kv8_d128_L4k_b4|-n 30 -B 4 -l 4096 -L 4096 -H 32 -K 8" "gqa_h32_kv8_d128_L4k_b8|-n 30 -B 8 -l 4096 -L 4096 -H 32 -K 8" \
  "gqa_h32_kv8_d128_L8k_b8|-n 30 -B 8 -l 8192 -L 8192 -H 32 -K 8"; do
  n=${row%%|*}; a=${row#*|}
  echo "== $n (min median max one_us)"; echo "cudnn      $(python3 $S -n 30 -w 5 $n | tail -1)"
  for b in 0 8 16 33; do echo "band $b     $(CPCL_PREFILL_SM90_BAND=$b r $a)"; done
  echo "cudnn      $(python3 $S -n 30 -w 5 $n | tail -1)"
done 2>&1 | tee $R/d128_bands.txt
echo "done $(el) s"
