"""vLLM-compatible entry points: an engine changes one import.

    from cpcl.vllm import cp_lse_ag_out_rs, dcp_a2a_lse_reduce, reshape_and_cache_flash

Same arguments and results as vLLM's (vllm/v1/attention/ops/common.py, dcp_alltoall.py):

  cp_attn_out [T, H*N, D] (every head, this rank's KV shard), cp_attn_lse [T, H*N] fp32 (a
  trailing 1-sized dimension is accepted) -> out [T, H, D] (this rank's heads, merged over the N
  ranks of cp_group), and with return_lse the merged LSE [T, H]. NaN and +inf LSEs count as -inf
  (their partial contributes nothing); a row empty on every rank gives out = 0, lse = -inf.
  is_lse_base_on_e=False reads and writes base-2 LSEs.

cp_group is a vLLM GroupCoordinator (its cpu_group bootstraps cpcl), a torch.distributed
ProcessGroup, or a cpcl.Comm. Both entry points are one cpclAttnCombine: the exact fp32 merge in
rank order (vLLM's ag-rs sums the corrected partials in the activation dtype in NCCL's order;
the results agree to rounding). Plans are cached per (group, device, dtype, H, D, LSE base,
row bucket): rows are bucketed to powers of two so a serving loop creates a few plans, during
warm-up, and CUDA-graph capture finds them. Plan creation is collective: every rank of the group
must make the same calls in the same order, as vLLM's DCP ranks do.
"""

import math

from ._core import AttnPlan, Comm

__all__ = ["cp_lse_ag_out_rs", "cp_lse_ag_out_ar", "dcp_a2a_lse_reduce", "reshape_and_cache_flash", "clear_cache"]

_comms = {}  # (id(group), mem, device) -> (group, Comm): the group is kept so its id stays unique
_plans = {}  # (comm key, dtype, H, D, base2, bucket) -> AttnPlan
_store_plans = {}  # (device, dtype, Hkv, Dk, Dv, page) -> AttnPlan on a one-rank communicator

MIN_BUCKET = 16


def clear_cache():
    """Destroys every cached plan and communicator (for a new model, or at shutdown)."""
    for p in list(_plans.values()) + list(_store_plans.values()):
        p.destroy()
    for _, c in list(_comms.values()):
        c.destroy()
    _plans.clear()
    _store_plans.clear()
    _comms.clear()


def _world(cp_group):
    if isinstance(cp_group, Comm):
        return cp_group.size, cp_group.rank
    if hasattr(cp_group, "world_size") and hasattr(cp_group, "rank_in_group"):  # vLLM GroupCoordinator
        return cp_group.world_size, cp_group.rank_in_group
    import torch.distributed as dist
    return dist.get_world_size(cp_group), dist.get_rank(cp_group)


def _comm(cp_group, t, dcp_size=0):
    """The cpcl communicator of cp_group: dcp_size 0 (every rank on the DCP axis: heads scatter
    over the ranks) or 1 (every rank on the PCP axis: every rank keeps every head)."""
    if isinstance(cp_group, Comm):
        if dcp_size == 1 and cp_group.dcp_size != 1:
            raise ValueError("cp_lse_ag_out_ar with a cpcl.Comm needs one made with dcp_size=1")
        return cp_group, ("comm", id(cp_group))
    mem = "cuda" if t.is_cuda else "host"
    key = (id(cp_group), mem, t.device.index if t.is_cuda else None, dcp_size)
    hit = _comms.get(key)
    if hit is None:
        pg = getattr(cp_group, "cpu_group", cp_group)  # GroupCoordinator: bootstrap over its gloo group
        comm = Comm.from_torch(pg, mem=mem, dcp_size=dcp_size)
        hit = _comms[key] = (cp_group, comm)
    return hit[1], key


def _plan(comm, ckey, dtype, H, D, base2, T):
    bucket = max(MIN_BUCKET, 1 << max(0, math.ceil(math.log2(max(T, 1)))))
    key = (ckey, str(dtype), H, D, base2, bucket)
    p = _plans.get(key)
    if p is None:
        name = {"torch.bfloat16": "bfloat16", "torch.float16": "float16", "torch.float32": "float32"}.get(str(dtype))
        if name is None:
            raise TypeError(f"cp_attn_out has dtype {dtype}: cpcl merges bfloat16, float16 or float32")
        # Combine reads only the output side's shape; the attention fields must just be valid:
        # one KV head (any group size divides), page size 16, and the smallest query head dim
        # (8), so that the query-gather workspace Combine never uses stays small.
        p = _plans[key] = AttnPlan(comm, H, 1, 8, D, 16, 1.0, name, name, lse_base2=base2, max_tokens=bucket)
    return p


