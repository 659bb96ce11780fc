"""The cpcl package with torch on 1..4 ranks: the torch.ops.cpcl.* custom ops on host or CUDA
tensors (against the fp64 reference), torch.compile(fullgraph=True), CUDA-graph capture and
replay with new contents (CUDA), and cpcl.vllm's entry points against a reimplementation of
vLLM's reference semantics written here. Needs torch and numpy only (no mpi4py).

    torchrun --nproc-per-node 2 tests/python/test_torch.py       # CUDA when torch sees GPUs
    mpirun -np 2 python3 tests/python/test_torch.py              # the same under OpenMPI
    ... test_torch.py --cpu                                       # host tensors
"""

import math
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpcl  # noqa: E402
import cpcl.vllm  # noqa: E402
from refattn import Case, PrefillCase, Runner, Skip, assert_close, tol  # noqa: E402

RANK = int(os.environ.get("RANK", os.environ.get("OMPI_COMM_WORLD_RANK", 0)))
W = int(os.environ.get("WORLD_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", 1)))
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
# mpirun sets no port: derive one from the job id so concurrent jobs do not collide
os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("OMPI_MCA_ess_base_jobid", "0")) % 20000))
dist.init_process_group("gloo", rank=RANK, world_size=W)
args = [a for a in sys.argv[1:] if not a.startswith("--")]
CUDA = torch.cuda.is_available() and "--cpu" not in sys.argv
if CUDA and "cuda=yes" not in cpcl.build_config():
    if RANK == 0:
        print(f"SKIP cuda: {cpcl.library_path} was built without CUDA ({cpcl.build_config()}); host tensors only")
    CUDA = False
if CUDA:
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", RANK)) % torch.cuda.device_count())
DEV = torch.device("cuda", torch.cuda.current_device()) if CUDA else torch.device("cpu")
MEM = "cuda" if CUDA else "host"


def allgather_obj(obj):
    out = [None] * W
    dist.all_gather_object(out, obj)
    return out


run = Runner(allgather_obj, RANK, W)
_comms = {}


def comm_for(interleave):
    """Communicators bootstrapped through torch.distributed (gloo), one per interleave."""
    if interleave not in _comms:
        _comms[interleave] = cpcl.Comm.from_torch(None, mem=MEM, kv_interleave=interleave)
    return _comms[interleave]


if RANK == 0:
    print(f"torch {torch.__version__}, device {DEV}, W={W}, {cpcl.build_config()}")


def tt(a):
    """numpy (bf16 as uint16 bits) -> torch on DEV."""
    if a is None:
        return None
    if a.dtype == np.uint16:
        return torch.from_numpy(a.copy()).view(torch.bfloat16).to(DEV)
    return torch.from_numpy(np.ascontiguousarray(a)).to(DEV)


def f64(t):
    return t.detach().float().cpu().numpy().astype(np.float64)


def plan_for(c, **kw):
    kw.setdefault("max_tokens", max(c.T, 1))
    return cpcl.AttnPlan(comm_for(c.I), c.H, c.Hkv, c.Dqk, c.Dvo, c.page, c.scale, c.dtype, c.dtype, latent_kv=c.latent,
                         **kw)


def inputs(c):
    kc, vc, bt = c.shard(RANK)
    return (tt(c.q_of(RANK)), tt(kc), tt(vc), torch.tensor(c.seq_lens, dtype=torch.int32, device=DEV),
            tt(bt), tt(c.query_start) if c.T != c.S else None)


