"""Loading libcpcl, the ctypes mirrors of cpcl.h's structs and their check against the library.

The structs are not trusted: at import every mirrored struct is compared, field by field (name,
offset, size) and in total size, with what the library reports through cpclGetStructLayout /
cpclGetStructField. A library built from a different cpcl.h is refused with the difference named.
"""

import ctypes
import ctypes.util
import enum
import os

__all__ = ["lib", "CpclError", "Result", "check", "OobAllgather", "Oob", "Config", "AttnDesc", "Batch",
           "DTYPES", "MEM_TYPES", "library_path"]


class Result(enum.IntEnum):
    """cpclResult_t."""

    SUCCESS = 0
    UNHANDLED_CUDA_ERROR = 1
    SYSTEM_ERROR = 2
    INTERNAL_ERROR = 3
    INVALID_ARGUMENT = 4
    INVALID_USAGE = 5
    REMOTE_ERROR = 6
    IN_PROGRESS = 7
    TIMEOUT = 8
    UNSUPPORTED = 9


DTYPES = {"bfloat16": 0, "float16": 1, "float32": 2}  # cpclDataType_t
MEM_TYPES = {"host": 0, "cuda": 1}  # cpclMemType_t


class CpclError(RuntimeError):
    """A cpcl call failed. ``code`` is the cpclResult_t (a :class:`Result`), ``message`` the
    library's detail (cpclGetLastError: it names the argument and its value), ``func`` the C
    function (or Python method) that failed."""

    def __init__(self, code, message, func=None):
        self.code = Result(code) if code in Result._value2member_map_ else code
        self.message = message
        self.func = func
        name = self.code.name.lower() if isinstance(self.code, Result) else str(code)
        super().__init__(f"{func + ': ' if func else ''}{message} [{name}]")


OobAllgather = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


class Oob(ctypes.Structure):
    _fields_ = [("allgather", OobAllgather), ("ctx", ctypes.c_void_p), ("rank", ctypes.c_int),
                ("nranks", ctypes.c_int)]


class Config(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("dcpSize", ctypes.c_int), ("kvInterleave", ctypes.c_int),
                ("memType", ctypes.c_int), ("transport", ctypes.c_char_p), ("timeoutMs", ctypes.c_int)]


class AttnDesc(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("numQoHeads", ctypes.c_int), ("numKvHeads", ctypes.c_int),
                ("headDimQk", ctypes.c_int), ("headDimVo", ctypes.c_int), ("pageSize", ctypes.c_int),
                ("smScale", ctypes.c_float), ("qType", ctypes.c_int), ("kvType", ctypes.c_int),
                ("latentKv", ctypes.c_int), ("lseBase2", ctypes.c_int), ("algo", ctypes.c_char_p),
                ("topk", ctypes.c_int), ("prefillAlgo", ctypes.c_char_p)]


_i32p = ctypes.POINTER(ctypes.c_int32)


class Batch(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("numSeqs", ctypes.c_int), ("numTokens", ctypes.c_int),
                ("queryStart", ctypes.c_void_p), ("seqLens", ctypes.c_void_p), ("blockTable", ctypes.c_void_p),
                ("maxPagesPerSeq", ctypes.c_int), ("topkIndices", ctypes.c_void_p)]


class PrefillBatch(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("numSeqs", ctypes.c_int), ("numTokens", ctypes.c_int),
                ("queryStart", ctypes.c_void_p), ("contextLens", ctypes.c_void_p), ("newLens", ctypes.c_void_p),
                ("blockTable", ctypes.c_void_p), ("maxPagesPerSeq", ctypes.c_int)]


_MIRRORS = {"cpclOob_t": Oob, "cpclConfig_t": Config, "cpclAttnDesc_t": AttnDesc, "cpclBatch_t": Batch}
# checked when the library has the function that takes them
_OPTIONAL_MIRRORS = {"cpclPrefillBatch_t": (PrefillBatch, "cpclAttnPrefill")}


