"""Comm, AttnPlan and the pure KV-placement functions over numpy arrays and torch tensors."""

import ctypes
import itertools
import sys
import weakref

from . import _lib
from ._lib import CpclError, Result, check, lib

__all__ = ["Comm", "AttnPlan", "kv_local_len", "pcp_chunks"]

_plans = weakref.WeakValueDictionary()  # plan id -> AttnPlan: what torch.ops.cpcl.* receive
_plan_ids = itertools.count(1)


def _torch():
    """torch when the program has imported it (cpcl never imports it for a numpy user)."""
    return sys.modules.get("torch")


def _is_tensor(x):
    t = _torch()
    return t is not None and isinstance(x, t.Tensor)


class _ArgError(Exception):
    """A bad argument found by the bindings (shapes, dtypes, devices: what C cannot see)."""


# ---------------------------------------------------------------------------------------------
# Arrays: numpy (host) or torch (host or CUDA), reduced to pointer, shape, dtype name, device.
# ---------------------------------------------------------------------------------------------

class _Arr:
    __slots__ = ("obj", "ptr", "shape", "dtype", "device", "contig", "row_stride")

    def __init__(self, obj, ptr, shape, dtype, device, contig):
        self.obj, self.ptr, self.shape, self.dtype, self.device, self.contig = obj, ptr, shape, dtype, device, contig
        self.row_stride = 0  # elements between rows, for the row-strided views of kv_store_slots


_np_names = {}  # numpy dtype -> our name: dtype.name is slow, and this runs per array per call


def _np_dtype_name(dt):
    name = _np_names.get(dt)
    if name is None:
        import numpy as np
        if dt.name == "bfloat16":  # ml_dtypes.bfloat16
            name = "bfloat16"
        else:
            name = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16", np.dtype(np.uint16): "uint16",
                    np.dtype(np.int32): "int32", np.dtype(np.int64): "int64"}.get(dt, dt.name)
        _np_names[dt] = name
    return name


_torch_names = {}


def _torch_dtype_name(dt):
    name = _torch_names.get(dt)
    if name is None:
        name = _torch_names[dt] = str(dt).replace("torch.", "")  # torch.bfloat16 -> "bfloat16"
    return name


def _arr(x, what):
    if _is_tensor(x):
        dev = ("cuda", x.device.index) if x.is_cuda else ("host", None)
        return _Arr(x, x.data_ptr(), tuple(x.shape), _torch_dtype_name(x.dtype), dev, x.is_contiguous())
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, np.ndarray):
        return _Arr(x, x.ctypes.data, x.shape, _np_dtype_name(x.dtype), ("host", None), x.flags.c_contiguous)
    raise _ArgError(f"{what} is a {type(x).__name__}: pass a numpy array or a torch tensor")


def _dtype_ok(arr_dtype, want):
    # numpy has no bfloat16: uint16 arrays hold its bit patterns (DESIGN.md §4.4)
    return arr_dtype == want or (want == "bfloat16" and arr_dtype == "uint16")


def _index(x, what, mem, like):
    """An int32 index array (seq_lens, block_table, ...) as C wants it: contiguous int32 in the
    plan's memory. Host arrays and lists are converted (a small copy when needed); device tensors
    must already live on the plan's device."""
    if _is_tensor(x):
        t = _torch()
        if x.dtype != t.int32 or not x.is_contiguous():
            x = x.to(t.int32).contiguous()
        a = _arr(x, what)
    else:
        import numpy as np
        if isinstance(x, np.ndarray) and x.dtype == np.int32 and x.flags.c_contiguous:
            a = _arr(x, what)
        else:
            try:
                arr = np.ascontiguousarray(x, dtype=np.int32)
            except (TypeError, ValueError, OverflowError) as e:
                raise _ArgError(f"{what}: not an int32 array ({e})") from None
            if isinstance(x, np.ndarray) and not np.array_equal(arr, x):
                raise _ArgError(f"{what} has values that do not fit int32")
            a = _arr(arr, what)
    _on(a, what, mem, like)
    return a


def _host_index(x, what):
    """An int32 index array the C call reads on the host whatever the plan's memory (the prefill
    batch's lengths and row offsets, cpcl.h): a CUDA tensor is copied to the host (a sync)."""
    if _is_tensor(x) and x.device.type != "cpu":
        x = x.to("cpu")
    return _index(x, what, "host", None)


def _on(a, what, mem, like):
    if mem == "host" and a.device[0] != "host":
        raise _ArgError(f"{what} is on {a.device[0]}:{a.device[1]}, but the communicator's memory is host")
    if mem == "cuda":
        if a.device[0] != "cuda":
            raise _ArgError(f"{what} is in host memory, but the communicator's memory is cuda (every tensor, batch "
                            "arrays included, must be on the GPU)")
        if like is not None and like.device != a.device:
            raise _ArgError(f"{what} is on cuda:{a.device[1]} but q is on cuda:{like.device[1]}")


