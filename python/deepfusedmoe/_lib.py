"""ctypes bindings of include/dfm.h, and the loading of libdfm.so.

No compiled Python extension: one native build of the library serves every
Python version. The library is found, in this order:

1. ``$DFM_LIBRARY`` (a path to libdfm.so), if set;
2. ``libdfm.so`` next to this file (what ``pip install .`` ships);
3. ``../../build/libdfm.so`` from this file (the build tree, with
   ``PYTHONPATH=python`` and ``make lib``).

A CUDA build of libdfm.so links ``libnccl.so.2``; the NCCL device API it uses
needs NCCL >= 2.28.7, which torch's CUDA wheels carry (the ``nvidia.nccl``
package) while older copies may sit in the system library folder. Before the
library is loaded, torch's copy is loaded with RTLD_GLOBAL, so the dynamic
linker binds libdfm.so to it (a library already loaded under the soname
``libnccl.so.2`` is reused).

This module holds only the C surface: structures, prototypes, status codes
and the mapping of a failed status to a Python exception.
"""
import ctypes
import os
import struct
import threading

# ---- status codes and exceptions (dfm_status_t) ----------------------------

SUCCESS = 0
ERROR_INVALID_ARGUMENT = 1
ERROR_INVALID_USAGE = 2
ERROR_OUT_OF_MEMORY = 3
ERROR_TIMEOUT = 4
ERROR_MISMATCH = 5
ERROR_INVALID_EXPERT = 6
ERROR_UNSUPPORTED = 7
ERROR_SYSTEM = 8
ERROR_INTERNAL = 9

STATUS_NAMES = {
    SUCCESS: "DFM_SUCCESS",
    ERROR_INVALID_ARGUMENT: "DFM_ERROR_INVALID_ARGUMENT",
    ERROR_INVALID_USAGE: "DFM_ERROR_INVALID_USAGE",
    ERROR_OUT_OF_MEMORY: "DFM_ERROR_OUT_OF_MEMORY",
    ERROR_TIMEOUT: "DFM_ERROR_TIMEOUT",
    ERROR_MISMATCH: "DFM_ERROR_MISMATCH",
    ERROR_INVALID_EXPERT: "DFM_ERROR_INVALID_EXPERT",
    ERROR_UNSUPPORTED: "DFM_ERROR_UNSUPPORTED",
    ERROR_SYSTEM: "DFM_ERROR_SYSTEM",
    ERROR_INTERNAL: "DFM_ERROR_INTERNAL",
}

QUANT_FP8, QUANT_INT8, QUANT_BF16 = 0, 1, 2
QUANT_IDS = {"fp8": QUANT_FP8, "int8": QUANT_INT8, "bf16": QUANT_BF16}
QUANT_NAMES = {v: k for k, v in QUANT_IDS.items()}
QUANT_MASK_ALL = 7

BACKEND_CPU, BACKEND_CUDA = 0, 1
BACKEND_IDS = {"cpu": BACKEND_CPU, "cuda": BACKEND_CUDA}

# dfm_path_t: how fused_deep_moe runs on CUDA (config.path)
PATH_DEFAULT, PATH_FUSED_KERNEL, PATH_PIPELINE = 0, 1, 2
PATH_IDS = {"default": PATH_DEFAULT, "kernel": PATH_FUSED_KERNEL, "pipeline": PATH_PIPELINE}
PATH_NAMES = {v: k for k, v in PATH_IDS.items()}

UNIQUE_ID_BYTES = 256
NCCL_MIN_VERSION = 22807  # 2.28.7, as ncclGetVersion() encodes it


class DFMError(RuntimeError):
    """A call into libdfm failed. ``status`` is the dfm_status_t value."""

    def __init__(self, message, status=ERROR_INTERNAL):
        super().__init__(message)
        self.status = status

    @property
    def status_name(self):
        return STATUS_NAMES.get(self.status, str(self.status))


class DFMInvalidArgumentError(DFMError, ValueError):
    """The library rejected an argument (DFM_ERROR_INVALID_ARGUMENT)."""


class DFMTimeoutError(DFMError, TimeoutError):
    """A peer did not arrive in time; the buffer is unusable from now on."""


class DFMOutOfMemoryError(DFMError, MemoryError):
    """The buffers of a configuration could not be allocated."""


class DFMAsyncError(DFMError):
    """The asynchronous error of SPEC section 7, seen by check_async_error()
    or at the start of the next call: DFM_ERROR_INVALID_EXPERT (some slot named
    an expert outside [-1, E) and was dropped; cleared once reported) or
    DFM_ERROR_TIMEOUT (fatal: recreate the Buffer)."""


_STATUS_CLASS = {
    ERROR_INVALID_ARGUMENT: DFMInvalidArgumentError,
    ERROR_TIMEOUT: DFMTimeoutError,
    ERROR_OUT_OF_MEMORY: DFMOutOfMemoryError,
}