def _candidates():
    env = os.environ.get("CPCL_LIBRARY")
    if env:
        return [env]  # an explicit choice is never second-guessed
    here = os.path.dirname(os.path.abspath(__file__))
    out = [os.path.join(here, name) for name in sorted(os.listdir(here)) if name.startswith("libcpcl.so")]
    found = ctypes.util.find_library("cpcl")
    if found:
        out.append(found)
    out.append("libcpcl.so")
    return out


def _load():
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL), path
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise ImportError("cpcl: cannot load libcpcl (set CPCL_LIBRARY to its path, or pip install the package "
                      "so that it ships one): " + "; ".join(errors))


lib, library_path = _load()

_c = ctypes
_sigs = {
    "cpclGetErrorString": (_c.c_char_p, [_c.c_int]),
    "cpclGetLastError": (_c.c_char_p, [_c.c_void_p]),
    "cpclGetVersion": (_c.c_int, [_c.POINTER(_c.c_int)]),
    "cpclGetBuildConfig": (_c.c_char_p, []),
    "cpclCommInitOob": (_c.c_int, [_c.POINTER(_c.c_void_p), _c.POINTER(Oob), _c.POINTER(Config)]),
    "cpclCommDestroy": (_c.c_int, [_c.c_void_p]),
    "cpclCommAbort": (_c.c_int, [_c.c_void_p]),
    "cpclCommRank": (_c.c_int, [_c.c_void_p, _c.POINTER(_c.c_int)]),
    "cpclCommSize": (_c.c_int, [_c.c_void_p, _c.POINTER(_c.c_int)]),
    "cpclCommAxes": (_c.c_int, [_c.c_void_p] + [_c.POINTER(_c.c_int)] * 4),
    "cpclCommGetAsyncError": (_c.c_int, [_c.c_void_p, _c.POINTER(_c.c_int)]),
    "cpclAttnPlanCreate": (_c.c_int, [_c.POINTER(_c.c_void_p), _c.c_void_p, _c.POINTER(AttnDesc), _c.c_int]),
    "cpclAttnPlanCreateWithWorkspace": (_c.c_int, [_c.POINTER(_c.c_void_p), _c.c_void_p, _c.POINTER(AttnDesc),
                                                   _c.c_int, _c.c_void_p, _c.c_size_t]),
    "cpclAttnPlanWorkspaceBytes": (_c.c_int, [_c.c_void_p, _c.POINTER(_c.c_size_t)]),
    "cpclAttnPlanDestroy": (_c.c_int, [_c.c_void_p]),
    "cpclAttnPlanGetAsyncError": (_c.c_int, [_c.c_void_p, _c.POINTER(_c.c_int)]),
    "cpclAttnDecode": (_c.c_int, [_c.c_void_p, _c.POINTER(Batch)] + [_c.c_void_p] * 6),
    "cpclAttnPartial": (_c.c_int, [_c.c_void_p, _c.POINTER(Batch)] + [_c.c_void_p] * 6),
    "cpclAttnCombine": (_c.c_int, [_c.c_void_p, _c.c_int] + [_c.c_void_p] * 5),
    "cpclKvLocalLen": (_c.c_int64, [_c.c_int64, _c.c_int, _c.c_int, _c.c_int]),
    "cpclKvStore": (_c.c_int, [_c.c_void_p, _c.POINTER(Batch)] + [_c.c_void_p] * 5),
    "cpclGetStructLayout": (_c.c_int, [_c.c_char_p, _c.POINTER(_c.c_size_t), _c.POINTER(_c.c_int)]),
    "cpclGetStructField": (_c.c_int, [_c.c_char_p, _c.c_int, _c.POINTER(_c.c_char_p), _c.POINTER(_c.c_size_t),
                                      _c.POINTER(_c.c_size_t)]),
    # optional: bound when the library has them (see has())
    "cpclPcpChunks": (_c.c_int64, [_c.c_int64, _c.c_int, _c.c_int, _c.POINTER(_c.c_int64),
                                   _c.POINTER(_c.c_int64)]),
    "cpclAttnPrefill": (_c.c_int, [_c.c_void_p, _c.POINTER(PrefillBatch)] + [_c.c_void_p] * 8),
    "cpclKvStoreSlots": (_c.c_int, [_c.c_void_p, _c.c_int64, _c.c_void_p, _c.c_void_p, _c.c_void_p, _c.c_int64,
                                    _c.c_int64, _c.c_void_p, _c.c_void_p, _c.c_int64, _c.c_void_p]),
}
_OPTIONAL = {"cpclPcpChunks", "cpclKvStoreSlots", "cpclAttnPrefill", "cpclAttnPlanCreateWithWorkspace", "cpclAttnPlanWorkspaceBytes"}
_missing = []
for _name, (_res, _args) in _sigs.items():
    _fn = getattr(lib, _name, None)
    if _fn is None:
        if _name not in _OPTIONAL:
            _missing.append(_name)
        continue
    _fn.restype, _fn.argtypes = _res, _args
