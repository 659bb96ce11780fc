"""torch.ops.cpcl.*: the per-step calls as torch custom ops (torch.library.custom_op), with fake
implementations, so torch.compile traces them (fullgraph) and CUDA graphs capture them.

Each op takes the plan by its id (an int: custom ops take no Python objects) and writes into
output tensors it mutates (out, lse; k_cache, v_cache), so nothing is allocated inside the op;
AttnPlan's methods allocate the outputs with torch before calling it. The real implementation is
the same code as the numpy path (cpcl._core), on torch's current stream.
"""

from typing import Optional

_registered = False


def _plan(plan_id):
    from ._core import _plans
    from ._lib import CpclError, Result
    p = _plans.get(plan_id)
    if p is None:
        raise CpclError(Result.INVALID_USAGE, f"no live cpcl.AttnPlan has id {plan_id} (destroyed?)", "torch.ops.cpcl")
    return p


def register():
    """Defines torch.ops.cpcl.* (once per process)."""
    global _registered
    if _registered:
        return
    import torch
    from torch import Tensor
    _registered = True

    @torch.library.custom_op("cpcl::decode", mutates_args=("out", "lse"))
    def decode(plan: int, q: Tensor, k_cache: Tensor, v_cache: Optional[Tensor], seq_lens: Tensor,
               block_table: Tensor, query_start: Optional[Tensor], topk_indices: Optional[Tensor], out: Tensor,
               lse: Tensor) -> None:
        _plan(plan)._step("decode", q, k_cache, v_cache, seq_lens, block_table, query_start, topk_indices, out, lse)

    @decode.register_fake
    def _(plan, q, k_cache, v_cache, seq_lens, block_table, query_start, topk_indices, out, lse):
        return None

    @torch.library.custom_op("cpcl::partial", mutates_args=("out", "lse"))
    def partial(plan: int, q: Tensor, k_cache: Tensor, v_cache: Optional[Tensor], seq_lens: Tensor,
                block_table: Tensor, query_start: Optional[Tensor], topk_indices: Optional[Tensor], out: Tensor,
                lse: Tensor) -> None:
        _plan(plan)._step("partial", q, k_cache, v_cache, seq_lens, block_table, query_start, topk_indices, out,
                          lse)

    @partial.register_fake
    def _(plan, q, k_cache, v_cache, seq_lens, block_table, query_start, topk_indices, out, lse):
        return None

    @torch.library.custom_op("cpcl::combine", mutates_args=("out", "lse"))
    def combine(plan: int, partial_out: Tensor, partial_lse: Tensor, out: Tensor, lse: Tensor) -> None:
        _plan(plan)._combine(partial_out, partial_lse, out, lse)

    @combine.register_fake
    def _(plan, partial_out, partial_lse, out, lse):
        return None

    @torch.library.custom_op("cpcl::prefill", mutates_args=("k_cache", "v_cache", "out", "lse"))
    def prefill(plan: int, q: Tensor, k_new: Tensor, v_new: Optional[Tensor], k_cache: Tensor,
                v_cache: Optional[Tensor], context_lens: Tensor, new_lens: Tensor, block_table: Tensor,
                query_start: Tensor, out: Tensor, lse: Tensor) -> None:
        _plan(plan)._prefill(q, k_new, v_new, k_cache, v_cache, context_lens, new_lens, block_table, query_start,
                             out, lse)

    @prefill.register_fake
    def _(plan, q, k_new, v_new, k_cache, v_cache, context_lens, new_lens, block_table, query_start, out, lse):
        return None

    @torch.library.custom_op("cpcl::kv_store", mutates_args=("k_cache", "v_cache"))
    def kv_store(plan: int, k_new: Tensor, v_new: Optional[Tensor], k_cache: Tensor, v_cache: Optional[Tensor],
                 seq_lens: Tensor, block_table: Tensor, query_start: Optional[Tensor]) -> None:
        _plan(plan)._kv_store(k_new, v_new, k_cache, v_cache, seq_lens, block_table, query_start)

    @kv_store.register_fake
    def _(plan, k_new, v_new, k_cache, v_cache, seq_lens, block_table, query_start):
        return None

    @torch.library.custom_op("cpcl::kv_store_slots", mutates_args=("k_cache", "v_cache"))
    def kv_store_slots(plan: int, k_new: Tensor, v_new: Optional[Tensor], k_cache: Tensor,
                       v_cache: Optional[Tensor], slot_mapping: Tensor) -> None:
        _plan(plan)._kv_store_slots(k_new, v_new, k_cache, v_cache, slot_mapping)

    @kv_store_slots.register_fake
    def _(plan, k_new, v_new, k_cache, v_cache, slot_mapping):
        return None