def error_for(status, where, message):
    """The exception for a failed status; message is the library's text."""
    cls = _STATUS_CLASS.get(status, DFMError)
    text = "%s failed: %s" % (where, STATUS_NAMES.get(status, str(status)))
    if message:
        text += ": " + message
    return cls(text, status)


# ---- structures ---------------------------------------------------------------

c_int, c_uint, c_double, c_size_t = ctypes.c_int, ctypes.c_uint, ctypes.c_double, ctypes.c_size_t
c_void_p, c_char_p = ctypes.c_void_p, ctypes.c_char_p
c_int64, c_uint64 = ctypes.c_int64, ctypes.c_uint64


class Config(ctypes.Structure):
    """dfm_config_t"""

    _fields_ = [
        ("size", c_size_t),
        ("version", c_uint),
        ("backend", c_int),
        ("num_ranks", c_int),
        ("hidden", c_int),
        ("inter", c_int),
        ("num_experts", c_int),
        ("max_topk", c_int),
        ("num_max_dispatch_tokens_per_rank", c_int),
        ("quant_modes", c_uint),
        ("timeout_s", c_double),
        ("device", c_int),
        ("path", c_int),
    ]


class UniqueId(ctypes.Structure):
    """dfm_unique_id_t"""

    _fields_ = [("internal", ctypes.c_char * UNIQUE_ID_BYTES)]


class MoeArgs(ctypes.Structure):
    """dfm_moe_args_t"""

    _fields_ = [
        ("x", c_void_p),
        ("topk_idx", c_void_p),
        ("topk_weights", c_void_p),
        ("num_tokens", c_int),
        ("num_topk", c_int),
        ("quant", c_int),
        ("w1", c_void_p),
        ("w1_scale", c_void_p),
        ("w2", c_void_p),
        ("w2_scale", c_void_p),
        ("out", c_void_p),
        ("ep_recv_count", c_void_p),
        ("stream", c_void_p),
    ]


class Handle(ctypes.Structure):
    """dfm_handle_t"""

    _fields_ = [
        ("seq", c_uint64),
        ("num_tokens", c_int),
        ("num_topk", c_int),
        ("quant", c_int),
    ]


class DispatchArgs(ctypes.Structure):
    """dfm_dispatch_args_t"""

    _fields_ = [
        ("x", c_void_p),
        ("topk_idx", c_void_p),
        ("num_tokens", c_int),
        ("num_topk", c_int),
        ("quant", c_int),
        ("recv_x", c_void_p),
        ("recv_scale", c_void_p),
        ("recv_count", c_void_p),
        ("layout_range", c_void_p),
        ("recv_src_info", c_void_p),
        ("ep_recv_count", c_void_p),
        ("stream", c_void_p),
    ]


class CombineArgs(ctypes.Structure):
    """dfm_combine_args_t"""

    _fields_ = [
        ("y", c_void_p),
        ("topk_idx", c_void_p),
        ("topk_weights", c_void_p),
        ("handle", c_void_p),  # const dfm_handle_t *: ctypes.addressof() of a Handle
        ("out", c_void_p),
        ("stream", c_void_p),
    ]


def field_writer(cls):
    """A function ``write(instance, 0, *values)`` that sets every field of the
    ctypes Structure ``cls`` at once, in field order (pointers as ints, 0 for
    NULL): one struct.pack_into over the instance's memory, where setting the
    fields one by one costs a ctypes attribute set each (the per-call argument
    structs, refilled by every operator call). The layout is checked against
    ctypes' own, field by field."""
    fmt = "@" + "".join(t._type_ for _, t in cls._fields_)
    for i, (name, t) in enumerate(cls._fields_):
        offset = struct.calcsize(fmt[:i + 2]) - ctypes.sizeof(t)
        if offset != getattr(cls, name).offset:
            raise AssertionError("%s.%s: struct offset %d != ctypes offset %d"
                                 % (cls.__name__, name, offset, getattr(cls, name).offset))
    tail = ctypes.sizeof(cls) - struct.calcsize(fmt)  # the padding after the last field
    packer = struct.Struct(fmt + "%dx" % tail if tail > 0 else fmt)
    if packer.size != ctypes.sizeof(cls):
        raise AssertionError("%s: struct size %d != ctypes size %d"
                             % (cls.__name__, packer.size, ctypes.sizeof(cls)))
    return packer.pack_into