def _tensor(x, what, mem, dtype, shape, like=None, optional=False):
    """A data tensor of dtype `dtype` and shape `shape` (None entries: any size), contiguous."""
    if x is None:
        if optional:
            return None
        raise _ArgError(f"{what} is None")
    a = _arr(x, what)
    if not _dtype_ok(a.dtype, dtype):
        raise _ArgError(f"{what} has dtype {a.dtype}, the plan wants {dtype}"
                        + (" (numpy: uint16 bit patterns or ml_dtypes.bfloat16)" if dtype == "bfloat16" else ""))
    if len(a.shape) != len(shape) or any(w is not None and s != w for s, w in zip(a.shape, shape)):
        want = "[" + ", ".join("*" if w is None else str(w) for w in shape) + "]"
        raise _ArgError(f"{what} has shape {list(a.shape)}, the plan wants {want}")
    if not a.contig:
        raise _ArgError(f"{what} is not contiguous (cpcl reads and writes row-major, contiguous memory)")
    _on(a, what, mem, like)
    return a


def _stream(mem, like):
    if mem != "cuda":
        return None
    return _torch().cuda.current_stream(like.device[1]).cuda_stream


def _empty_like(like, shape, dtype):
    """A new array for an output, of the kind of `like` (numpy or torch, same device)."""
    if _is_tensor(like.obj):
        t = _torch()
        tdt = {"float32": t.float32, "float16": t.float16, "bfloat16": t.bfloat16}[dtype]
        return t.empty(shape, dtype=tdt, device=like.obj.device)
    import numpy as np
    if dtype == "float32":
        return np.empty(shape, dtype=np.float32)
    if dtype == like.dtype or (dtype == "bfloat16" and like.dtype == "uint16"):
        return np.empty(shape, dtype=like.obj.dtype)  # keep the caller's bf16 representation
    return np.empty(shape, dtype={"float16": np.float16, "bfloat16": np.uint16}[dtype])


# ---------------------------------------------------------------------------------------------
# Communicator
# ---------------------------------------------------------------------------------------------

class Comm:
    """A cpcl communicator: one context-parallel group of `size` ranks (pcp x dcp).

    ``allgather(data: bytes) -> list of bytes`` is the out-of-band bootstrap: it must return the
    bytes every rank passed, in rank order (MPI allgather, a TCP store, torch.distributed...).
    The Comm keeps it (and the C callback around it) alive as long as it lives: cpcl calls it
    during construction, and with transport "ipc" again at every plan creation. Collective.
    """

    def __init__(self, allgather, rank, size, dcp_size=0, kv_interleave=1, mem="host", transport=None,
                 timeout_ms=0):
        if not callable(allgather):
            raise TypeError(f"allgather must be callable (bytes -> list of bytes per rank), not {type(allgather)}")
        if mem not in _lib.MEM_TYPES:
            raise ValueError(f"mem is {mem!r}: it must be 'host' or 'cuda'")
        self._handle = None
        self._allgather = allgather
        self._size_arg = int(size)
        self._cb_error = None
        self._cb = _lib.OobAllgather(self._oob)  # referenced by the C communicator: lives with self
        self._transport = transport.encode() if transport else None
        self._oob_struct = _lib.Oob(self._cb, None, int(rank), int(size))
        cfg = _lib.Config(ctypes.sizeof(_lib.Config), int(dcp_size), int(kv_interleave), _lib.MEM_TYPES[mem],
                          self._transport, int(timeout_ms))
        handle = ctypes.c_void_p()
        res = lib.cpclCommInitOob(ctypes.byref(handle), ctypes.byref(self._oob_struct), ctypes.byref(cfg))
        if res != 0:
            msg = _lib.last_error(None) or lib.cpclGetErrorString(res).decode()
            if self._cb_error is not None:
                msg += f" (the allgather callable raised {self._cb_error!r})"
            raise CpclError(res, msg, "cpclCommInitOob") from self._cb_error
        self._handle = handle
        self.mem = mem
        self.kv_interleave = max(1, int(kv_interleave))
        self._plans = weakref.WeakSet()
        r, n = ctypes.c_int(), ctypes.c_int()
        self._check(lib.cpclCommRank(handle, ctypes.byref(r)), "cpclCommRank")
        self._check(lib.cpclCommSize(handle, ctypes.byref(n)), "cpclCommSize")
        self.rank, self.size = r.value, n.value
        ax = [ctypes.c_int() for _ in range(4)]
        self._check(lib.cpclCommAxes(handle, *[ctypes.byref(a) for a in ax]), "cpclCommAxes")
        self.dcp_size, self.dcp_rank, self.pcp_size, self.pcp_rank = (a.value for a in ax)

    def _oob(self, send, recv, nbytes, ctx):
        try:
            parts = list(self._allgather(ctypes.string_at(send, nbytes)))
            if len(parts) != self._size_arg:
                raise ValueError(f"allgather returned {len(parts)} parts for {self._size_arg} ranks")
            for i, p in enumerate(parts):
                b = bytes(p)
                if len(b) != nbytes:
                    raise ValueError(f"allgather returned {len(b)} bytes for rank {i}, not {nbytes}")
                ctypes.memmove(recv + i * nbytes, b, nbytes)
            return 0
        except BaseException as e:  # an exception must not unwind through C
            self._cb_error = e
            return 1

    @classmethod
    def from_mpi(cls, comm=None, **kwargs):
        """A Comm over the ranks of an mpi4py communicator (default MPI.COMM_WORLD)."""
        if comm is None:
            from mpi4py import MPI
            comm = MPI.COMM_WORLD
        return cls(comm.allgather, comm.Get_rank(), comm.Get_size(), **kwargs)

    @classmethod
    def from_torch(cls, group=None, **kwargs):
        """A Comm over the ranks of a torch.distributed process group (default: the world). A gloo
        group gathers on the host; another backend (nccl) on the current CUDA device."""
        import torch
        import torch.distributed as dist
        rank, size = dist.get_rank(group), dist.get_world_size(group)
        on_host = "gloo" in str(dist.get_backend(group))

        def allgather(data):
            if not data:
                return [b""] * size
            dev = torch.device("cpu") if on_host else torch.device("cuda", torch.cuda.current_device())
            mine = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(dev)
            parts = [torch.empty_like(mine) for _ in range(size)]
            dist.all_gather(parts, mine, group=group)
            return [p.cpu().numpy().tobytes() for p in parts]

        return cls(allgather, rank, size, **kwargs)

    def _check(self, res, func):
        check(res, func, self._handle)

    @property
    def handle(self):
        """The cpclComm_t, as an int (for C extensions)."""
        return self._handle.value if self._handle else 0

    def async_error(self):
        """cpclCommGetAsyncError: Result.SUCCESS while healthy, else what broke it."""
        e = ctypes.c_int()
        self._check(lib.cpclCommGetAsyncError(self._live(), ctypes.byref(e)), "cpclCommGetAsyncError")
        return Result(e.value)

    def _live(self):
        if not self._handle:
            raise CpclError(Result.INVALID_USAGE, "the communicator was destroyed", "Comm")
        return self._handle

    def destroy(self):
        """Destroys the plans still open on this communicator, then the communicator. Not collective."""
        if not self._handle:
            return
        for p in list(self._plans):
            p.destroy()
        h, self._handle = self._handle, None
        check(lib.cpclCommDestroy(h), "cpclCommDestroy")

    def abort(self):
        """cpclCommAbort: unblocks and tears down after a failure; plans must still be destroyed."""
        if not self._handle:
            return
        h, self._handle = self._handle, None
        check(lib.cpclCommAbort(h), "cpclCommAbort")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()

    def __del__(self):
        if getattr(self, "_handle", None) and lib is not None:
            try:
                self.destroy()
            except Exception:
                pass

    def __repr__(self):
        return (f"cpcl.Comm(rank={getattr(self, 'rank', '?')}, size={getattr(self, 'size', '?')}, "
                f"dcp={getattr(self, 'dcp_size', '?')}, mem={getattr(self, 'mem', '?')!r})")


