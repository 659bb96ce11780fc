"""The cpcl Python package on host memory (numpy) under mpirun -np 1..4: decode, partial,
combine and kv_store against an fp64 attention on the unsharded sequence (GQA, MLA, interleave,
multi-row, padding, bf16/fp16/fp32), and the error paths (CpclError with the library's message;
ranks that disagree all raise). Run: mpirun -np N python3 tests/python/test_numpy.py"""

import os
import sys

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpcl  # noqa: E402
from refattn import Case, PrefillCase, Runner, Skip, assert_close, local_len, tol  # noqa: E402

mpi = MPI.COMM_WORLD
W, RANK = mpi.Get_size(), mpi.Get_rank()
run = Runner(mpi.allgather, RANK, W)
DCPS = [d for d in range(1, W + 1) if W % d == 0]
_comms = {}


def comm_for(dcp, I):
    key = (dcp, I)
    if key not in _comms:
        _comms[key] = cpcl.Comm.from_mpi(mpi, dcp_size=dcp, kv_interleave=I)
    return _comms[key]


def np_dtype(c):
    return "bfloat16" if c.dtype == "ml_bfloat16" else c.dtype


def check_case(c, algo=None, ops=("decode", "partial", "store")):
    comm = comm_for(c.dcp, c.I)
    assert (comm.dcp_size, comm.pcp_size, comm.size) == (c.dcp, W // c.dcp, W)
    plan = cpcl.AttnPlan(comm, c.H, c.Hkv, c.Dqk, c.Dvo, c.page, c.scale, np_dtype(c), np_dtype(c),
                         latent_kv=c.latent, lse_base2=c.base2, max_tokens=max(c.T, 1), algo=algo)
    kc, vc, bt = c.shard(RANK)
    q = c.q_of(RANK)
    sl = np.array(c.seq_lens, dtype=np.int32)
    qs = c.query_start if c.T != c.S else None
    ref_out, ref_lse = c.reference()
    a = tol(c.dtype)
    dt = "bfloat16" if "bfloat16" in c.dtype else c.dtype
    f64 = (lambda x: x.astype(np.float64)) if c.dtype != "bfloat16" else \
        (lambda x: (x.astype(np.uint32) << 16).view(np.float32).astype(np.float64))
    if "decode" in ops:
        out, lse = plan.decode(q, kc, vc, sl, bt, query_start=qs)
        assert out.dtype == q.dtype and out.shape == (c.T, c.H, c.Dvo), (out.dtype, out.shape)
        assert_close(f64(out), c.heads_of(ref_out, RANK), a, f"decode out ({dt})")
        assert_close(lse, c.heads_of(ref_lse, RANK), 1e-4 if dt == "float32" else a, "decode lse")
        # the caller's buffers are filled in place
        out2, lse2 = np.zeros_like(out), np.zeros_like(lse)
        r = plan.decode(q, kc, vc, sl, bt, qs, None, out2, lse2)
        assert r[0] is out2 and r[1] is lse2
        assert np.array_equal(out2, out) and np.array_equal(lse2, lse), "decode is not reproducible"
    if "partial" in ops:
        po, pl = plan.partial(q, kc, vc, sl, bt, query_start=qs)
        G = c.dcp * c.H
        assert po.shape == (c.T, G, c.Dvo) and pl.shape == (c.T, G)
        p_out, p_lse = c.reference(only_rank=RANK)
        empty = np.isneginf(p_lse)
        assert_close(pl, p_lse, 1e-4 if dt == "float32" else a, "partial lse")
        assert_close(np.where(empty[..., None], 0, f64(po)), p_out, a, "partial out")
        out, lse = plan.combine(po, pl)
        assert_close(f64(out), c.heads_of(ref_out, RANK), a, "partial+combine out")
        assert_close(lse, c.heads_of(ref_lse, RANK), 1e-4 if dt == "float32" else a, "partial+combine lse")
    if "store" in ops:
        # storing every token of every sequence into an empty cache rebuilds this rank's shard
        kn = np.concatenate(c.K) if c.S else np.zeros((0, c.Hkv, c.Dqk), q.dtype)
        vn = None if c.latent else np.concatenate(c.V)
        rows = np.concatenate([[0], np.cumsum(c.seq_lens)]).astype(np.int32)
        k2 = np.zeros_like(kc)
        v2 = None if c.latent else np.zeros_like(vc)
        plan.kv_store(kn, vn, k2, v2, sl, bt, query_start=rows)
        kz, vz, _ = c.shard(RANK, fill_nan=False)
        assert np.array_equal(k2, kz), "kv_store: k cache differs from the layout of DESIGN.md §2"
        if not c.latent:
            assert np.array_equal(v2, vz), "kv_store: v cache differs"
    plan.destroy()


@run.test
def test_gqa_fp32_dcp_all_axes():
    for dcp in DCPS:
        check_case(Case(W, dcp, 1, [1, 7, 33, 64], [1, 1, 1, 1], H=4, Hkv=2 if dcp * 4 % 2 == 0 else 1, Dqk=64,
                        Dvo=64, page=16, dtype="float32", seed=11 + dcp))


@run.test
def test_gqa_bf16_multirow_interleave():
    for dcp in DCPS:
        for I in (1, 2, 4):
            check_case(Case(W, dcp, I, [3, 20, 45], [3, 1, 4], H=2, Hkv=1, Dqk=32, Dvo=32, page=8,
                            dtype="bfloat16", seed=100 + I))


@run.test
def test_gqa_fp16_group_sizes():
    dcp = DCPS[-1]
    for H, Hkv in ((8, 8), (8, 2), (16, 1)):
        if (dcp * H) % Hkv:
            continue
        check_case(Case(W, dcp, 2, [5, 17], [2, 2], H=H, Hkv=Hkv, Dqk=16, Dvo=16, page=4, dtype="float16",
                        seed=7 * H + Hkv))


@run.test
def test_mla_latent_kv():
    for dcp in DCPS:
        check_case(Case(W, dcp, 1, [2, 30, 9], [1, 2, 1], H=2, Hkv=1, Dqk=72, Dvo=64, page=16, dtype="bfloat16",
                        seed=5 + dcp, latent=True))


@run.test
def test_mla_deepseek_dims():
    check_case(Case(W, W, 1, [12, 40], [1, 1], H=2, Hkv=1, Dqk=576, Dvo=512, page=16, dtype="bfloat16", seed=99,
                    latent=True), ops=("decode",))


@run.test
def test_ml_dtypes_bfloat16():
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        print("  (ml_dtypes not installed: uint16 bf16 only)")
        return
    check_case(Case(W, 1, 1, [9, 26], [1, 2], H=4, Hkv=2, Dqk=32, Dvo=32, page=8, dtype="ml_bfloat16", seed=3))


@run.test
def test_lse_base2_and_schedules():
    for algo in ("agrs", "a2a", "pipelined"):
        check_case(Case(W, DCPS[-1], 1, [4, 19], [1, 3], H=2, Hkv=2, Dqk=16, Dvo=16, page=4, dtype="float32",
                        seed=21, base2=True), algo=algo, ops=("decode", "partial"))


@run.test
def test_short_sequences_empty_shards():
    # shorter than W*I: most ranks hold nothing of them
    check_case(Case(W, 1, 4, [1, 2, 3, 5], [1, 1, 1, 1], H=2, Hkv=1, Dqk=8, Dvo=8, page=4, dtype="float32", seed=8))


@run.test
def test_padding_sequences_give_zero():
    comm = comm_for(1, 1)
    c = Case(W, 1, 1, [6, 1], [1, 1], H=2, Hkv=1, Dqk=8, Dvo=8, page=4, dtype="float32", seed=4)
    plan = cpcl.AttnPlan(comm, 2, 1, 8, 8, 4, c.scale, "float32", "float32", max_tokens=4)
    kc, vc, bt = c.shard(RANK)
    sl = np.array([6, 0, 1], dtype=np.int32)  # the middle one pads the batch (seq_lens 0)
    bt3 = np.stack([bt[0], np.full_like(bt[0], -1), bt[1]])
    q = np.concatenate([c.Q[:1], np.full((1, 2, 8), np.nan, np.float32), c.Q[1:]])
    out, lse = plan.decode(q, kc, vc, sl, bt3)
    ref_out, ref_lse = c.reference()
    assert np.all(out[1] == 0) and np.all(np.isneginf(lse[1])), (out[1], lse[1])
    assert_close(out[[0, 2]], ref_out, 2e-5, "rows around the padding")
    plan.destroy()


@run.test
def test_empty_step_and_zero_rows():
    comm = comm_for(1, 1)
    plan = cpcl.AttnPlan(comm, 2, 1, 8, 8, 4, 0.3, "float32", "float32", max_tokens=4)
    q = np.zeros((0, 2, 8), np.float32)
    kc = np.zeros((1, 4, 1, 8), np.float32)
    out, lse = plan.decode(q, kc, kc.copy(), np.zeros(0, np.int32), np.zeros((0, 1), np.int32))
    assert out.shape == (0, 2, 8) and lse.shape == (0, 2)
    po, pl = plan.partial(q, kc, kc.copy(), [], np.zeros((0, 1), np.int32))
    out, lse = plan.combine(po, pl)
    assert out.shape == (0, 2, 8)
    plan.destroy()


@run.test
def test_kv_local_len_and_pcp_chunks():
    for L in (0, 1, 7, 64, 1001):
        for I in (1, 3, 16):
            got = [cpcl.kv_local_len(L, W, r, I) for r in range(W)]
            assert got == [local_len(L, W, r, I) for r in range(W)], (L, I, got)
            assert sum(got) == L
    arr = cpcl.kv_local_len(np.array([5, 9, 13]), 2, 1, 2)
    assert list(arr) == [local_len(x, 2, 1, 2) for x in (5, 9, 13)]
    for bad in ((-1, 2, 0, 1), (4, 0, 0, 1), (4, 2, 2, 1), (4, 2, 0, 0)):
        try:
            cpcl.kv_local_len(*bad)
        except cpcl.CpclError as e:
            assert e.code == cpcl.Result.INVALID_ARGUMENT and "cp_rank" in e.message
        else:
            raise AssertionError(f"kv_local_len{bad} did not raise")
    if cpcl._lib.has("cpclPcpChunks"):
        for n in (0, 1, 5, 64, 77):
            for pcp in (1, 2, 3):
                lens = []
                for r in range(pcp):
                    (s0, l0), (s1, l1) = cpcl.pcp_chunks(n, pcp, r)
                    c = -(-n // (2 * pcp))
                    assert (s0, l0) == (min(r * c, n), max(0, min((r + 1) * c, n) - min(r * c, n)))
                    lens += [l0, l1]
                assert sum(lens) == n
        # the tests' own head-tail split (refattn.PrefillCase) is the library's
        pc = PrefillCase(3, 1, 1, [0], [1], H=1, Hkv=1, Dqk=8, Dvo=8, page=4, dtype="float32", seed=0)
        for n in (0, 1, 13, 40):
            for r in range(3):
                assert [tuple(x) for x in pc.chunks(n, r)] == list(cpcl.pcp_chunks(n, 3, r)), (n, r)
    else:
        try:
            cpcl.pcp_chunks(8, 2, 0)
        except NotImplementedError as e:
            assert "cpclPcpChunks" in str(e)
        else:
            raise AssertionError("pcp_chunks without cpclPcpChunks did not raise NotImplementedError")


# ------------------------------------------------------------------------------------------------
# Error paths
# ------------------------------------------------------------------------------------------------

def expect_error(fn, code, *needles):
    try:
        fn()
    except cpcl.CpclError as e:
        assert e.code == code, f"code {e.code!r}, expected {code!r}: {e}"
        for n in needles:
            assert n in str(e), f"{n!r} not in the message: {e}"
        return e
    raise AssertionError(f"no CpclError (expected {code!r})")


def small_plan(comm, **kw):
    args = dict(num_qo_heads=2, num_kv_heads=1, head_dim_qk=8, head_dim_vo=8, page_size=4, sm_scale=8 ** -0.5,
                q_dtype="float32", kv_dtype="float32", max_tokens=4)
    args.update(kw)
    return cpcl.AttnPlan(comm, **args)


def small_inputs():
    c = Case(W, 1, 1, [5, 40], [1, 1], H=2, Hkv=1, Dqk=8, Dvo=8, page=4, dtype="float32", seed=2)
    kc, vc, bt = c.shard(RANK)
    return c, c.q_of(RANK), kc, vc, np.array(c.seq_lens, np.int32), bt


@run.test
def test_bad_argument_python_side_one_rank():
    """A shape error caught by the bindings on the last rank: it raises INVALID_ARGUMENT with its
    message, every other rank INVALID_USAGE naming it; the plan stays usable."""
    plan = small_plan(comm_for(1, 1))
    c, q, kc, vc, sl, bt = small_inputs()
    bad = W - 1
    bt_arg = bt[:1] if RANK == bad else bt
    if RANK == bad:
        expect_error(lambda: plan.decode(q, kc, vc, sl, bt_arg), cpcl.Result.INVALID_ARGUMENT, "block_table",
                     "[1, 3]" if bt.shape[1] == 3 else "block_table has shape")
    elif W > 1:
        expect_error(lambda: plan.decode(q, kc, vc, sl, bt_arg), cpcl.Result.INVALID_USAGE, f"rank {bad}")
    out, lse = plan.decode(q, kc, vc, sl, bt)  # still usable
    assert_close(out, c.heads_of(c.reference()[0], RANK), 2e-5, "decode after an error")
    # values that are no int32, and objects that are no array: the same
    big = [2 ** 40, 9] if RANK == bad else list(sl)
    f = lambda: plan.decode(q, kc, vc, big, bt)  # noqa: E731
    if RANK == bad:
        expect_error(f, cpcl.Result.INVALID_ARGUMENT, "seq_lens")
    elif W > 1:
        expect_error(f, cpcl.Result.INVALID_USAGE, f"rank {bad}")
    if RANK == bad:
        try:
            plan.decode(q, "not an array", vc, sl, bt)
        except cpcl.CpclError as e:
            assert "k_cache" in str(e), e
    elif W > 1:
        expect_error(lambda: plan.decode(q, kc, vc, sl, bt), cpcl.Result.INVALID_USAGE, f"rank {bad}")
    # dtype errors too, in every operation
    for op in ("decode", "partial", "combine"):
        qq = q.astype(np.float16) if RANK == bad else q
        if op == "combine":
            po, pl = plan.partial(q, kc, vc, sl, bt)
            f = lambda: plan.combine(po.astype(np.float16) if RANK == bad else po, pl)  # noqa: E731
        else:
            f = lambda: getattr(plan, op)(qq, kc, vc, sl, bt)  # noqa: E731
        if RANK == bad:
            expect_error(f, cpcl.Result.INVALID_ARGUMENT, "float16", "float32")
        elif W > 1:
            expect_error(f, cpcl.Result.INVALID_USAGE, f"rank {bad}")
    plan.destroy()


@run.test
def test_bad_argument_library_side_one_rank():
    """A value error the C library finds (a block-table row too short for this rank's tokens):
    the message is cpclGetLastError's."""
    plan = small_plan(comm_for(1, 1))
    c, q, kc, vc, sl, bt = small_inputs()
    if RANK == 0:
        expect_error(lambda: plan.decode(q, kc, vc, sl, bt[:, :1]), cpcl.Result.INVALID_ARGUMENT,
                     "cpclAttnDecode", "block-table row", "rank 0")
    elif W > 1:
        expect_error(lambda: plan.decode(q, kc, vc, sl, bt), cpcl.Result.INVALID_USAGE, "rank 0 rejected")
    plan.destroy()


@run.test
def test_ranks_disagree_on_the_step():
    if W == 1:
        return
    plan = small_plan(comm_for(1, 1))
    c, q, kc, vc, sl, bt = small_inputs()
    # rank 0 calls partial while the others call decode: every rank raises
    if RANK == 0:
        expect_error(lambda: plan.partial(q, kc, vc, sl, bt), cpcl.Result.INVALID_USAGE, "disagree")
    else:
        expect_error(lambda: plan.decode(q, kc, vc, sl, bt), cpcl.Result.INVALID_USAGE, "disagree")
    # a different number of rows
    n = 1 if RANK == 0 else 2
    expect_error(lambda: plan.decode(q[:n], kc, vc, sl[:n], bt[:n]), cpcl.Result.INVALID_USAGE, "disagree")
    plan.destroy()


@run.test
def test_plan_errors():
    comm = comm_for(1, 1)
    # GQA group not whole: every rank rejects the same descriptor
    expect_error(lambda: small_plan(comm, num_qo_heads=3, num_kv_heads=2), cpcl.Result.INVALID_ARGUMENT,
                 "cpclAttnPlanCreate")
    expect_error(lambda: small_plan(comm, head_dim_qk=12), cpcl.Result.INVALID_ARGUMENT, "headDimQk")
    if W > 1:
        # ranks that disagree on the descriptor all raise, naming the field
        e = expect_error(lambda: small_plan(comm, num_qo_heads=2 if RANK else 4), cpcl.Result.INVALID_USAGE)
        assert "numQoHeads" in e.message or "desc" in e.message, e.message
    # a rank whose arguments the bindings reject still joins the creation: the others raise too
    if RANK == W - 1:
        try:
            small_plan(comm, q_dtype="int8")
        except ValueError as e:
            assert "q_dtype" in str(e)
        else:
            raise AssertionError("q_dtype int8 accepted")
    elif W > 1:
        expect_error(lambda: small_plan(comm), cpcl.Result.INVALID_USAGE)
    try:
        cpcl.AttnPlan(comm, 2, 1, 8, 8, 4, 0.3, "float32", "float32")
    except TypeError as e:
        assert "max_tokens" in str(e)
    else:
        raise AssertionError("no max_tokens accepted")
    plan = small_plan(comm, max_tokens=1)
    c, q, kc, vc, sl, bt = small_inputs()
    expect_error(lambda: plan.decode(q, kc, vc, sl, bt), cpcl.Result.INVALID_ARGUMENT, "maxTokens")
    plan.destroy()
    expect_error(lambda: plan.decode(q, kc, vc, sl, bt), cpcl.Result.INVALID_USAGE, "destroyed")


@run.test
def test_workspace_given_by_the_caller():
    comm = comm_for(1, 1)
    probe = small_plan(comm)
    need = probe.workspace_bytes
    probe.destroy()
    assert need > 0
    raw = np.zeros(need + 256, np.uint8)
    off = (-raw.ctypes.data) % 256
    ws = raw[off:off + need]
    plan = small_plan(comm, workspace=ws)
    assert plan.workspace is ws and plan.workspace_bytes <= need
    c, q, kc, vc, sl, bt = small_inputs()
    out, _ = plan.decode(q, kc, vc, sl, bt)
    assert_close(out, c.heads_of(c.reference()[0], RANK), 2e-5, "decode with the caller's workspace")
    plan.destroy()
    expect_error(lambda: small_plan(comm, workspace=ws[:need // 2]), cpcl.Result.INVALID_ARGUMENT, "bytes")


@run.test
def test_comm_errors():
    # the all-gather raising: init fails with the exception named (every rank's callback raises)
    def boom(b):
        raise RuntimeError("store unreachable")
    e = expect_error(lambda: cpcl.Comm(boom, RANK, W), cpcl.Result.SYSTEM_ERROR, "store unreachable")
    assert isinstance(e.__cause__, RuntimeError)
    e = expect_error(lambda: cpcl.Comm(lambda b: [b] * (W + 1), RANK, W), cpcl.Result.SYSTEM_ERROR, "parts")
    expect_error(lambda: cpcl.Comm(lambda b: [b] * W, RANK, W, dcp_size=W + 1), cpcl.Result.INVALID_ARGUMENT,
                 "dcpSize")
    if W > 1:
        # ranks that disagree on the config all raise
        expect_error(lambda: cpcl.Comm.from_mpi(mpi, kv_interleave=1 + (RANK == 0)), cpcl.Result.INVALID_USAGE,
                     "kvInterleave")
    try:
        cpcl.Comm(lambda b: [b], 0, 1, mem="gpu")
    except ValueError as e:
        assert "mem" in str(e)
    else:
        raise AssertionError("mem='gpu' accepted")


@run.test
def test_lifetimes():
    """The Comm keeps its callback alive; destroying it closes its plans; nothing crashes when the
    objects go away in any order."""
    import gc
    comm = cpcl.Comm.from_mpi(mpi)
    plan = small_plan(comm)
    gc.collect()  # the C callback must survive collection of everything the user dropped
    c, q, kc, vc, sl, bt = small_inputs()
    plan.decode(q, kc, vc, sl, bt)
    comm.destroy()
    expect_error(lambda: plan.decode(q, kc, vc, sl, bt), cpcl.Result.INVALID_USAGE, "destroyed")
    with cpcl.Comm.from_mpi(mpi) as comm2:
        p2 = small_plan(comm2)
        del p2
        gc.collect()
    assert comm2.handle == 0


@run.test
def test_kv_store_slots_matches_kv_store():
    """The slot-mapping store (vLLM's reshape_and_cache_flash form) gives the cache kv_store
    gives, from row-strided views of a fused qkv buffer; -1 slots are skipped; a slot past the
    cache is an error that writes nothing."""
    for dtype, latent in (("float32", False), ("bfloat16", False), ("bfloat16", True)):
        c = Case(W, 1, 2, [3, 21, 8], [3, 21, 8], H=2, Hkv=2 if not latent else 1, Dqk=16, Dvo=16 if not latent
                 else 8, page=4, dtype=dtype, seed=31, latent=latent)
        comm = comm_for(1, 2)
        plan = cpcl.AttnPlan(comm, c.H, c.Hkv, c.Dqk, c.Dvo, c.page, c.scale, dtype, dtype, latent_kv=latent,
                             max_tokens=4)
        kc, vc, bt = c.shard(RANK, fill_nan=False)
        # the engine's slot mapping: this rank's slot for the tokens it owns, -1 for the others
        slots = []
        for si, L in enumerate(c.seq_lens):
            for p in range(L):
                if (p // 2) % W != RANK:
                    slots.append(-1)
                else:
                    li = (p // (2 * W)) * 2 + p % 2
                    slots.append(int(bt[si, li // 4]) * 4 + li % 4)
        slots = np.array(slots, np.int64)
        kn = np.concatenate(c.K)
        T = kn.shape[0]
        # a fused [T, q | k | v] buffer; k and v are row-strided views into it
        width = c.H * c.Dqk + kn[0].size + (0 if latent else c.V[0][0].size)
        fused = np.zeros((T, width), kn.dtype)
        fused[:, c.H * c.Dqk:c.H * c.Dqk + kn[0].size] = kn.reshape(T, -1)
        kview = fused[:, c.H * c.Dqk:c.H * c.Dqk + kn[0].size].reshape(T, c.Hkv, c.Dqk)
        assert not kview.flags.c_contiguous
        vview = None
        if not latent:
            vn = np.concatenate(c.V)
            fused[:, c.H * c.Dqk + kn[0].size:] = vn.reshape(T, -1)
            vview = fused[:, c.H * c.Dqk + kn[0].size:].reshape(T, c.Hkv, c.Dvo)
        k2, v2 = np.zeros_like(kc), (None if latent else np.zeros_like(vc))
        plan.kv_store_slots(kview, vview, k2, v2, slots)
        assert np.array_equal(k2, kc), f"kv_store_slots k ({dtype}, latent {latent})"
        if not latent:
            assert np.array_equal(v2, vc), f"kv_store_slots v ({dtype})"
        bad = slots.copy()
        bad[-1] = kc.shape[0] * 4  # one past the cache
        k3 = np.zeros_like(kc)
        expect_error(lambda: plan.kv_store_slots(kview, vview, k3, None if latent else np.zeros_like(vc), bad),
                     cpcl.Result.INVALID_ARGUMENT, "slotMapping[", "past the cache")
        assert not k3.any(), "a rejected slot mapping wrote into the cache"
        expect_error(lambda: plan.kv_store_slots(kview, vview, k3, None, slots) if not latent else
                     plan.kv_store_slots(kview, np.zeros_like(kview), k3, None, slots),
                     cpcl.Result.INVALID_ARGUMENT)
        plan.destroy()


@run.test
def test_prefill_against_reference():
    """prefill: this rank's head-tail chunks attend to the sharded context and every PCP rank's
    new tokens; the new K/V land in the cache as kv_store would place them."""
    if not cpcl._lib.has("cpclAttnPrefill"):
        raise Skip("this libcpcl has no cpclAttnPrefill yet")
    for dcp in DCPS:
        for dtype, latent in (("float32", False), ("bfloat16", True)):
            c = PrefillCase(W, dcp, 2, [0, 7, 30], [13, 1, 9], H=2, Hkv=1, Dqk=32 if not latent else 40,
                            Dvo=32, page=4, dtype=dtype, seed=40 + dcp, latent=latent)
            q, kn, vn, qs = c.inputs(RANK)
            comm = comm_for(dcp, 2)
            plan = cpcl.AttnPlan(comm, c.H, c.Hkv, c.Dqk, c.Dvo, c.page, c.scale, dtype, dtype, latent_kv=latent,
                                 max_tokens=sum(c.new))  # the same on every rank
            kc, vc, bt = c.cache(RANK, with_new=False)
            out, lse = plan.prefill(q, kn, vn, kc, vc, np.array(c.ctx, np.int32), np.array(c.new, np.int32), bt, qs)
            ref_out, ref_lse = c.reference(RANK)
            f = (lambda x: x.astype(np.float64)) if dtype != "bfloat16" else \
                (lambda x: (x.astype(np.uint32) << 16).view(np.float32).astype(np.float64))
            assert_close(f(out), ref_out, tol(dtype), f"prefill out dcp={dcp} {dtype}")
            assert_close(lse, ref_lse, 1e-4 if dtype == "float32" else tol(dtype), "prefill lse")
            kz, vz, _ = c.cache(RANK, with_new=True)
            assert np.array_equal(kc, kz), "prefill did not store the new K where this rank owns them"
            if vc is not None:
                assert np.array_equal(vc, vz)
            # a rank without query_start: it raises, naming it, and so does every other rank
            args = (q, kn, vn, kc, vc, np.array(c.ctx, np.int32), np.array(c.new, np.int32), bt)
            if RANK == W - 1:
                expect_error(lambda: plan.prefill(*args, None), cpcl.Result.INVALID_ARGUMENT, "query_start")
            elif W > 1:
                expect_error(lambda: plan.prefill(*args, qs), cpcl.Result.INVALID_USAGE, f"rank {W - 1}")
            plan.destroy()


@run.test
def test_sparse_topk_indices():
    """desc.topk / topk_indices (DESIGN.md §4.3): decode and partial + combine over exactly the
    listed positions (-1 padding, entries past the row, a duplicate), and the pairing errors."""
    K = 24
    for dcp in DCPS:
        for I in (1, 16):
            c = Case(W, dcp, I, [5, 40, 90], [1, 2, 1], H=2, Hkv=1, Dqk=64, Dvo=64, page=16, dtype="float32",
                     seed=700 + I + dcp)
            rng = np.random.default_rng(5)
            tk = np.full((c.T, K), -1, np.int32)
            for t, (s, p) in enumerate(c.positions()):
                pick = rng.permutation(p + 1)[:K - 4]
                tk[t, :len(pick)] = pick
                tk[t, K - 4:] = [p + 1, c.seq_lens[s] + 7, -3, pick[0]]  # skipped, skipped, skipped, duplicate
            comm = comm_for(dcp, I)
            plan = cpcl.AttnPlan(comm, c.H, c.Hkv, c.Dqk, c.Dvo, c.page, c.scale, "float32", "float32", topk=K,
                                 max_tokens=c.T)
            kc, vc, bt = c.shard(RANK)
            q, sl = c.q_of(RANK), np.array(c.seq_lens, np.int32)
            ref_out, ref_lse = c.reference(topk_indices=tk)
            out, lse = plan.decode(q, kc, vc, sl, bt, query_start=c.query_start, topk_indices=tk)
            assert_close(out, c.heads_of(ref_out, RANK), 2e-5, "sparse decode out")
            assert_close(lse, c.heads_of(ref_lse, RANK), 1e-4, "sparse decode lse")
            po, pl = plan.partial(q, kc, vc, sl, bt, query_start=c.query_start, topk_indices=tk)
            p_out, p_lse = c.reference(only_rank=RANK, topk_indices=tk)
            assert_close(pl, p_lse, 1e-4, "sparse partial lse")
            assert_close(np.where(np.isneginf(p_lse)[..., None], 0, po), p_out, 2e-5, "sparse partial out")
            o2, l2 = plan.combine(po, pl)
            assert np.array_equal(o2, out) and np.array_equal(l2, lse), "sparse partial + combine != decode"
            expect_error(lambda: plan.decode(q, kc, vc, sl, bt, query_start=c.query_start),
                         cpcl.Result.INVALID_ARGUMENT, "topkIndices is NULL")
            expect_error(lambda: plan.decode(q, kc, vc, sl, bt, query_start=c.query_start, topk_indices=tk[:, :3]),
                         cpcl.Result.INVALID_ARGUMENT, "topk_indices has shape")
            plan.destroy()


if __name__ == "__main__":
    code = run.run(sys.argv[1:])
    for cm in _comms.values():
        cm.destroy()
    sys.exit(code)
