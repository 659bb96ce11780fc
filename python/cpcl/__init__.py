"""cpcl: fused context-parallel attention collectives (decode and prefill context parallelism)
for LLM inference engines, from Python.

    comm = cpcl.Comm.from_mpi(MPI.COMM_WORLD)             # or cpcl.Comm(allgather, rank, size, ...)
    plan = cpcl.AttnPlan(comm, 8, 1, 128, 128, 16, 128 ** -0.5, "bfloat16", "bfloat16", max_tokens=64)
    out, lse = plan.decode(q, k_cache, v_cache, seq_lens, block_table)

Arrays are numpy arrays (host memory; bfloat16 as uint16 bit patterns or ml_dtypes.bfloat16) or
torch tensors (host or CUDA, launched on torch's current stream). With torch the calls are the
custom ops torch.ops.cpcl.{decode,partial,combine,kv_store,kv_store_slots}, with fake
implementations, so torch.compile traces them and CUDA graphs capture them. vLLM-compatible
entry points are in cpcl.vllm. Every failure raises cpcl.CpclError (.code, .message).
"""

import sys as _sys

from ._lib import CpclError, Result, library_path, version as _version
from ._core import AttnPlan, Comm, kv_local_len, pcp_chunks

__all__ = ["Comm", "AttnPlan", "CpclError", "Result", "kv_local_len", "pcp_chunks", "library_version",
           "build_config", "library_path"]
_v = _version()
__version__ = f"{_v // 10000}.{_v // 100 % 100}.{_v % 100}"  # the library's: one version for both


def library_version():
    """The loaded libcpcl's version code (CPCL_VERSION_CODE, e.g. 200 for 0.2.0)."""
    return _version()


def build_config():
    """The loaded libcpcl's build options (cpclGetBuildConfig)."""
    from ._lib import lib
    return lib.cpclGetBuildConfig().decode()


if "torch" in _sys.modules:  # a torch program: the custom ops exist from import on
    from . import _torch_ops as _t

    _t.register()