# ---------------------------------------------------------------------------------------------
# Attention plans
# ---------------------------------------------------------------------------------------------

def _dtype_name(d, what):
    """'bfloat16' / 'float16' / 'float32' from a string, a numpy dtype or a torch dtype."""
    if isinstance(d, str):
        name = d
    elif _torch() is not None and isinstance(d, _torch().dtype):
        name = _torch_dtype_name(d)
    else:
        try:
            import numpy as np
            name = _np_dtype_name(np.dtype(d))
        except TypeError:
            name = str(d)
    if name not in _lib.DTYPES:
        raise ValueError(f"{what} is {d!r}: it must be 'bfloat16', 'float16' or 'float32'")
    return name


class AttnPlan:
    """One attention shape on a communicator (cpclAttnPlanCreate). Collective: every rank creates
    it with the same arguments. Its workspace is allocated once here (or is `workspace`, a torch
    tensor or numpy array the engine owns, through cpclAttnPlanCreateWithWorkspace; "torch" asks
    the plan's size and allocates it with torch on the current device), so the per-step calls
    allocate nothing in C and can be captured in CUDA graphs."""

    def __init__(self, comm, num_qo_heads, num_kv_heads, head_dim_qk, head_dim_vo, page_size, sm_scale, q_dtype,
                 kv_dtype, latent_kv=False, lse_base2=False, topk=0, max_tokens=None, algo=None,
                 prefill_algo=None, workspace=None):
        if not isinstance(comm, Comm):
            raise TypeError(f"comm must be a cpcl.Comm, not {type(comm).__name__}")
        self._handle = None
        self.comm = comm
        try:
            if max_tokens is None:
                raise TypeError("AttnPlan: max_tokens (the most query rows one step will pass) is required")
            self.num_qo_heads, self.num_kv_heads = int(num_qo_heads), int(num_kv_heads)
            self.head_dim_qk, self.head_dim_vo, self.page_size = int(head_dim_qk), int(head_dim_vo), int(page_size)
            self.sm_scale = float(sm_scale)
            self.q_dtype, self.kv_dtype = _dtype_name(q_dtype, "q_dtype"), _dtype_name(kv_dtype, "kv_dtype")
            self.latent_kv, self.lse_base2, self.topk = bool(latent_kv), bool(lse_base2), int(topk)
            self.max_tokens = int(max_tokens)
            if isinstance(workspace, str) and workspace != "torch":
                raise ValueError(f"workspace is {workspace!r}: a tensor, an array, 'torch' or None")
        except (TypeError, ValueError):
            self._fail_create()
            raise
        self.algo, self.prefill_algo = algo, prefill_algo
        self._strs = (algo.encode() if algo else None, prefill_algo.encode() if prefill_algo else None)
        self._desc = _lib.AttnDesc(ctypes.sizeof(_lib.AttnDesc), self.num_qo_heads, self.num_kv_heads,
                                   self.head_dim_qk, self.head_dim_vo, self.page_size, self.sm_scale,
                                   _lib.DTYPES[self.q_dtype], _lib.DTYPES[self.kv_dtype], int(self.latent_kv),
                                   int(self.lse_base2), self._strs[0], self.topk, self._strs[1])
        self.workspace = None
        if workspace is None:
            self._handle = self._create(None)
        else:
            if isinstance(workspace, str):
                probe = self._create(None)
                need = self._ws_bytes(probe)
                check(lib.cpclAttnPlanDestroy(probe), "cpclAttnPlanDestroy")
                import torch
                dev = torch.device("cuda", torch.cuda.current_device()) if comm.mem == "cuda" else "cpu"
                workspace = torch.empty(need, dtype=torch.uint8, device=dev)
            self.workspace = workspace  # the plan's memory: lives as long as the plan
            self._handle = self._create(workspace)
        self.id = next(_plan_ids)
        _plans[self.id] = self
        comm._plans.add(self)
        if _torch() is not None:
            from . import _torch_ops
            _torch_ops.register()

    def _fail_create(self):
        """This rank rejected its arguments before reaching C: join the collective creation with a
        descriptor C rejects, so that every rank fails at once instead of waiting for this one."""
        d = _lib.AttnDesc(ctypes.sizeof(_lib.AttnDesc))  # numQoHeads 0: invalid on purpose
        h = ctypes.c_void_p()
        if self.comm._handle:
            lib.cpclAttnPlanCreate(ctypes.byref(h), self.comm._handle, ctypes.byref(d), 0)

    def _create(self, ws):
        if not _lib.has("cpclAttnPlanCreate"):
            raise NotImplementedError
        h = ctypes.c_void_p()
        if ws is None:
            res = lib.cpclAttnPlanCreate(ctypes.byref(h), self.comm._live(), ctypes.byref(self._desc),
                                         self.max_tokens)
            self.comm._check(res, "cpclAttnPlanCreate")
            return h
        if not _lib.has("cpclAttnPlanCreateWithWorkspace"):
            raise NotImplementedError("this libcpcl has no cpclAttnPlanCreateWithWorkspace")
        try:
            a = _arr(ws, "workspace")
            if not a.contig:
                raise ValueError("workspace is not contiguous")
            on_ws = "cuda" if a.device[0] == "cuda" else "host"
            if on_ws != self.comm.mem:
                raise ValueError(f"workspace is in {on_ws} memory, the communicator's is {self.comm.mem}")
        except (_ArgError, ValueError) as e:
            self._fail_create()
            raise ValueError(str(e)) from None
        nbytes = (ws.numel() * ws.element_size()) if _is_tensor(ws) else ws.nbytes
        res = lib.cpclAttnPlanCreateWithWorkspace(ctypes.byref(h), self.comm._live(), ctypes.byref(self._desc),
                                                  self.max_tokens, a.ptr, nbytes)
        self.comm._check(res, "cpclAttnPlanCreateWithWorkspace")
        return h

    @staticmethod
    def _ws_bytes(handle):
        n = ctypes.c_size_t()
        check(lib.cpclAttnPlanWorkspaceBytes(handle, ctypes.byref(n)), "cpclAttnPlanWorkspaceBytes")
        return n.value

    @property
    def workspace_bytes(self):
        """Bytes of workspace the plan uses, in the communicator's memory (cpclAttnPlanWorkspaceBytes)."""
        return self._ws_bytes(self._live())

    @property
    def gathered_heads(self):
        """dcp x num_qo_heads: the heads of a partial (cpclAttnPartial's second dimension)."""
        return self.comm.dcp_size * self.num_qo_heads

    def _live(self):
        if not self._handle:
            raise CpclError(Result.INVALID_USAGE, "the plan was destroyed", "AttnPlan")
        return self._handle

    def async_error(self):
        """cpclAttnPlanGetAsyncError: Result.SUCCESS, or what went wrong after a call returned."""
        e = ctypes.c_int()
        self.comm._check(lib.cpclAttnPlanGetAsyncError(self._live(), ctypes.byref(e)), "cpclAttnPlanGetAsyncError")
        return Result(e.value)

    def destroy(self):
        """Frees the plan (not collective). For CUDA, its work must be complete and graphs that
        captured it destroyed."""
        if not self._handle:
            return
        h, self._handle = self._handle, None
        _plans.pop(self.id, None)
        check(lib.cpclAttnPlanDestroy(h), "cpclAttnPlanDestroy")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()

    def __del__(self):
        if getattr(self, "_handle", None) and lib is not None:
            try:
                self.destroy()
            except Exception:
                pass

    # -- the per-step calls: numpy, or torch through torch.ops.cpcl.* ----------------------------

    def decode(self, q, k_cache, v_cache, seq_lens, block_table, query_start=None, topk_indices=None, out=None,
               lse=None):
        """cpclAttnDecode: gather queries over DCP, attend to the local KV shard, merge every rank's
        partial, keep this rank's heads. q [T, H, Dqk]; k_cache [pages, page_size, Hkv, Dqk],
        v_cache [pages, page_size, Hkv, Dvo] (None for MLA); seq_lens [S], block_table [S, P],
        query_start [S+1] or None; topk_indices [T, topk] int32 global positions (sparse plans,
        topk > 0: required; -1 and positions past the row are skipped; the same on every rank),
        None on dense plans. Returns (out [T, H, Dvo], lse [T, H] fp32). Collective."""
        if _is_tensor(q):
            t = _torch()
            T = q.shape[0]
            if out is None:
                out = t.empty((T, self.num_qo_heads, self.head_dim_vo), dtype=q.dtype, device=q.device)
            if lse is None:
                lse = t.empty((T, self.num_qo_heads), dtype=t.float32, device=q.device)
            t.ops.cpcl.decode(self.id, q, k_cache, v_cache, *_t_ints(seq_lens, block_table, query_start,
                                                                        topk_indices), out, lse)
            return out, lse
        return self._step("decode", q, k_cache, v_cache, seq_lens, block_table, query_start, topk_indices, out, lse)

    def partial(self, q, k_cache, v_cache, seq_lens, block_table, query_start=None, topk_indices=None, out=None,
                lse=None):
        """cpclAttnPartial: the first half of decode. Returns (partial_out [T, dcp*H, Dvo] in q's
        dtype, partial_lse [T, dcp*H] fp32; -inf where this rank holds no key). Collective."""
        if _is_tensor(q):
            t = _torch()
            T, G = q.shape[0], self.gathered_heads
            if out is None:
                out = t.empty((T, G, self.head_dim_vo), dtype=q.dtype, device=q.device)
            if lse is None:
                lse = t.empty((T, G), dtype=t.float32, device=q.device)
            t.ops.cpcl.partial(self.id, q, k_cache, v_cache, *_t_ints(seq_lens, block_table, query_start,
                                                                         topk_indices), out, lse)
            return out, lse
        return self._step("partial", q, k_cache, v_cache, seq_lens, block_table, query_start, topk_indices, out, lse)

    def combine(self, partial_out, partial_lse, out=None, lse=None):
        """cpclAttnCombine: merges every rank's partial state for this rank's heads (the drop-in for
        vLLM's cp_lse_ag_out_rs). partial_out [T, dcp*H, Dvo], partial_lse [T, dcp*H] fp32.
        Returns (out [T, H, Dvo], lse [T, H]). Collective."""
        if _is_tensor(partial_out):
            t = _torch()
            T = partial_out.shape[0]
            if out is None:
                out = t.empty((T, self.num_qo_heads, self.head_dim_vo), dtype=partial_out.dtype,
                              device=partial_out.device)
            if lse is None:
                lse = t.empty((T, self.num_qo_heads), dtype=t.float32, device=partial_out.device)
            t.ops.cpcl.combine(self.id, partial_out, partial_lse, out, lse)
            return out, lse
        return self._combine(partial_out, partial_lse, out, lse)

    def kv_store(self, k_new, v_new, k_cache, v_cache, seq_lens, block_table, query_start=None):
        """cpclKvStore: this step's new K/V rows (k_new [T, Hkv, Dqk], v_new [T, Hkv, Dvo], None for
        MLA; row t is the token of query row t) into the local cache, owned tokens only. Not
        collective."""
        if _is_tensor(k_new):
            _torch().ops.cpcl.kv_store(self.id, k_new, v_new, k_cache, v_cache,
                                       *_t_ints(seq_lens, block_table, query_start))
            return None
        return self._kv_store(k_new, v_new, k_cache, v_cache, seq_lens, block_table, query_start)

    def kv_store_slots(self, k_new, v_new, k_cache, v_cache, slot_mapping):
        """cpclKvStoreSlots: rows into the slots an engine computed (vLLM's reshape_and_cache_flash
        slot_mapping: int64 [T], slot = page * page_size + offset, < 0 skips the row). k_new /
        v_new may be row-strided views ([T, Hkv, D] with contiguous rows). Not collective."""
        if _is_tensor(k_new):
            t = _torch()
            if slot_mapping.dtype != t.int64:
                slot_mapping = slot_mapping.to(t.int64)
            t.ops.cpcl.kv_store_slots(self.id, k_new, v_new, k_cache, v_cache, slot_mapping.contiguous())
            return None
        return self._kv_store_slots(k_new, v_new, k_cache, v_cache, slot_mapping)

    def prefill(self, q, k_new, v_new, k_cache, v_cache, context_lens, new_lens, block_table, query_start, out=None,
                lse=None):
        """cpclAttnPrefill (DESIGN.md §4.2): this rank's rows of the new tokens (q [T, H, Dqk],
        k_new / v_new [T, Hkv, D]: its head-tail chunks, pcp_chunks, sequence-major, rows
        query_start[s]..) attend causally to the cached context and every PCP rank's new tokens;
        the new K/V are stored into the cache (owned positions). Returns (out [T, H, Dvo],
        lse [T, H]). Collective. context_lens, new_lens and query_start are read on the host on
        every plan (CUDA tensors are copied there: pass CPU ones to avoid the sync); block_table
        lives in the plan's memory."""
        if not _lib.has("cpclAttnPrefill"):
            why = _lib.unusable.get("cpclAttnPrefill", "this libcpcl has no cpclAttnPrefill yet")
            raise NotImplementedError(f"cpcl.AttnPlan.prefill: {why} ({_lib.library_path})")
        if _is_tensor(q):
            t = _torch()
            T = q.shape[0]
            if out is None:
                out = t.empty((T, self.num_qo_heads, self.head_dim_vo), dtype=q.dtype, device=q.device)
            if lse is None:
                lse = t.empty((T, self.num_qo_heads), dtype=t.float32, device=q.device)
            conv = _t_ints(context_lens, new_lens, block_table, query_start)
            t.ops.cpcl.prefill(self.id, q, k_new, v_new, k_cache, v_cache, *conv, out, lse)
            return out, lse
        return self._prefill(q, k_new, v_new, k_cache, v_cache, context_lens, new_lens, block_table, query_start,
                             out, lse)

    # -- implementations over _Arr (shared by numpy and the torch ops) ----------------------------

    def _fail_collective(self, op):
        """This rank rejected its arguments before reaching C: enter the collective anyway with an
        argument C rejects (a NULL batch), so that every other rank returns at once, with
        cpclInvalidUsage naming this rank, instead of waiting for it until the timeout."""
        h = self._handle
        if not h:
            return
        if op == "combine":
            lib.cpclAttnCombine(h, -1, None, None, None, None, None)
        else:
            fn = lib.cpclAttnDecode if op == "decode" else lib.cpclAttnPartial
            fn(h, None, None, None, None, None, None, None)

    def _batch(self, T, seq_lens, block_table, query_start, topk_indices, mem, like):
        sl = _index(seq_lens, "seq_lens", mem, like)
        if len(sl.shape) != 1:
            raise _ArgError(f"seq_lens has shape {list(sl.shape)}: it must be [num_seqs]")
        S = sl.shape[0]
        bt = _index(block_table, "block_table", mem, like)
        if len(bt.shape) != 2 or bt.shape[0] != S:
            raise _ArgError(f"block_table has shape {list(bt.shape)}: it must be [num_seqs = {S}, max_pages]")
        qs = None
        if query_start is not None:
            qs = _index(query_start, "query_start", mem, like)
            if qs.shape != (S + 1,):
                raise _ArgError(f"query_start has shape {list(qs.shape)}: it must be [num_seqs + 1 = {S + 1}]")
        elif T != S:
            raise _ArgError(f"q has {T} rows but seq_lens {S} sequences: pass query_start for several rows per "
                            "sequence")
        tk = None
        if topk_indices is not None:
            tk = _index(topk_indices, "topk_indices", mem, like)
            if tk.shape != (T, self.topk):
                raise _ArgError(f"topk_indices has shape {list(tk.shape)}: it must be [T = {T}, topk = {self.topk}]")
        b = _lib.Batch(ctypes.sizeof(_lib.Batch), S, T, qs.ptr if qs else None, sl.ptr, bt.ptr, bt.shape[1],
                       tk.ptr if tk else None)
        return b, (sl, bt, qs, tk)  # the arrays must outlive the call

    def _step(self, op, q, k_cache, v_cache, seq_lens, block_table, query_start, topk_indices, out, lse):
        h = self._live()
        mem = self.comm.mem
        H, G = self.num_qo_heads, self.gathered_heads
        heads = H if op == "decode" else G
        try:
            qa = _tensor(q, "q", mem, self.q_dtype, (None, H, self.head_dim_qk))
            T = qa.shape[0]
            ka = _tensor(k_cache, "k_cache", mem, self.kv_dtype, (None, self.page_size, self.num_kv_heads,
                                                                  self.head_dim_qk), qa)
            if self.latent_kv:
                if v_cache is not None:
                    raise _ArgError("v_cache must be None for an MLA plan (latent_kv: V is the first head_dim_vo "
                                    "elements of each K row)")
                va = None
            else:
                va = _tensor(v_cache, "v_cache", mem, self.kv_dtype, (ka.shape[0], self.page_size,
                                                                      self.num_kv_heads, self.head_dim_vo), qa)
            b, keep = self._batch(T, seq_lens, block_table, query_start, topk_indices, mem, qa)
            name = "out" if op == "decode" else "partial out"
            if out is None:
                out = _empty_like(qa, (T, heads, self.head_dim_vo), self.q_dtype)
            oa = _tensor(out, name, mem, self.q_dtype, (T, heads, self.head_dim_vo), qa)
            if lse is None:
                lse = _empty_like(qa, (T, heads), "float32")
            la = _tensor(lse, "lse" if op == "decode" else "partial lse", mem, "float32", (T, heads), qa)
        except _ArgError as e:
            self._fail_collective(op)
            raise CpclError(Result.INVALID_ARGUMENT, f"rank {self.comm.rank}: {e}", f"AttnPlan.{op}") from None
        except Exception:  # whatever went wrong here, the peers must not wait for this rank
            self._fail_collective(op)
            raise
        fn = lib.cpclAttnDecode if op == "decode" else lib.cpclAttnPartial
        res = fn(h, ctypes.byref(b), qa.ptr, ka.ptr, va.ptr if va else None, oa.ptr, la.ptr, _stream(mem, qa))
        self.comm._check(res, "cpclAttnDecode" if op == "decode" else "cpclAttnPartial")
        del keep
        return out, lse

    def _combine(self, partial_out, partial_lse, out, lse):
        h = self._live()
        mem = self.comm.mem
        H, G = self.num_qo_heads, self.gathered_heads
        try:
            pa = _tensor(partial_out, "partial_out", mem, self.q_dtype, (None, G, self.head_dim_vo))
            T = pa.shape[0]
            pla = _tensor(partial_lse, "partial_lse", mem, "float32", (T, G), pa)
            if out is None:
                out = _empty_like(pa, (T, H, self.head_dim_vo), self.q_dtype)
            oa = _tensor(out, "out", mem, self.q_dtype, (T, H, self.head_dim_vo), pa)
            if lse is None:
                lse = _empty_like(pa, (T, H), "float32")
            la = _tensor(lse, "lse", mem, "float32", (T, H), pa)
        except _ArgError as e:
            self._fail_collective("combine")
            raise CpclError(Result.INVALID_ARGUMENT, f"rank {self.comm.rank}: {e}", "AttnPlan.combine") from None
        except Exception:
            self._fail_collective("combine")
            raise
        res = lib.cpclAttnCombine(h, T, pa.ptr, pla.ptr, oa.ptr, la.ptr, _stream(mem, pa))
        self.comm._check(res, "cpclAttnCombine")
        return out, lse

    def _prefill(self, q, k_new, v_new, k_cache, v_cache, context_lens, new_lens, block_table, query_start, out,
                 lse):
        h = self._live()
        mem = self.comm.mem
        H = self.num_qo_heads
        try:
            qa = _tensor(q, "q", mem, self.q_dtype, (None, H, self.head_dim_qk))
            T = qa.shape[0]
            ka, va, kc, vc, _ = self._kv_args(k_new, v_new, k_cache, v_cache, mem, rows=T, like=qa)
            # lengths and row offsets in host memory on every plan (on CUDA plans the host lays the
            # step out from them); the block table in the plan's memory
            cl = _host_index(context_lens, "context_lens")
            if len(cl.shape) != 1:
                raise _ArgError(f"context_lens has shape {list(cl.shape)}: it must be [num_seqs]")
            S = cl.shape[0]
            nl = _host_index(new_lens, "new_lens")
            if nl.shape != (S,):
                raise _ArgError(f"new_lens has shape {list(nl.shape)}: it must be [num_seqs = {S}]")
            bt = _index(block_table, "block_table", mem, qa)
            if len(bt.shape) != 2 or bt.shape[0] != S:
                raise _ArgError(f"block_table has shape {list(bt.shape)}: it must be [num_seqs = {S}, max_pages]")
            if query_start is None:
                raise _ArgError("query_start is None: prefill rows need their offsets ([num_seqs + 1])")
            qs = _host_index(query_start, "query_start")
            if qs.shape != (S + 1,):
                raise _ArgError(f"query_start has shape {list(qs.shape)}: it must be [num_seqs + 1 = {S + 1}]")
            if out is None:
                out = _empty_like(qa, (T, H, self.head_dim_vo), self.q_dtype)
            oa = _tensor(out, "out", mem, self.q_dtype, (T, H, self.head_dim_vo), qa)
            if lse is None:
                lse = _empty_like(qa, (T, H), "float32")
            la = _tensor(lse, "lse", mem, "float32", (T, H), qa)
        except Exception as e:
            lib.cpclAttnPrefill(h, None, None, None, None, None, None, None, None, None)  # tell the peers
            if isinstance(e, _ArgError):
                raise CpclError(Result.INVALID_ARGUMENT, f"rank {self.comm.rank}: {e}", "AttnPlan.prefill") from None
            raise
        b = _lib.PrefillBatch(ctypes.sizeof(_lib.PrefillBatch), S, T, qs.ptr, cl.ptr, nl.ptr, bt.ptr, bt.shape[1])
        res = lib.cpclAttnPrefill(h, ctypes.byref(b), qa.ptr, ka.ptr, va.ptr if va else None, kc.ptr,
                                  vc.ptr if vc else None, oa.ptr, la.ptr, _stream(mem, qa))
        self.comm._check(res, "cpclAttnPrefill")
        return out, lse

    def _kv_args(self, k_new, v_new, k_cache, v_cache, mem, rows_strided=False, rows=None, like=None):
        shape_k = (rows, self.num_kv_heads, self.head_dim_qk)
        ka = _row_view(k_new, "k_new", mem, self.kv_dtype, shape_k, like) if rows_strided else \
            _tensor(k_new, "k_new", mem, self.kv_dtype, shape_k, like)
        T = ka.shape[0]
        kc = _tensor(k_cache, "k_cache", mem, self.kv_dtype, (None, self.page_size, self.num_kv_heads,
                                                              self.head_dim_qk), ka)
        if self.latent_kv:
            if v_new is not None or v_cache is not None:
                raise _ArgError("v_new and v_cache must be None for an MLA plan (latent_kv)")
            return ka, None, kc, None, T
        shape_v = (T, self.num_kv_heads, self.head_dim_vo)
        va = _row_view(v_new, "v_new", mem, self.kv_dtype, shape_v, ka) if rows_strided else \
            _tensor(v_new, "v_new", mem, self.kv_dtype, shape_v, ka)
        vc = _tensor(v_cache, "v_cache", mem, self.kv_dtype, (kc.shape[0], self.page_size, self.num_kv_heads,
                                                              self.head_dim_vo), ka)
        return ka, va, kc, vc, T

    def _kv_store(self, k_new, v_new, k_cache, v_cache, seq_lens, block_table, query_start):
        h = self._live()
        mem = self.comm.mem
        try:
            ka, va, kc, vc, T = self._kv_args(k_new, v_new, k_cache, v_cache, mem)
            b, keep = self._batch(T, seq_lens, block_table, query_start, None, mem, ka)
        except _ArgError as e:  # not collective: nobody waits for this rank
            raise CpclError(Result.INVALID_ARGUMENT, f"rank {self.comm.rank}: {e}", "AttnPlan.kv_store") from None
        res = lib.cpclKvStore(h, ctypes.byref(b), ka.ptr, va.ptr if va else None, kc.ptr, vc.ptr if vc else None,
                              _stream(mem, ka))
        self.comm._check(res, "cpclKvStore")
        del keep

    def _kv_store_slots(self, k_new, v_new, k_cache, v_cache, slot_mapping):
        if not _lib.has("cpclKvStoreSlots"):
            raise NotImplementedError(f"this libcpcl has no cpclKvStoreSlots ({_lib.library_path})")
        h = self._live()
        mem = self.comm.mem
        try:
            ka, va, kc, vc, T = self._kv_args(k_new, v_new, k_cache, v_cache, mem, rows_strided=True)
            sm = _slots(slot_mapping, mem, ka)
            if sm.shape != (T,):
                raise _ArgError(f"slot_mapping has shape {list(sm.shape)}: it must be [T = {T}]")
        except _ArgError as e:
            raise CpclError(Result.INVALID_ARGUMENT, f"rank {self.comm.rank}: {e}",
                            "AttnPlan.kv_store_slots") from None
        res = lib.cpclKvStoreSlots(h, T, sm.ptr, ka.ptr, va.ptr if va else None, _row_stride(ka),
                                   _row_stride(va) if va else 0, kc.ptr, vc.ptr if vc else None, kc.shape[0],
                                   _stream(mem, ka))
        self.comm._check(res, "cpclKvStoreSlots")