_PROTOTYPES = {
    "dfm_status_string": (c_char_p, [c_int]),
    "dfm_get_version": (c_int, []),
    "dfm_backend_available": (c_int, [c_int]),
    "dfm_get_unique_id": (c_int, [ctypes.POINTER(Config), ctypes.POINTER(UniqueId)]),
    "dfm_config_check": (c_int, [ctypes.POINTER(Config), c_char_p, c_size_t]),
    "dfm_ctx_create": (
        c_int,
        [ctypes.POINTER(c_void_p), ctypes.POINTER(Config), ctypes.POINTER(UniqueId), c_int,
         c_char_p, c_size_t],
    ),
    "dfm_ctx_destroy": (None, [c_void_p]),
    "dfm_ctx_last_error": (c_char_p, [c_void_p]),
    "dfm_ctx_rank": (c_int, [c_void_p]),
    "dfm_buffer_size_hint": (c_int, [ctypes.POINTER(Config), ctypes.POINTER(c_size_t)]),
    "dfm_get_async_error": (c_int, [c_void_p, ctypes.POINTER(c_int)]),
    "dfm_ctx_get_path": (c_int, [c_void_p, ctypes.POINTER(c_int)]),
    "dfm_fused_moe": (c_int, [c_void_p, ctypes.POINTER(MoeArgs)]),
    "dfm_dispatch": (c_int, [c_void_p, ctypes.POINTER(DispatchArgs), ctypes.POINTER(Handle)]),
    "dfm_combine": (c_int, [c_void_p, ctypes.POINTER(CombineArgs)]),
    "dfm_weights_prepare_w13": (c_int, [c_void_p, c_int, c_int, c_int, c_int, c_void_p, c_void_p]),
    "dfm_weights_prepare_w2": (c_int, [c_void_p, c_int, c_int, c_int, c_int, c_void_p, c_void_p]),
    "dfm_permuted_channel_source": (c_int, [c_int, c_int]),
}


# ---- loading ----------------------------------------------------------------------

_lock = threading.Lock()
_lib = None
_lib_path = None
_nccl_note = None


def _candidates():
    env = os.environ.get("DFM_LIBRARY")
    if env:
        return [os.path.abspath(env)]
    here = os.path.dirname(os.path.abspath(__file__))
    return [
        os.path.join(here, "libdfm.so"),
        os.path.normpath(os.path.join(here, "..", "..", "build", "libdfm.so")),
    ]


def _torch_nccl_path():
    """Path of libnccl.so.2 in torch's environment (the nvidia.nccl package), or None."""
    try:
        import nvidia.nccl as pkg  # noqa: F401  (pip's nvidia-nccl-cu* wheel)
    except ImportError:
        return None
    dirs = list(getattr(pkg, "__path__", []) or [])
    if getattr(pkg, "__file__", None):
        dirs.insert(0, os.path.dirname(pkg.__file__))
    for d in dirs:
        p = os.path.join(d, "lib", "libnccl.so.2")
        if os.path.exists(p):
            return p
    return None


def _preload_nccl():
    """Load torch's NCCL with RTLD_GLOBAL before libdfm.so (CUDA torch only)."""
    global _nccl_note
    try:
        import torch
    except ImportError:
        return
    if getattr(torch.version, "cuda", None) is None:
        return
    path = _torch_nccl_path()
    if path is None:
        _nccl_note = "torch's nvidia.nccl package was not found; using the system libnccl.so.2"
        return
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        _nccl_note = "preloaded " + path
    except OSError as e:
        _nccl_note = "could not preload %s: %s" % (path, e)


def loaded_nccl():
    """(version code, path) of the libnccl.so.2 loaded in this process, or (None, None)."""
    path = None
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                if "libnccl.so" in line:
                    path = line.split()[-1]
                    break
    except OSError:
        pass
    if path is None:
        return None, None
    try:
        nccl = ctypes.CDLL(path)
        v = c_int(0)
        nccl.ncclGetVersion(ctypes.byref(v))
        return v.value, path
    except (OSError, AttributeError):
        return None, path


def nccl_version_string(code):
    if code is None:
        return "unknown"
    if code >= 10000:
        return "%d.%d.%d" % (code // 10000, code // 100 % 100, code % 100)
    return "%d.%d.%d" % (code // 1000, code // 100 % 10, code % 100)


def lib():
    """The loaded library (loaded on first use)."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        _preload_nccl()
        tried = []
        for path in _candidates():
            if not os.path.exists(path):
                tried.append(path + " (not found)")
                continue
            try:
                handle = ctypes.CDLL(path)
            except OSError as e:
                tried.append("%s (%s)" % (path, e))
                continue
            for name, (restype, argtypes) in _PROTOTYPES.items():
                fn = getattr(handle, name)
                fn.restype = restype
                fn.argtypes = argtypes
            _lib_path = path
            _lib = handle
            return _lib
        msg = "deepfusedmoe: cannot load libdfm.so; tried: " + "; ".join(tried)
        msg += (". Build it with `make lib` (then PYTHONPATH=python finds build/libdfm.so),"
                " install the package with `pip install .`, or set DFM_LIBRARY=/path/to/libdfm.so.")
        if _nccl_note:
            msg += " NCCL: " + _nccl_note + "."
        raise ImportError(msg)


def library_path():
    lib()
    return _lib_path


def status_string(status):
    s = lib().dfm_status_string(status)
    return s.decode() if s else ""


def last_error(ctx):
    s = lib().dfm_ctx_last_error(ctx)
    return s.decode(errors="replace") if s else ""


def check_status(status, where, ctx=None):
    """Raise the exception of a failed status (with the context's message)."""
    if status != SUCCESS:
        raise error_for(status, where, last_error(ctx) if ctx else status_string(status))