@run.test
def test_ops_match_reference():
    for dtype, latent in (("float32", False), ("bfloat16", False), ("bfloat16", True), ("float16", False)):
        c = Case(W, W, 2, [3, 40, 17], [1, 3, 2], H=2, Hkv=1, Dqk=64 if not latent else 72,
                 Dvo=64, page=16, dtype=dtype, seed=17, latent=latent)
        plan = plan_for(c)
        q, kc, vc, sl, bt, qs = inputs(c)
        out, lse = plan.decode(q, kc, vc, sl, bt, query_start=qs)
        assert out.device == DEV and out.dtype == q.dtype and lse.dtype == torch.float32
        ref_out, ref_lse = c.reference()
        a = tol(dtype)
        assert_close(f64(out), c.heads_of(ref_out, RANK), a, f"torch decode out {dtype}")
        assert_close(f64(lse), c.heads_of(ref_lse, RANK), 1e-4 if dtype == "float32" else a, "torch decode lse")
        po, pl = plan.partial(q, kc, vc, sl, bt, query_start=qs)
        out2, lse2 = plan.combine(po, pl)
        assert_close(f64(out2), c.heads_of(ref_out, RANK), a, "torch partial+combine")
        # stores: all tokens as rows, and by slot mapping
        rows = torch.tensor(np.concatenate([[0], np.cumsum(c.seq_lens)]), dtype=torch.int32, device=DEV)
        kn = tt(np.concatenate(c.K))
        vn = None if latent else tt(np.concatenate(c.V))
        k2 = torch.zeros_like(kc)
        v2 = None if latent else torch.zeros_like(vc)
        plan.kv_store(kn, vn, k2, v2, sl, bt, query_start=rows)
        kz, vz, _ = c.shard(RANK, fill_nan=False)
        assert torch.equal(k2.cpu(), tt(kz).cpu()), "torch kv_store k"
        plan.destroy()
    assert hasattr(torch.ops.cpcl, "decode") and hasattr(torch.ops.cpcl, "kv_store_slots")


@run.test
def test_prefill_op():
    if not cpcl._lib.has("cpclAttnPrefill"):
        raise Skip("this libcpcl has no cpclAttnPrefill")
    if CUDA:
        raise Skip("cpclAttnPrefill is host memory only for now")
    c = PrefillCase(W, W, 1, [5, 0], [9, 4], H=2, Hkv=1, Dqk=32, Dvo=32, page=4, dtype="bfloat16", seed=12)
    q, kn, vn, qs = c.inputs(RANK)
    kc, vc, bt = c.cache(RANK, with_new=False)
    plan = cpcl.AttnPlan(comm_for(1), c.H, c.Hkv, c.Dqk, c.Dvo, c.page, c.scale, "bfloat16", "bfloat16",
                         max_tokens=sum(c.new))
    kc_t, vc_t = tt(kc), tt(vc)
    out, lse = plan.prefill(tt(q), tt(kn), tt(vn), kc_t, vc_t, torch.tensor(c.ctx, dtype=torch.int32),
                            torch.tensor(c.new, dtype=torch.int32), tt(bt), tt(qs))
    ref_out, ref_lse = c.reference(RANK)
    assert_close(f64(out), ref_out, tol("bfloat16"), "torch prefill out")
    kz, _, _ = c.cache(RANK, with_new=True)
    assert torch.equal(kc_t.cpu(), tt(kz).cpu()), "torch prefill store"
    plan.destroy()


@run.test
def test_opcheck_fake_implementations():
    """torch.library.opcheck: schema, fake tensors and AOT dispatch agree with the real ops."""
    c = Case(W, W, 1, [5, 12], [1, 1], H=2, Hkv=1, Dqk=16, Dvo=16, page=4, dtype="float32", seed=3)
    plan = plan_for(c)
    q, kc, vc, sl, bt, qs = inputs(c)
    out = torch.empty(c.T, c.H, c.Dvo, device=DEV)
    lse = torch.empty(c.T, c.H, device=DEV)
    torch.library.opcheck(torch.ops.cpcl.decode.default, (plan.id, q, kc, vc, sl, bt, None, None, out, lse))
    po = torch.empty(c.T, plan.gathered_heads, c.Dvo, device=DEV)
    pl = torch.empty(c.T, plan.gathered_heads, device=DEV)
    torch.ops.cpcl.partial(plan.id, q, kc, vc, sl, bt, None, None, po, pl)
    torch.library.opcheck(torch.ops.cpcl.combine.default, (plan.id, po, pl, out, lse))
    plan.destroy()