def _row_view(x, what, mem, dtype, shape, like=None):
    """[T, Hkv, D] whose rows are contiguous but may be strided (a view into a fused qkv buffer)."""
    if x is None:
        raise _ArgError(f"{what} is None")
    if _is_tensor(x):
        inner_ok = x.dim() == 3 and x.stride(2) == 1 and x.stride(1) == x.shape[2]
        stride = x.stride(0) if x.dim() == 3 else 0
    else:
        s = x.strides
        es = x.itemsize
        inner_ok = x.ndim == 3 and s[2] == es and s[1] == x.shape[2] * es and s[0] % es == 0
        stride = s[0] // es if x.ndim == 3 else 0
    a = _arr(x, what)
    if not _dtype_ok(a.dtype, dtype):
        raise _ArgError(f"{what} has dtype {a.dtype}, the plan wants {dtype}")
    if len(a.shape) != 3 or any(w is not None and s != w for s, w in zip(a.shape, shape)):
        raise _ArgError(f"{what} has shape {list(a.shape)}, the plan wants [T, {shape[1]}, {shape[2]}]")
    if not inner_ok or stride < shape[1] * shape[2]:
        raise _ArgError(f"{what}: each row [Hkv, D] must be contiguous (row stride {stride} elements)")
    _on(a, what, mem, like)
    a.row_stride = stride
    return a


