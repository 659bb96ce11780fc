"""cuDNN SDPA (causal, bf16) timed with prefill_perf's protocol instead of triton's do_bench, so
the two are compared under the same conditions: a CUDA graph of one call, `-w` warm-up replays,
then `-n` replays each between two events with a host sync after each, no L2 flush; min, median,
max in us. do_bench (torch_prefill_anchor_rows.py) flushes the L2 before every call and, for the
long rows, runs only a few calls, so the card's power state differs from prefill_perf's 35
back-to-back replays.
--data uniform draws q, k, v uniform in [-1, 1) as prefill_perf does (tools/perf/data.c,
perfGenRow) instead of torch.randn: the tensor cores' power, and so the clock the card holds,
depends on the operands (session 8: at GQA B8 4k cuDNN drew ~385 W on randn data).
Run: python3 torch_prefill_same_protocol.py [-n 30] [-w 5] [--data randn|uniform] ROW ... with rows
named as in torch_prefill_anchor_rows.py (gqa_h32_kv8_d128_L4k_b1, mha_h16_d192_128_L16k_b1, ...)."""
import argparse, re, statistics, torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend

ap = argparse.ArgumentParser()
ap.add_argument("-n", type=int, default=30)
ap.add_argument("-w", type=int, default=5)
ap.add_argument("--data", choices=("randn", "uniform"), default="randn")
ap.add_argument("rows", nargs="+")
a = ap.parse_args()
print("%-28s %10s %10s %10s %8s" % ("shape", "min_us", "median_us", "max_us", "TFLOP/s"))
for name in a.rows:
    m = re.fullmatch(r"(gqa|mha)_h(\d+)_(?:kv(\d+)_)?d(\d+)(?:_(\d+))?_L(\d+)k_b(\d+)", name)
    if not m:
        raise SystemExit("row %r: not a row name" % name)
    kind, H, Hkv, Dqk, Dv, L, B = m.groups()
    H, Dqk, L, B = int(H), int(Dqk), int(L) * 1024, int(B)
    Hkv = int(Hkv) if Hkv else H
    Dv = int(Dv) if Dv else Dqk
    def gen(*shape):
        if a.data == "randn":
            return torch.randn(*shape, device="cuda", dtype=torch.bfloat16)
        return (torch.rand(*shape, device="cuda", dtype=torch.float32) * 2 - 1).to(torch.bfloat16)
    q, k, v = gen(B, H, L, Dqk), gen(B, Hkv, L, Dqk), gen(B, Hkv, L, Dv)
    flops = 2 * B * H * (L * L / 2) * (Dqk + Dv)
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=H != Hkv)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                fn()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = fn()
    for _ in range(a.w):
        g.replay()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t = []
    for _ in range(a.n):
        e0.record()
        g.replay()
        e1.record()
        e1.synchronize()
        t.append(e0.elapsed_time(e1) * 1e3)
    med = statistics.median(t)
    print("%-28s %10.1f %10.1f %10.1f %8.0f" % (name, min(t), med, max(t), flops / (med * 1e-6) / 1e12), flush=True)
    del q, k, v, out, g
    torch.cuda.empty_cache()