@run.test
def test_torch_compile_fullgraph():
    c = Case(W, W, 1, [9, 30], [1, 2], H=2, Hkv=2, Dqk=32, Dvo=32, page=8, dtype="float32", seed=5)
    plan = plan_for(c)
    q, kc, vc, sl, bt, qs = inputs(c)

    def step(q, kc, vc, sl, bt, qs):
        out, lse = plan.decode(q * 1.0, kc, vc, sl, bt, query_start=qs)
        po, pl = plan.partial(q, kc, vc, sl, bt, query_start=qs)
        out2, _ = plan.combine(po, pl)
        return out * 2 + 1, lse, out2

    eager = step(q, kc, vc, sl, bt, qs)
    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend="inductor" if CUDA else "aot_eager")
    got = compiled(q, kc, vc, sl, bt, qs)
    for e, g, what in zip(eager, got, ("out", "lse", "partial+combine")):
        assert torch.equal(e, g), f"torch.compile changed {what}: max diff {(e - g).abs().max()}"
    ref_out, _ = c.reference()
    assert_close(f64((got[0] - 1) / 2), c.heads_of(ref_out, RANK), 2e-5, "compiled decode")
    plan.destroy()


@run.test
def test_cuda_graph_capture_and_replay():
    if not CUDA:
        raise Skip("CUDA graphs need CUDA tensors (no GPU, or a library without CUDA)")
    c1 = Case(W, W, 1, [9, 70, 33], [1, 1, 1], H=4, Hkv=1, Dqk=128, Dvo=128, page=16, dtype="bfloat16", seed=1)
    c2 = Case(W, W, 1, [20, 70, 2], [1, 1, 1], H=4, Hkv=1, Dqk=128, Dvo=128, page=16, dtype="bfloat16", seed=2)
    plan = plan_for(c1, max_tokens=8)
    q, kc, vc, sl, bt, _ = inputs(c1)
    out = torch.empty(3, 4, 128, dtype=torch.bfloat16, device=DEV)
    lse = torch.empty(3, 4, device=DEV)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        plan.decode(q, kc, vc, sl, bt, out=out, lse=lse)  # warm-up outside capture
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        plan.decode(q, kc, vc, sl, bt, out=out, lse=lse)
    for c in (c1, c2, c1):
        q2, kc2, vc2, sl2, bt2, _ = inputs(c)
        if bt2.shape != bt.shape or kc2.shape != kc.shape:
            raise AssertionError("graph test: shapes must match the captured ones")
        for dst, src in ((q, q2), (kc, kc2), (vc, vc2), (sl, sl2), (bt, bt2)):
            dst.copy_(src)
        g.replay()
        torch.cuda.synchronize()
        ref_out, ref_lse = c.reference()
        assert_close(f64(out), c.heads_of(ref_out, RANK), tol("bfloat16"), "graph replay out")
        assert_close(f64(lse), c.heads_of(ref_lse, RANK), tol("bfloat16"), "graph replay lse")
    del g
    torch.cuda.synchronize()
    plan.destroy()


# ---------------------------------------------------------------------------------------------
# cpcl.vllm against vLLM's reference semantics, reimplemented here
# ---------------------------------------------------------------------------------------------