def _row_stride(a):
    return a.row_stride


def _slots(x, mem, like):
    if _is_tensor(x):
        t = _torch()
        if x.dtype != t.int64 or not x.is_contiguous():
            x = x.to(t.int64).contiguous()
        a = _arr(x, "slot_mapping")
    else:
        import numpy as np
        a = _arr(np.ascontiguousarray(x, dtype=np.int64), "slot_mapping")
    _on(a, "slot_mapping", mem, like)
    return a


def _t_ints(*xs):
    """Index arrays as the torch ops take them: int32 tensors where they are (host lists/arrays
    become CPU tensors; the real op checks devices against the plan's memory). None stays None."""
    t = _torch()

    def conv(x):
        if x is None:
            return None
        if isinstance(x, t.Tensor):
            return x if x.dtype == t.int32 else x.to(t.int32)
        return t.as_tensor(x, dtype=t.int32)

    return tuple(conv(x) for x in xs)



# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------

def kv_local_len(seq_len, cp_size, cp_rank, interleave=1):
    """cpclKvLocalLen: tokens of a sequence of seq_len tokens held by rank cp_rank of cp_size with
    interleave runs of `interleave` tokens. A numpy array of lengths gives an array."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(seq_len, np.ndarray):
        return np.vectorize(lambda L: kv_local_len(int(L), cp_size, cp_rank, interleave), otypes=[np.int64])(seq_len)
    n = lib.cpclKvLocalLen(int(seq_len), int(cp_size), int(cp_rank), int(interleave))
    if n < 0:
        raise CpclError(Result.INVALID_ARGUMENT,
                        f"seq_len {seq_len}, cp_size {cp_size}, cp_rank {cp_rank}, interleave {interleave}: need "
                        "seq_len >= 0, cp_size >= 1, 0 <= cp_rank < cp_size, interleave >= 1", "cpclKvLocalLen")
    return n


def pcp_chunks(new_len, pcp, rank):
    """cpclPcpChunks (DESIGN.md §4.2): the two head-tail chunks of a prefill's new tokens PCP rank
    `rank` of `pcp` holds, as ((start0, len0), (start1, len1)) within the new tokens."""
    if not _lib.has("cpclPcpChunks"):
        raise NotImplementedError(f"cpcl.pcp_chunks: this libcpcl has no cpclPcpChunks yet ({_lib.library_path})")
    start, length = (ctypes.c_int64 * 2)(), (ctypes.c_int64 * 2)()
    n = lib.cpclPcpChunks(int(new_len), int(pcp), int(rank), start, length)
    if n < 0:
        raise CpclError(Result.INVALID_ARGUMENT,
                        f"new_len {new_len}, pcp {pcp}, rank {rank}: need new_len >= 0, pcp >= 1, 0 <= rank < pcp",
                        "cpclPcpChunks")
    return (start[0], length[0]), (start[1], length[1])
