#!/usr/bin/env bash
# session 7 call 3: cuDNN under prefill_perf's protocol, clocks during both, ncu of cuDNN's kernel (binaries built here, carried)
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o bl; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xzf scratch/bin.tar.gz -C bl && ln -sf libcpcl.so.0.2.0 bl/src/libcpcl.so.0 && ln -sf libcpcl.so.0 bl/src/libcpcl.so
P=bl/tools/prefill_perf; $P -h > /dev/null 2>&1; echo "unpacked $(el) s rc $?"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 100 > $R/smi.csv 2>&1 &
SMI=$!
S=tools/kernel_bench/torch_prefill_same_protocol.py
mark() { echo "MARK $1 $(date +%H:%M:%S.%N)" >> $R/marks.txt; }
r() { timeout 60 $P -g 1 -a allgather -n 30 -w 5 "$@" | grep -vE "^#|seqs"; }
for row in "gqa_h32_kv8_d128_L4k_b1|-B 1 -l 4096 -L 4096 -H 32 -K 8" "gqa_h32_kv8_d128_L4k_b8|-B 8 -l 4096 -L 4096 -H 32 -K 8" \
  "gqa_h32_kv8_d128_L8k_b8|-B 8 -l 8192 -L 8192 -H 32 -K 8" "gqa_h32_kv8_d128_L16k_b1|-B 1 -l 16384 -L 16384 -H 32 -K 8" \
  "mha_h16_d192_128_L4k_b4|-B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128" "gqa_h32_kv8_d128_L64k_b1|-B 1 -l 65536 -L 65536 -H 32 -K 8"; do
  n=${row%%|*}; a=${row#*|}
  mark "cudnn $n"; python3 $S -n 30 -w 5 $n | tail -1
  mark "cpcl $n"; r $a
  mark "cudnn2 $n"; python3 $S -n 30 -w 5 $n | tail -1
done 2>&1 | tee $R/same_protocol.txt
mark end; kill $SMI; echo "rows $(el) s"
cat > /tmp/o/one.py <<'PY'
import torch, torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
q = torch.randn(1, 32, 16384, 128, device="cuda", dtype=torch.bfloat16); k = torch.randn(1, 8, 16384, 128, device="cuda", dtype=torch.bfloat16); v = torch.randn_like(k)
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    for _ in range(4): F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
torch.cuda.synchronize()
PY
ncu --clock-control base --set full --import-source no -k regex:"cudnn|sdpa|fprop|fmha" --launch-skip 2 --launch-count 1 -o /tmp/o/cud python3 /tmp/o/one.py > /tmp/o/ncu.log 2>&1; echo "ncu rc $? $(el) s"; tail -2 /tmp/o/ncu.log
ncu --import /tmp/o/cud.ncu-rep --page details > $R/ncu_cudnn_g16_details.txt 2>&1
grep -E "^  [a-z_]|Duration|SM Frequency|Compute \(SM\) Throughput|Issue Slots|Executed Instructions  |Registers Per|Block Size|Grid Size|L2 Cache Throughput|Dynamic Shared" $R/ncu_cudnn_g16_details.txt | head -20
echo "done $(el) s"