def vllm_cp_lse_ag_out_rs_reference(out, lse, return_lse, base_e, scatter=True):
    """vLLM's _correct_attn_cp_out_kernel + reduce_scatter (vllm/v1/attention/ops/common.py), in
    fp64 over gloo: lses all-gathered [N, B, H]; NaN/+inf -> -inf; global lse = log-sum-exp with
    a max of -inf treated as 0; each rank's out scaled by exp(lse_r - lse) (NaN/+inf exponents
    -> -inf); the sum over ranks reduce-scattered over heads."""
    lses = [torch.empty_like(lse) for _ in range(W)]
    dist.all_gather(lses, lse.contiguous())
    L = torch.stack(lses).double()
    L = torch.where(torch.isnan(L) | (L == math.inf), torch.full_like(L, -math.inf), L)
    mx = L.max(0).values
    mx = torch.where(mx == -math.inf, torch.zeros_like(mx), mx)
    e, lg = (torch.exp, torch.log) if base_e else (torch.exp2, torch.log2)
    g = lg(e(L - mx).sum(0)) + mx
    f = L[RANK] - g
    f = torch.where(torch.isnan(f) | (f == math.inf), torch.full_like(f, -math.inf), f)
    corrected = out.double() * e(f)[..., None]
    dist.all_reduce(corrected)  # gloo: reduce then keep this rank's heads = reduce_scatter
    if not scatter:  # cp_lse_ag_out_ar
        return (corrected, g) if return_lse else corrected
    H = out.shape[1] // W
    res = corrected[:, RANK * H:(RANK + 1) * H]
    return (res, g[:, RANK * H:(RANK + 1) * H]) if return_lse else res


def vllm_a2a_reference(out, lse, return_lse, base_e):
    """vLLM's _lse_weighted_combine (dcp_alltoall.py) on what the all-to-all delivers."""
    outs = [torch.empty_like(out) for _ in range(W)]
    lses = [torch.empty_like(lse) for _ in range(W)]
    dist.all_gather(outs, out.contiguous())
    dist.all_gather(lses, lse.contiguous())
    H = out.shape[1] // W
    O = torch.stack(outs).double()[:, :, RANK * H:(RANK + 1) * H]
    L = torch.stack(lses).double()[:, :, RANK * H:(RANK + 1) * H]
    L = torch.where(torch.isnan(L) | torch.isinf(L), torch.full_like(L, -math.inf), L)
    mx = L.max(0).values
    mx = torch.where(mx == -math.inf, torch.zeros_like(mx), mx)
    w = torch.exp(L - mx) if base_e else torch.pow(2.0, L - mx)
    w = torch.where(torch.isnan(w), torch.zeros_like(w), w)
    ws = w.sum(0, keepdim=True)
    res = (O * (w / ws.clamp(min=1e-10))[..., None]).sum(0)
    if return_lse:
        g = (torch.log(ws[0]) if base_e else torch.log2(ws[0])) + mx
        return res, g
    return res