if _missing:
    raise ImportError(f"cpcl: {library_path} lacks {', '.join(_missing)}: it is older than this package")


def has(name):
    """Whether the loaded library exports C function `name` and the bindings can call it."""
    return getattr(lib, name, None) is not None and name not in globals().get("unusable", {})


def last_error(comm_handle=None):
    msg = lib.cpclGetLastError(comm_handle)
    return msg.decode(errors="replace") if msg else ""


def check(res, func, comm_handle=None):
    """Raises CpclError for a failed call, with the communicator's (or this thread's) last error."""
    if res != 0:
        msg = last_error(comm_handle) or lib.cpclGetErrorString(res).decode()
        raise CpclError(res, msg, func)


unusable = {}  # C function -> why the bindings will not call it (its struct's layout is unknown or differs)


def _check_layouts():
    problems = []
    mirrors = dict(_MIRRORS)
    mirrors.update({n: m for n, (m, fn) in _OPTIONAL_MIRRORS.items() if has(fn)})
    for cname, mirror in mirrors.items():
        optional = _OPTIONAL_MIRRORS.get(cname, (None, None))[1]
        size, nfields = ctypes.c_size_t(), ctypes.c_int()
        if lib.cpclGetStructLayout(cname.encode(), ctypes.byref(size), ctypes.byref(nfields)) != 0:
            if optional:  # the library has the function but no layout for its struct (src/abi.c)
                unusable[optional] = f"the library reports no layout of {cname}: {last_error()}"
            else:
                problems.append(f"{cname}: {last_error()}")
            continue
        mine = [(f[0], getattr(mirror, f[0]).offset, getattr(mirror, f[0]).size) for f in mirror._fields_]
        theirs = []
        for i in range(nfields.value):
            name, off, fsize = ctypes.c_char_p(), ctypes.c_size_t(), ctypes.c_size_t()
            check(lib.cpclGetStructField(cname.encode(), i, ctypes.byref(name), ctypes.byref(off),
                                         ctypes.byref(fsize)), "cpclGetStructField")
            theirs.append((name.value.decode(), off.value, fsize.value))
        if mine != theirs or ctypes.sizeof(mirror) != size.value:
            why = (f"{cname}: the library has size {size.value}, fields {theirs}; this package has size "
                   f"{ctypes.sizeof(mirror)}, fields {mine}")
            if optional:
                unusable[optional] = why
            else:
                problems.append(why)
    if problems:
        raise ImportError(f"cpcl: {library_path} was built from another cpcl.h than this package: "
                          + "; ".join(problems))


_check_layouts()


def version():
    v = ctypes.c_int()
    check(lib.cpclGetVersion(ctypes.byref(v)), "cpclGetVersion")
    return v.value
