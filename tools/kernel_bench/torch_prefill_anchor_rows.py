"""What a user would pick instead of cpcl's prefill kernels on the GPU machine: PyTorch SDPA
(flash, cuDNN) for causal prefill shapes, bf16, with causal FLOPs counted as
4 * B * H * (L^2 / 2) * (Dqk + Dvo) / 2. Run: python3 torch_prefill_anchor_rows.py
../shared/bench/torch_prefill_anchor.py with its shapes extended to every row of
tools/kernel_bench/prefill_bench.sh (issue 15: B 1..8, 4k-64k), so each row has its anchor in
the same call; the efficient backend dropped (never the fastest, slow at 64k)."""
import torch, json, os, warnings
warnings.filterwarnings("ignore")
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
from triton.testing import do_bench
torch.manual_seed(0)
dev = "cuda"
shapes = [  # name, B, Hq, Hkv, Dqk, Dvo, L  (extended to every row of tools/kernel_bench/prefill_bench.sh)
    *[("gqa_h32_kv8_d128_L%dk_b1" % (L // 1024), 1, 32, 8, 128, 128, L) for L in (4096, 8192, 16384, 32768, 65536)],
    *[("gqa_h32_kv8_d128_L%dk_b2" % (L // 1024), 2, 32, 8, 128, 128, L) for L in (8192, 16384)],
    *[("gqa_h32_kv8_d128_L%dk_b4" % (L // 1024), 4, 32, 8, 128, 128, L) for L in (4096, 8192, 16384)],
    *[("gqa_h32_kv8_d128_L%dk_b8" % (L // 1024), 8, 32, 8, 128, 128, L) for L in (4096, 8192)],
    *[("mha_h16_d192_128_L%dk_b1" % (L // 1024), 1, 16, 16, 192, 128, L) for L in (4096, 16384, 65536)],
    ("mha_h16_d192_128_L16k_b2", 2, 16, 16, 192, 128, 16384),
    *[("mha_h16_d192_128_L%dk_b4" % (L // 1024), 4, 16, 16, 192, 128, L) for L in (4096, 16384)],
]
# ANCHOR_ROWS: a comma-separated list of row names to time (default every row), so a device call
# that times a few cpcl rows times the same rows' anchors
only = [r for r in os.environ.get("ANCHOR_ROWS", "").split(",") if r]
if only: shapes = [s for s in shapes if s[0] in only]
rows = []
for name, B, Hq, Hkv, Dqk, Dvo, L in shapes:
    q = torch.randn(B, Hq, L, Dqk, device=dev, dtype=torch.bfloat16)
    k = torch.randn(B, Hkv, L, Dqk, device=dev, dtype=torch.bfloat16)
    v = torch.randn(B, Hkv, L, Dvo, device=dev, dtype=torch.bfloat16)
    flops = 2 * B * Hq * (L * L / 2) * (Dqk + Dvo)
    for be in ["FLASH_ATTENTION", "CUDNN_ATTENTION"]:
        try:
            with sdpa_kernel(getattr(SDPBackend, be)):
                fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=Hq != Hkv)
                fn(); torch.cuda.synchronize()
                t = do_bench(fn, warmup=10, rep=100, return_mode="median")
            rows.append((name, be.lower(), t * 1e3, flops / (t * 1e-3) / 1e12))
        except Exception as e:
            rows.append((name, be.lower(), None, str(e).splitlines()[0][:70]))
    del q, k, v; torch.cuda.empty_cache()
out = os.environ.get("OUT")
if out: open(os.path.join(out, "anchor_prefill.json"), "w").write(json.dumps(rows, indent=1))
print("%-28s %-22s %10s %8s" % ("shape", "method", "time_us", "TFLOP/s"))
for r in rows:
    print("%-28s %-22s %10s %8s" % (r[0], r[1], "%.1f" % r[2] if r[2] else "-", "%.0f" % r[3] if r[2] else r[3]))
