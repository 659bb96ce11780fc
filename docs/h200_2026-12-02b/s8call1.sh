#!/usr/bin/env bash
# session 8 call 1 (main at 5d83219, built here, carried as scratch/bin.tar.gz):
#  A. per cycle or per clock? ncu at the locked base clock and at free clocks, ours and cuDNN's kernel, GQA B8 4k and MHA B4 4k
#  B. clocks and power over 200 back-to-back replays (nvidia-smi every 20 ms), ours and cuDNN, GQA B8 4k
#  C. session 7's next_call.sh: the persistent form at D192, bands on the rows left in slot order, cuDNN beside each
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o bl; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xzf scratch/bin.tar.gz -C bl && ln -sf libcpcl.so.0.2.0 bl/src/libcpcl.so.0 && ln -sf libcpcl.so.0 bl/src/libcpcl.so
P=bl/tools/prefill_perf; S=tools/kernel_bench/torch_prefill_same_protocol.py
cat > /tmp/o/one.py <<'PY'
import sys, torch, torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
B, H, K, D, V, L = [int(x) for x in sys.argv[1:7]]
q = torch.randn(B, H, L, D, device="cuda", dtype=torch.bfloat16); k = torch.randn(B, K, L, D, device="cuda", dtype=torch.bfloat16); v = torch.randn(B, K, L, V, device="cuda", dtype=torch.bfloat16)
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    for _ in range(4): F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=H != K)
torch.cuda.synchronize()
PY
M=gpu__time_duration.sum,sm__cycles_elapsed.max,sm__cycles_elapsed.avg.per_second,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_elapsed,dram__bytes.sum,lts__t_sector_hit_rate.pct,smsp__inst_executed.sum
for cc in base none; do
  for row in "gqa_b8_4k|8 32 8 128 128 4096|-B 8 -l 4096 -L 4096 -H 32 -K 8" "mha_b4_4k|4 16 16 192 128 4096|-B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128"; do
    n=${row%%|*}; rest=${row#*|}; py=${rest%%|*}; a=${rest#*|}
    echo "== $n clock $cc"
    timeout 90 ncu --clock-control $cc --metrics $M -k regex:prefillSm90Lib --launch-skip 3 --launch-count 1 $P -g 1 -a allgather -n 3 -w 2 $a 2>&1 | grep -E "prefillSm90Lib|gpu__|sm__|dram__|lts__|smsp__" | sed 's/^ *//'
    timeout 90 ncu --clock-control $cc --metrics $M -k regex:"cudnn|sdpa|fprop|fmha" --launch-skip 2 --launch-count 1 python3 /tmp/o/one.py $py 2>&1 | grep -E "sdpa|fprop|gpu__|sm__|dram__|lts__|smsp__" | sed 's/^ *//'
  done
done 2>&1 | tee $R/ncu_clocks.txt; echo "ncu $(el) s"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active --format=csv,noheader -lms 20 > $R/smi.csv 2>&1 &
SMI=$!; mark() { echo "MARK $1 $(date +%H:%M:%S.%N)" >> $R/marks.txt; }
for i in 1 2; do
  sleep 1; mark "cudnn$i"; python3 $S -n 200 -w 5 gqa_h32_kv8_d128_L4k_b8 | tail -1
  sleep 1; mark "cpcl$i"; timeout 60 $P -g 1 -a allgather -n 200 -w 5 -B 8 -l 4096 -L 4096 -H 32 -K 8 | grep -vE "^#|seqs" | awk '{print $5, $6, $7, $11}'
done 2>&1 | tee $R/long_b8.txt; mark end; kill $SMI; echo "long $(el) s"
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
done 2>&1 | tee $R/d192_forms.txt; echo "forms $(el) s"
for row in "gqa_h32_kv8_d128_L4k_b4|-n 30 -B 4 -l 4096 -L 4096 -H 32 -K 8" "gqa_h32_kv8_d128_L4k_b8|-n 30 -B 8 -l 4096 -L 4096 -H 32 -K 8" \
  "gqa_h32_kv8_d128_L8k_b8|-n 30 -B 8 -l 8192 -L 8192 -H 32 -K 8"; do
  n=${row%%|*}; a=${row#*|}
  echo "== $n (min median max one_us)"; echo "cudnn      $(python3 $S -n 30 -w 5 $n | tail -1)"
  for b in 0 8 16 33; do echo "band $b     $(CPCL_PREFILL_SM90_BAND=$b r $a)"; done
  echo "cudnn      $(python3 $S -n 30 -w 5 $n | tail -1)"
done 2>&1 | tee $R/d128_bands.txt
echo "done $(el) s"