def partials(T, HN, D, dtype, seed, empty_fill=0.0):
    """Random partial outputs and LSEs with NaN/+inf LSEs, rows empty on some ranks, and one row
    empty everywhere. Empty partials hold `empty_fill`: 0 as attention kernels write them (what
    vLLM's reference assumes: it multiplies them by a zero weight), or NaN to check that cpcl
    never reads them."""
    g = torch.Generator().manual_seed(seed * 97 + RANK)
    out = torch.randn(T, HN, D, generator=g).to(dtype)
    lse = torch.randn(T, HN, generator=g) * 3
    lse[0, 0] = math.nan
    lse[min(1, T - 1), 1 % HN] = math.inf
    if RANK % 2 == 1:
        lse[T // 2] = -math.inf  # this rank's shard of that row is empty
        out[T // 2] = empty_fill
    lse[T - 1, :] = -math.inf  # empty on every rank: out 0, lse -inf
    out[T - 1, :] = empty_fill
    return out.to(DEV), lse.to(DEV)


@run.test
def test_vllm_cp_lse_ag_out_rs():
    for dtype, D, H, T, base_e in ((torch.float32, 128, 2, 5, True), (torch.bfloat16, 64, 4, 17, True),
                                   (torch.float16, 512, 1, 3, False), (torch.bfloat16, 128, 8, 40, False)):
        out, lse = partials(T, H * W, D, dtype, seed=D + T)
        got, glse = cpcl.vllm.cp_lse_ag_out_rs(out, lse, dist.group.WORLD, return_lse=True,
                                               is_lse_base_on_e=base_e)
        if W == 1:  # vLLM returns the output unchanged for one rank
            assert got is out and torch.equal(torch.nan_to_num(glse), torch.nan_to_num(lse))
            continue
        ref, rlse = vllm_cp_lse_ag_out_rs_reference(out.cpu(), lse.cpu(), True, base_e)
        assert got.shape == (T, H if W > 1 else H * W, D) and got.dtype == dtype
        a = 2e-5 if dtype == torch.float32 else 2e-2
        assert_close(f64(got), ref.numpy(), a, f"cp_lse_ag_out_rs out {dtype} base_e={base_e}")
        assert_close(f64(glse), rlse.numpy(), 1e-4, "cp_lse_ag_out_rs lse")
        assert torch.all(got[T - 1] == 0), "a row empty everywhere must give 0"
        only = cpcl.vllm.cp_lse_ag_out_rs(out, lse, dist.group.WORLD, is_lse_base_on_e=base_e)
        assert torch.equal(only, got), "return_lse=False changed the output"
        # the trailing-1 LSE form vLLM's MLA backends produce
        got3 = cpcl.vllm.cp_lse_ag_out_rs(out, lse[..., None], dist.group.WORLD, None, False, base_e)
        assert torch.equal(got3, got)
        # NaN bytes in empty partials: cpcl never multiplies them by their zero weight (vLLM would
        # give NaN); the result is the same as with zeros
        out_nan, _ = partials(T, H * W, D, dtype, seed=D + T, empty_fill=math.nan)
        got4 = cpcl.vllm.cp_lse_ag_out_rs(out_nan, lse, dist.group.WORLD, is_lse_base_on_e=base_e)
        assert torch.equal(got4, got), "NaN bytes of empty partials leaked into the merge"
    if W > 1:
        assert len(cpcl.vllm._plans) >= 1


@run.test
def test_vllm_cp_lse_ag_out_ar():
    for dtype, D, HN, T, base_e in ((torch.float32, 64, 3, 5, True), (torch.bfloat16, 128, 8, 12, False)):
        out, lse = partials(T, HN, D, dtype, seed=5 * D + T)
        got, glse = cpcl.vllm.cp_lse_ag_out_ar(out, lse, dist.group.WORLD, return_lse=True, is_lse_base_on_e=base_e)
        if W == 1:
            assert got is out
            continue
        ref, rlse = vllm_cp_lse_ag_out_rs_reference(out.cpu(), lse.cpu(), True, base_e, scatter=False)
        assert got.shape == (T, HN, D)
        a = 2e-5 if dtype == torch.float32 else 2e-2
        assert_close(f64(got), ref.numpy(), a, f"cp_lse_ag_out_ar out {dtype}")
        assert_close(f64(glse), rlse.numpy(), 1e-4, "cp_lse_ag_out_ar lse")


@run.test
def test_vllm_dcp_a2a_lse_reduce():
    for dtype, D, H, T, base_e in ((torch.float32, 64, 2, 6, True), (torch.bfloat16, 128, 2, 9, False)):
        out, lse = partials(T, H * W, D, dtype, seed=3 * D + T)
        got, glse = cpcl.vllm.dcp_a2a_lse_reduce(out, lse, dist.group.WORLD, return_lse=True,
                                                 is_lse_base_on_e=base_e)
        ref, rlse = vllm_a2a_reference(out.cpu(), lse.cpu(), True, base_e)
        if W == 1:  # vLLM returns its inputs unchanged for one rank
            assert got is out and glse is lse
            continue
        a = 2e-5 if dtype == torch.float32 else 2e-2
        assert_close(f64(got), ref.numpy(), a, f"dcp_a2a_lse_reduce out {dtype}")
        # vLLM's reference gives lse = log(0) + 0 = -inf for rows empty everywhere: the same
        assert_close(f64(glse), rlse.numpy(), 1e-4, "dcp_a2a_lse_reduce lse")
        # the earlier positional form (local_output, local_lse, kvp_group, return_lse, is_lse_base_on_e)
        got2, _ = cpcl.vllm.dcp_a2a_lse_reduce(out, lse, dist.group.WORLD, True, base_e)
        assert torch.equal(got2, got)
        got3, _ = cpcl.vllm.dcp_a2a_lse_reduce(out, lse, dist.group.WORLD, True, is_lse_base_on_e=base_e)
        assert torch.equal(got3, got)
        got4 = cpcl.vllm.dcp_a2a_lse_reduce(out, lse, dist.group.WORLD, None, is_lse_base_on_e=base_e)
        assert torch.equal(got4, got)


@run.test
def test_vllm_reshape_and_cache_flash():
    T, Hq, Hkv, D, page, pages = 11, 4, 2, 64, 16, 5
    g = torch.Generator().manual_seed(7)
    qkv = torch.randn(T, (Hq + 2 * Hkv) * D, generator=g).to(torch.bfloat16).to(DEV)
    key = qkv[:, Hq * D:(Hq + Hkv) * D].view(T, Hkv, D)  # row-strided views, as vLLM passes them
    value = qkv[:, (Hq + Hkv) * D:].view(T, Hkv, D)
    slots = torch.randperm(pages * page, generator=g)[:T]
    slots[3] = -1  # padding
    kc = torch.zeros(pages, page, Hkv, D, dtype=torch.bfloat16, device=DEV)
    vc = torch.zeros_like(kc)
    cpcl.vllm.reshape_and_cache_flash(key, value, kc, vc, slots.to(DEV), "auto")
    kref, vref = torch.zeros_like(kc).cpu(), torch.zeros_like(vc).cpu()
    for t in range(T):
        s = int(slots[t])
        if s >= 0:
            kref[s // page, s % page] = key[t].cpu()
            vref[s // page, s % page] = value[t].cpu()
    assert torch.equal(kc.cpu(), kref) and torch.equal(vc.cpu(), vref), "reshape_and_cache_flash"


@run.test
def test_errors_raise_with_message():
    """A bad argument raises CpclError with the message. Host memory: the other ranks raise too,
    naming the bad rank. CUDA checks per rank only (a rank that skips a step makes its peers wait
    until the timeout and breaks the communicator), so there every rank passes the bad argument."""
    c = Case(W, W, 1, [5, 12], [1, 1], H=2, Hkv=1, Dqk=16, Dvo=16, page=4, dtype="float32", seed=3)
    plan = plan_for(c)
    q, kc, vc, sl, bt, qs = inputs(c)
    bad = W - 1
    is_bad = CUDA or RANK == bad
    try:
        plan.decode(q.double() if is_bad else q, kc, vc, sl, bt)
    except cpcl.CpclError as e:
        assert e.code == (cpcl.Result.INVALID_ARGUMENT if is_bad else cpcl.Result.INVALID_USAGE), e
        assert ("float64" in str(e)) if is_bad else (f"rank {bad}" in str(e)), e
    else:
        if is_bad or W > 1:
            raise AssertionError("no CpclError")
    try:
        plan.decode(q, kc, vc, sl.cpu() if CUDA else sl, bt)
    except cpcl.CpclError as e:
        assert CUDA and "host memory" in str(e), e
    else:
        assert not CUDA, "host seq_lens accepted by a CUDA plan"
    out, _ = plan.decode(q, kc, vc, sl, bt)  # still usable
    assert_close(f64(out), c.heads_of(c.reference()[0], RANK), 2e-5, "decode after the errors")
    plan.destroy()


if __name__ == "__main__":
    code = run.run(args)
    cpcl.vllm.clear_cache()
    for cm in _comms.values():
        cm.destroy()
    dist.destroy_process_group()
    sys.exit(code)