def _merge(cp_attn_out, cp_attn_lse, cp_group, return_lse, is_lse_base_on_e, world1_lse, scatter=True):
    import torch
    N, _ = _world(cp_group)
    if N == 1:
        if return_lse:
            return cp_attn_out, world1_lse(cp_attn_lse)
        return cp_attn_out
    if cp_attn_out.dim() != 3:
        raise ValueError(f"cp_attn_out has shape {list(cp_attn_out.shape)}: it must be [T, H*N, D]")
    T, HN, D = cp_attn_out.shape
    if scatter and HN % N:
        raise ValueError(f"cp_attn_out has {HN} heads, not a multiple of the group's {N} ranks")
    if D % 8:
        raise ValueError(f"head dim {D} is not a multiple of 8 (cpcl's kernels need it)")
    lse = cp_attn_lse
    if lse.dim() == 3 and lse.shape[-1] == 1:
        lse = lse.squeeze(-1)
    if tuple(lse.shape) != (T, HN):
        raise ValueError(f"cp_attn_lse has shape {list(cp_attn_lse.shape)}: it must be [T = {T}, H*N = {HN}]")
    # vLLM's rule: a NaN or +inf LSE is -inf (cpcl's merge would propagate a NaN). [T, H*N] fp32:
    # small next to the outputs, and a new tensor, so the caller's LSE is left as it was.
    lse = lse.to(torch.float32)
    lse = torch.where(torch.isnan(lse) | (lse == math.inf), torch.full_like(lse, -math.inf), lse)
    comm, ckey = _comm(cp_group, cp_attn_out, 0 if scatter else 1)
    plan = _plan(comm, ckey, cp_attn_out.dtype, HN // N if scatter else HN, D, not is_lse_base_on_e, T)
    out, glse = plan.combine(cp_attn_out.contiguous(), lse)
    return (out, glse) if return_lse else out


def cp_lse_ag_out_rs(cp_attn_out, cp_attn_lse, cp_group, ctx=None, return_lse=False, is_lse_base_on_e=True):
    """vLLM's cp_lse_ag_out_rs (all-gather the LSEs, correct, reduce-scatter over heads) as one
    cpclAttnCombine. ctx (vLLM's CPTritonContext) is accepted and unused."""
    N, rank = _world(cp_group)

    def world1_lse(lse):  # vLLM returns the LSE of this rank's heads
        H = lse.shape[1] // N
        return lse[:, H * rank:H * (rank + 1)]

    return _merge(cp_attn_out, cp_attn_lse, cp_group, return_lse, is_lse_base_on_e, world1_lse)


def cp_lse_ag_out_ar(cp_attn_out, cp_attn_lse, cp_group, ctx=None, return_lse=False, is_lse_base_on_e=True):
    """vLLM's cp_lse_ag_out_ar (all-gather the LSEs, correct, all-reduce): every rank gets every
    head merged, [T, H*N, D] in and out (the PCP form), as one cpclAttnCombine on a communicator
    whose ranks are all on the PCP axis."""
    return _merge(cp_attn_out, cp_attn_lse, cp_group, return_lse, is_lse_base_on_e, lambda lse: lse, scatter=False)


def dcp_a2a_lse_reduce(cp_attn_out, cp_attn_lse, cp_group, ctx=None, return_lse=None, is_lse_base_on_e=True):
    """vLLM's dcp_a2a_lse_reduce (all-to-all of partial outputs and LSEs, exact LSE-weighted
    combine) as one cpclAttnCombine. ctx is accepted and unused; return_lse None means False.
    Also takes vLLM's earlier positional form (local_output, local_lse, kvp_group, return_lse,
    is_lse_base_on_e), which had no ctx: a bool in ctx's place is that return_lse."""
    if isinstance(ctx, bool):  # the earlier form: its flags sit one place to the left
        ctx, return_lse, is_lse_base_on_e = None, ctx, (is_lse_base_on_e if return_lse is None else return_lse)
    return _merge(cp_attn_out, cp_attn_lse, cp_group, bool(return_lse), is_lse_base_on_e, lambda lse: lse)


def reshape_and_cache_flash(key, value, key_cache, value_cache, slot_mapping, kv_cache_dtype="auto", k_scale=None,
                            v_scale=None):
    """vLLM's reshape_and_cache_flash: key/value [T, Hkv, D] (row-strided views of a fused qkv
    buffer are fine: no copy), key_cache/value_cache [pages, page_size, Hkv, D], slot_mapping
    [T] int64 (< 0 skips the row: padding, or under DCP a token another rank owns) -> stored in
    place, through cpclKvStoreSlots. kv_cache_dtype "auto" only (the cache has the rows' dtype)."""
    if kv_cache_dtype != "auto":
        raise NotImplementedError(f"kv_cache_dtype {kv_cache_dtype!r}: cpcl stores unquantised caches ('auto')")
    _, page, Hkv, Dk = key_cache.shape
    Dv = value_cache.shape[-1]
    dev = key.device
    k = (str(dev), str(key.dtype), Hkv, Dk, Dv, page)
    p = _store_plans.get(k)
    if p is None:
        name = {"torch.bfloat16": "bfloat16", "torch.float16": "float16", "torch.float32": "float32"}[str(key.dtype)]
        # the store is local: a one-rank communicator (no bootstrap) gives it its plan
        comm = Comm(lambda b: [b], 0, 1, mem="cuda" if key.is_cuda else "host", transport="self")
        p = _store_plans[k] = AttnPlan(comm, Hkv, Hkv, Dk, Dv, page, 1.0, name, name, max_tokens=1)
    p.kv_store_slots(key, value, key_cache, value_cache, slot_mapping)
