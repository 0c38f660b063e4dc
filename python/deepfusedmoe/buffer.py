"""Buffer: one rank's share of a DeepFusedMoE world, DeepEP-style.

A Buffer is created collectively over a torch.distributed group, once, with
everything that sizes its buffers (SPEC section 6); afterwards each operator
call is collective over the same group and allocates nothing in the library.

- CUDA (group backend 'nccl'): rank 0 makes the world id (it wraps an NCCL
  unique id), broadcasts it over the group, and every rank joins on its
  current CUDA device. Operators are stream-ordered on the caller's current
  stream (or the buffer's own stream with ``async_finish=True``) and
  capturable in CUDA graphs.
- CPU (group backend 'gloo'): the same, and the world is a shared-memory
  segment of the ranks (processes on one host). Operators complete before
  they return.

Every tensor argument is checked (type, dtype, device, shape, strides) before
anything is launched; a bad one raises TypeError (wrong type or dtype) or
ValueError (anything else) naming the argument.
"""
import ctypes

import torch
import torch.distributed as dist

from . import _lib
from .utils import (EventOverlap, code_dtype, code_dtypes, current_raw_stream,
                    make_tensor_guard, noop_hook, parse_quant, parse_quant_modes,
                    reject_recv_hook, stream_event)

ALL_QUANT_MODES = ("fp8", "int8", "bf16")


class _SeedDefaultTrue(int):
    """The default of ``use_fp8``: behaves as True and prints as True, but lets
    the operator tell an explicit ``use_fp8=True`` (which contradicts
    ``quant='int8'`` or ``'bf16'``) from the default (which ``quant`` overrides)."""

    def __repr__(self):
        return "True"

    __str__ = __repr__


_USE_FP8_DEFAULT = _SeedDefaultTrue(1)

# Read by every call: module constants are found faster than torch's attributes.
_Tensor = torch.Tensor
_BFLOAT16, _INT64, _FLOAT32, _INT32 = torch.bfloat16, torch.int64, torch.float32, torch.int32
_BF16, _F32, _I32, _I64 = (torch.bfloat16,), (torch.float32,), (torch.int32,), (torch.int64,)
_SUCCESS = _lib.SUCCESS
# write(args_struct, 0, *every field in the order of the C struct)
_write_moe_args = _lib.field_writer(_lib.MoeArgs)
_write_dispatch_args = _lib.field_writer(_lib.DispatchArgs)
_write_combine_args = _lib.field_writer(_lib.CombineArgs)
# A guard's tensors must be distinct objects, and an optional argument left None
# must not match a tensor: None stands in a guard as one of these (a form that no
# argument may have: bool, no element), one per optional argument.
_NO_S1, _NO_S2, _NO_EP, _NO_OUT = (torch.empty(0, dtype=torch.bool) for _ in range(4))
_MAX_GUARDS = 1024  # per Buffer and operator; past it the cache starts over


def _remember_guard(guards, key, ts):
    """Keep a guard of the tensors ts (that just passed a quick test) under key."""
    if len(guards) >= _MAX_GUARDS:
        guards.clear()
    # with the tensors' types: the guard compares them by address
    guards[key] = (make_tensor_guard(ts), tuple(map(type, ts)))


def _is_dense(t, dtypes, shape, device):
    """Whether t passes every check of Buffer._tensor: a tensor of one of dtypes,
    of this shape, on device, contiguous. Never raises."""
    return (isinstance(t, _Tensor) and t.dtype in dtypes and t.shape == shape
            and t.device == device and t.is_contiguous())


def _plain_mode(use_fp8, quant):
    """The mode a call asks for, where it is spelled the usual way (no quant, or a
    name with use_fp8 left at its default); None otherwise (_mode_of then decides
    it, or says what contradicts what)."""
    if quant is None:
        return "fp8" if use_fp8 else "bf16"
    if use_fp8 is _USE_FP8_DEFAULT and type(quant) is str:
        return quant
    return None


def _mode_of(use_fp8, quant, where):
    if quant is None:
        return "fp8" if use_fp8 else "bf16"
    q = parse_quant(quant, where + ": quant")
    if use_fp8 is _USE_FP8_DEFAULT:
        return q
    if use_fp8 and q != "fp8":
        raise ValueError("%s: quant=%r contradicts use_fp8=True (use_fp8=True means the FP8 "
                         "path; leave use_fp8 at its default when passing quant)" % (where, q))
    if not use_fp8 and q != "bf16":
        raise ValueError("%s: quant=%r contradicts use_fp8=False (use_fp8=False means the "
                         "unquantized bf16 path)" % (where, q))
    return q


def _global_rank(group, group_rank):
    if group is None or group is dist.group.WORLD:
        return group_rank
    if hasattr(dist, "get_global_rank"):
        return dist.get_global_rank(group, group_rank)
    return dist.distributed_c10d._get_global_rank(group, group_rank)  # torch < 2.0


def _config(backend, num_ranks, hidden, inter, num_experts, max_topk, num_max, quant_mask,
            timeout_s, device, path="default"):
    c = _lib.Config()
    c.size = ctypes.sizeof(_lib.Config)
    c.version = _lib.lib().dfm_get_version()
    c.backend = _lib.BACKEND_IDS[backend]
    c.num_ranks = num_ranks
    c.hidden = hidden
    c.inter = inter
    c.num_experts = num_experts
    c.max_topk = max_topk
    c.num_max_dispatch_tokens_per_rank = num_max
    c.quant_modes = quant_mask
    c.timeout_s = float(timeout_s)
    c.device = device
    c.path = _lib.PATH_IDS[path]
    return c


_CONFIG_FIELDS = ("version", "backend", "num_ranks", "hidden", "inter", "num_experts", "max_topk",
                  "num_max_dispatch_tokens_per_rank", "quant_modes", "path")


def config_problem(cfg):
    """Why a configuration is outside the limits of SPEC section 6 (the library's
    message, naming the field), or None."""
    err = ctypes.create_string_buffer(512)
    if _lib.lib().dfm_config_check(ctypes.byref(cfg), err, len(err)) == 0:
        return None
    return err.value.decode(errors="replace")


def get_buffer_size_hint(num_max_dispatch_tokens_per_rank, hidden, num_experts, num_ranks, *,
                         inter, max_topk=8, quant_modes=ALL_QUANT_MODES, backend="cpu"):
    """Bytes of buffer memory per rank that a configuration needs (dfm_buffer_size_hint)."""
    if backend not in _lib.BACKEND_IDS:
        raise ValueError("backend: %r is not 'cpu' or 'cuda'" % (backend,))
    c = _config(backend, int(num_ranks), int(hidden), int(inter), int(num_experts), int(max_topk),
                int(num_max_dispatch_tokens_per_rank), parse_quant_modes(quant_modes), 30.0, -1)
    problem = config_problem(c)
    if problem:
        raise ValueError("get_buffer_size_hint: " + problem)
    n = ctypes.c_size_t(0)
    st = _lib.lib().dfm_buffer_size_hint(ctypes.byref(c), ctypes.byref(n))
    _lib.check_status(st, "get_buffer_size_hint")
    return n.value


class Buffer:
    """One rank's buffers for the fused MoE operator and its dispatch/combine.

    Collective constructor: every rank of ``group`` calls it with the same
    arguments.

    Args:
        group: a torch.distributed process group (None: the default group).
        num_max_dispatch_tokens_per_rank: the largest T any rank passes (1..1024).
        hidden: H (256..16384, a multiple of 128).
        num_experts: E, global expert count (<= 1024, a multiple of the group size).
        inter: I, the experts' intermediate width (a multiple of 64, 2I <= 16384).
        max_topk: the largest K of any call (1..16).
        quant_modes: modes the buffer is sized for: names ('fp8', 'int8', 'bf16')
            or a DFM_QUANT_MASK bit mask.
        timeout_s: bound on every wait on a peer (SPEC section 7).
        backend: 'cuda', 'cpu', or None: 'cuda' when the group's backend is NCCL.
        path: how fused_deep_moe runs on CUDA: 'kernel' (one persistent kernel
            per call), 'pipeline' (dispatch, GEMM and combine launches; can be a
            few percent faster on prefill-sized calls), or 'default' (the kernel
            unless DFM_CUDA_FUSED=0). The same on every rank. The CPU backend
            has one way and takes any of them.
        debug: check expert ids on the host before each call (synchronizes).
    """

    def __init__(self, group, num_max_dispatch_tokens_per_rank, hidden, num_experts, *, inter,
                 max_topk=8, quant_modes=ALL_QUANT_MODES, timeout_s=30.0, backend=None,
                 path="default", debug=False):
        self._ctx = None
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("Buffer: torch.distributed is not initialized "
                               "(call torch.distributed.init_process_group first)")
        self.group = group if group is not None else dist.group.WORLD
        self.rank = dist.get_rank(self.group)
        self.group_size = dist.get_world_size(self.group)
        group_backend = str(dist.get_backend(self.group)).lower()
        if backend is None:
            backend = "cuda" if group_backend == "nccl" else "cpu"
        if backend not in _lib.BACKEND_IDS:
            raise ValueError("backend: %r is not 'cpu', 'cuda' or None" % (backend,))
        self.backend = backend
        if path not in _lib.PATH_IDS:
            raise ValueError("path: %r is not 'default', 'kernel' or 'pipeline'" % (path,))
        self.path = path
        self.num_max_dispatch_tokens_per_rank = int(num_max_dispatch_tokens_per_rank)
        self.hidden = int(hidden)
        self.inter = int(inter)
        self.num_experts = int(num_experts)
        self.max_topk = int(max_topk)
        self.timeout_s = float(timeout_s)
        self.debug = bool(debug)
        self.quant_mask = parse_quant_modes(quant_modes)
        self.quant_modes = tuple(q for q in ALL_QUANT_MODES
                                 if self.quant_mask & (1 << _lib.QUANT_IDS[q]))
        R = self.group_size
        self.num_local_experts = self.num_experts // R

        lib = _lib.lib()
        self._lib = lib
        if backend == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())
            device_ordinal = self.device.index
        else:
            self.device = torch.device("cpu")
            device_ordinal = -1
        self._is_cuda = backend == "cuda"
        self._device_index = self.device.index
        comm_device = torch.device("cuda", torch.cuda.current_device()) \
            if group_backend == "nccl" else torch.device("cpu")

        cfg = _config(backend, R, self.hidden, self.inter, self.num_experts, self.max_topk,
                      self.num_max_dispatch_tokens_per_rank, self.quant_mask, self.timeout_s,
                      device_ordinal, path)
        self._config = cfg
        bad_config = config_problem(cfg)
        local_problem = bad_config or self._local_problem(lib, backend)

        # Every rank publishes its config row (and whether it can join at all);
        # every rank then names every difference, so all raise together.
        nfields = len(_CONFIG_FIELDS) + 2
        table = torch.zeros(R, nfields, dtype=torch.int64)
        table[self.rank, 0] = 1 if local_problem else 0
        for i, f in enumerate(_CONFIG_FIELDS):
            table[self.rank, 1 + i] = int(getattr(cfg, f))
        table[self.rank, nfields - 1] = int(round(cfg.timeout_s * 1000.0))
        self._all_reduce(table, comm_device, dist.ReduceOp.SUM)
        if local_problem:
            if bad_config:
                raise _lib.DFMInvalidArgumentError("Buffer: " + bad_config,
                                                   _lib.ERROR_INVALID_ARGUMENT)
            raise _lib.DFMError("Buffer: rank %d cannot join: %s" % (self.rank, local_problem),
                                _lib.ERROR_UNSUPPORTED)
        diffs = []
        bad = [r for r in range(R) if int(table[r, 0])]
        if bad:
            diffs.append("rank(s) %s cannot join (configuration, backend or NCCL; see their "
                         "error)" % bad)
        names = _CONFIG_FIELDS + ("timeout_s",)
        for r in range(1, R):
            for i, f in enumerate(names):
                root, theirs = int(table[0, 1 + i]), int(table[r, 1 + i])
                if root != theirs:
                    if f == "timeout_s":
                        root, theirs = root / 1000.0, theirs / 1000.0
                    diffs.append("%s: rank 0 has %s, rank %d has %s" % (f, root, r, theirs))
        if diffs:
            raise _lib.DFMError("Buffer: the ranks disagree, no world was formed: "
                                + "; ".join(diffs), _lib.ERROR_MISMATCH)

        # Rank 0 makes the world id and broadcasts it (with its status) over the group.
        msg = torch.zeros(1 + _lib.UNIQUE_ID_BYTES // 8, dtype=torch.int64)
        if self.rank == 0:
            uid = _lib.UniqueId()
            msg[0] = lib.dfm_get_unique_id(ctypes.byref(cfg), ctypes.byref(uid))
            msg[1:] = torch.frombuffer(bytearray(ctypes.string_at(
                ctypes.addressof(uid), _lib.UNIQUE_ID_BYTES)), dtype=torch.int64)
        t = msg.to(comm_device)
        dist.broadcast(t, src=_global_rank(self.group, 0), group=self.group)
        msg = t.cpu()
        root_status = int(msg[0])
        if root_status != _lib.SUCCESS:
            raise _lib.error_for(root_status, "Buffer: dfm_get_unique_id on rank 0",
                                 _lib.status_string(root_status))

        uid = _lib.UniqueId()
        id_words = msg[1:].contiguous()
        ctypes.memmove(ctypes.addressof(uid), id_words.data_ptr(), _lib.UNIQUE_ID_BYTES)
        ctx = ctypes.c_void_p()
        err = ctypes.create_string_buffer(512)
        st = lib.dfm_ctx_create(ctypes.byref(ctx), ctypes.byref(cfg), ctypes.byref(uid),
                                self.rank, err, len(err))
        ok = torch.zeros(R, dtype=torch.int64)
        ok[self.rank] = 0 if st == _lib.SUCCESS else 1
        self._all_reduce(ok, comm_device, dist.ReduceOp.SUM)
        if st != _lib.SUCCESS:
            raise _lib.error_for(st, "Buffer: dfm_ctx_create", err.value.decode(errors="replace"))
        if int(ok.sum()) != 0:
            lib.dfm_ctx_destroy(ctx)
            raise _lib.DFMError("Buffer: dfm_ctx_create failed on rank(s) %s (see their error)"
                                % [r for r in range(R) if int(ok[r])], _lib.ERROR_MISMATCH)
        self._ctx = ctx.value
        self._destroy_fn = lib.dfm_ctx_destroy
        taken = ctypes.c_int(-1)
        _lib.check_status(lib.dfm_ctx_get_path(self._ctx, ctypes.byref(taken)),
                          "Buffer: dfm_ctx_get_path")
        # how fused_deep_moe runs here: 'kernel' or 'pipeline' (what creation made of `path`)
        self.path_taken = _lib.PATH_NAMES[taken.value]

        # Per-call state, made once: the argument structs (refilled by every call),
        # the bound C entry points, and the expected shapes, strides and dtypes.
        self._moe_args = _lib.MoeArgs()
        self._moe_args_ref = ctypes.byref(self._moe_args)
        self._disp_args = _lib.DispatchArgs()
        self._disp_args_ref = ctypes.byref(self._disp_args)
        self._comb_args = _lib.CombineArgs()
        self._comb_args_ref = ctypes.byref(self._comb_args)
        self._async_status = ctypes.c_int(0)
        self._async_ref = ctypes.byref(self._async_status)
        self._fused_fn = lib.dfm_fused_moe
        self._dispatch_fn = lib.dfm_dispatch
        self._combine_fn = lib.dfm_combine
        self._get_async_fn = lib.dfm_get_async_error
        self._comm_stream = torch.cuda.Stream(self.device) if self._is_cuda else None
        G, H, I, M = self.num_local_experts, self.hidden, self.inter, \
            self.num_max_dispatch_tokens_per_rank
        self._shape_w1 = (G, H, 2 * I)
        self._stride_w1 = (2 * I * H, 1, H)
        self._shape_s1 = (G, 2 * I)
        self._shape_w2 = (G, H, I)
        self._shape_s2 = (G, H)
        self._shape_ep = (G * R,)
        self._shape_y = (G, R * M, H)
        self._code_dtypes = {q: code_dtypes(q) for q in ALL_QUANT_MODES}
        self._quant_id = dict(_lib.QUANT_IDS)
        # mode name -> (dfm_quant_t, accepted weight dtypes), for the buffer's modes only
        self._modes = {q: (self._quant_id[q], self._code_dtypes[q]) for q in self.quant_modes}
        recv_dtype = {"fp8": torch.uint8, "int8": torch.int8, "bf16": torch.bfloat16}
        # mode -> (dtype recv_x is allocated with, dtype it is returned as)
        self._recv_dtypes = {q: (recv_dtype[q], code_dtype(q)) for q in ALL_QUANT_MODES}
        # (T, K), mode -> (guard, the Python types it refers to): see fused_deep_moe
        self._fused_guards = {} if make_tensor_guard is not None else None
        self._combine_guards = {} if make_tensor_guard is not None else None  # (T, K) ->
        # what fused_deep_moe reads on every call, in one tuple
        self._fused_consts = (H, M, self.max_topk, self.num_experts, self.device, self._modes,
                              self._shape_w1, self._stride_w1, self._shape_s1, self._shape_w2,
                              self._shape_s2, self._shape_ep, self._fused_guards)
        self._call_consts = (self._get_async_fn, self._async_ref, self._async_status,
                             self._is_cuda, self._device_index)

    # ---- construction helpers ------------------------------------------------

    def _local_problem(self, lib, backend):
        """Why this rank cannot join (a string), or None."""
        if not lib.dfm_backend_available(_lib.BACKEND_IDS[backend]):
            return ("backend %r was not built into %s (build with CUDA=1 for the cuda backend)"
                    % (backend, _lib.library_path()))
        if backend == "cuda":
            if not torch.cuda.is_available():
                return "backend 'cuda' needs a CUDA device, and torch sees none"
            ver, path = _lib.loaded_nccl()
            if ver is not None and ver < _lib.NCCL_MIN_VERSION:
                return ("NCCL %s is loaded from %s; the cuda backend needs NCCL >= 2.28.7 "
                        "(torch's nvidia.nccl package carries one; load it first)"
                        % (_lib.nccl_version_string(ver), path))
        return None

    def _all_reduce(self, t, comm_device, op):
        tt = t.to(comm_device)
        dist.all_reduce(tt, op=op, group=self.group)
        t.copy_(tt.cpu())

    # ---- life cycle -------------------------------------------------------------

    def destroy(self):
        """Free the library's context (not collective). Waits for this device's work."""
        ctx, self._ctx = self._ctx, None
        if ctx:
            if self._is_cuda:
                torch.cuda.synchronize(self.device)
            self._destroy_fn(ctx)

    def __del__(self):
        try:
            self.destroy()
        except Exception:  # interpreter shutdown: nothing sensible to do
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()
        return False

    def _live_ctx(self, where):
        if self._ctx is None:
            raise RuntimeError("%s: this Buffer was destroyed" % where)
        return self._ctx

    # ---- asynchronous errors ----------------------------------------------------------

    def check_async_error(self, raise_error=True):
        """The asynchronous error of SPEC section 7 (does not synchronize).

        Returns None when there is none. Otherwise raises DFMAsyncError (or
        returns it, with ``raise_error=False``). DFM_ERROR_INVALID_EXPERT
        (an expert id outside [-1, E) was dropped) is cleared once reported;
        DFM_ERROR_TIMEOUT is fatal: destroy and recreate the Buffer. On CUDA it
        reflects work that has completed. Every operator call checks it first
        and raises it before launching anything.
        """
        ctx = self._live_ctx("check_async_error")
        self._get_async_fn(ctx, self._async_ref)
        st = self._async_status.value
        if st == _lib.SUCCESS:
            return None
        e = _lib.error_for(st, "deepfusedmoe asynchronous error", _lib.last_error(ctx))
        e = _lib.DFMAsyncError(str(e), st)
        if raise_error:
            raise e
        return e

    # ---- argument checks ---------------------------------------------------------------
    #
    # Every call is checked in two steps. The first tests all arguments at once
    # for the common case (a few attribute reads per tensor: _is_dense,
    # _accepts_tokens, _is_w1, or written out in fused_deep_moe) and says only
    # yes or no. On no, the second runs
    # the checks one by one in the documented order and raises on the first
    # problem, naming the argument (_check_*_args). The first step accepts
    # nothing the second refuses; where it is stricter (valid but rare forms,
    # such as an ep_recv_count shaped [G, R]) the second passes and the call
    # goes on. fused_deep_moe and low_latency_combine try a cheaper test before
    # the first step, where torch has one: a guard (utils.make_tensor_guard),
    # made from tensors that passed the first step, that says whether the call's
    # tensors have their types, dtypes, devices, sizes and strides (the other
    # arguments are compared as before, and (T, K) and the mode pick the guard).
    # It reads no tensor attribute in Python, and on torch 2.x costs about a
    # quarter of the first step. A guard compares each call's tensors as they
    # are then: one changed in place since the guard was made (set_, resize_,
    # as_strided_, .data = ...) fails it and is checked anew.

    def _tensor(self, t, name, dtypes, shape, dims_text):
        """Check a tensor's type, dtype, device, shape and contiguity."""
        if not isinstance(t, torch.Tensor):
            raise TypeError("%s: expected a torch.Tensor, got %s" % (name, type(t).__name__))
        if t.dtype not in dtypes:
            raise TypeError("%s: dtype must be %s, got %s"
                            % (name, " or ".join(str(d) for d in dtypes), t.dtype))
        if t.device != self.device:
            raise ValueError("%s: must be on the buffer's device %s, got %s"
                             % (name, self.device, t.device))
        if t.shape != shape:
            raise ValueError("%s: shape must be %s = %s, got %s"
                             % (name, dims_text, tuple(shape), tuple(t.shape)))
        if not t.is_contiguous():
            raise ValueError("%s: must be contiguous (row-major), got strides %s"
                             % (name, tuple(t.stride())))

    def _accepts_tokens(self, x, topk_idx):
        """(T, K) when x and topk_idx pass every check of _tokens, else None."""
        if self.debug or not (isinstance(x, _Tensor) and isinstance(topk_idx, _Tensor)):
            return None
        xs, ks = x.shape, topk_idx.shape
        if len(xs) != 2 or len(ks) != 2:
            return None
        T, K = xs[0], ks[1]
        dev = self.device
        if (xs[1] == self.hidden and ks[0] == T and T <= self.num_max_dispatch_tokens_per_rank
                and 1 <= K <= self.max_topk
                and x.dtype is _BFLOAT16 and x.device == dev and x.is_contiguous()
                and topk_idx.dtype is _INT64 and topk_idx.device == dev
                and topk_idx.is_contiguous()):
            return T, K
        return None

    def _tokens(self, x, topk_idx, where):
        """Check x [T, H] bf16 and topk_idx [T, K] int64; returns (T, K)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError("x: expected a torch.Tensor, got %s" % type(x).__name__)
        if not isinstance(topk_idx, torch.Tensor):
            raise TypeError("topk_idx: expected a torch.Tensor, got %s" % type(topk_idx).__name__)
        if x.dim() != 2:
            raise ValueError("x: must be 2-D [T, hidden], got shape %s" % (tuple(x.shape),))
        if topk_idx.dim() != 2:
            raise ValueError("topk_idx: must be 2-D [T, num_topk], got shape %s"
                             % (tuple(topk_idx.shape),))
        T, K = x.shape[0], topk_idx.shape[1]
        if T > self.num_max_dispatch_tokens_per_rank:
            raise ValueError("x: T = %d tokens exceeds num_max_dispatch_tokens_per_rank = %d"
                             % (T, self.num_max_dispatch_tokens_per_rank))
        if K > self.max_topk or (K < 1 and T > 0):
            raise ValueError("topk_idx: num_topk = %d is outside 1..max_topk = %d"
                             % (K, self.max_topk))
        self._tensor(x, "x", _BF16, (T, self.hidden), "[T, hidden]")
        self._tensor(topk_idx, "topk_idx", _I64, (T, K), "[T (x's), num_topk]")
        if self.debug and T > 0:
            bad = (topk_idx < -1) | (topk_idx >= self.num_experts)
            if bool(bad.any()):
                pos = bad.nonzero()[0].tolist()
                raise ValueError("topk_idx: entry %s = %d is outside [-1, num_experts = %d) "
                                 "(debug check)" % (tuple(pos), int(topk_idx[pos[0], pos[1]]),
                                                     self.num_experts))
        return T, max(K, 1)

    def _common(self, num_max, num_experts, where):
        if num_max != self.num_max_dispatch_tokens_per_rank:
            raise ValueError("num_max_dispatch_tokens_per_rank: %r differs from the buffer's %d"
                             % (num_max, self.num_max_dispatch_tokens_per_rank))
        if num_experts != self.num_experts:
            raise ValueError("num_experts: %r differs from the buffer's %d"
                             % (num_experts, self.num_experts))

    def _mode(self, q, where):
        if not self.quant_mask & (1 << self._quant_id[q]):
            raise ValueError("%s: mode %r was not among the buffer's quant_modes %s"
                             % (where, q, self.quant_modes))
        return self._quant_id[q]

    def _ep_recv_count(self, t):
        if t is None:
            return
        if not isinstance(t, torch.Tensor):
            raise TypeError("ep_recv_count: expected a torch.Tensor, got %s" % type(t).__name__)
        if t.dtype != torch.int32:
            raise TypeError("ep_recv_count: dtype must be torch.int32, got %s" % t.dtype)
        if t.device != self.device:
            raise ValueError("ep_recv_count: must be on the buffer's device %s, got %s"
                             % (self.device, t.device))
        G, R = self.num_local_experts, self.group_size
        if tuple(t.shape) not in ((G * R,), (G, R)) or not t.is_contiguous():
            raise ValueError("ep_recv_count: must be a contiguous [G * R] = [%d] (or [G, R]) "
                             "tensor, got shape %s strides %s"
                             % (G * R, tuple(t.shape), tuple(t.stride())))

    def _out(self, out, T):
        if out is not None:
            self._tensor(out, "out", _BF16, (T, self.hidden), "[T, hidden]")

    def _scale(self, s, name, shape, dims_text, q):
        if s is not None:
            self._tensor(s, name, _F32, shape, dims_text)
        elif q != "bf16":
            raise ValueError("%s: required in %s mode (None is only allowed in bf16 mode)"
                             % (name, q))

    def _is_w1(self, w, dtypes):
        """Whether w passes every check of gmm1_permuted_weight (_bad_w1 says why not)."""
        if not (isinstance(w, _Tensor) and w.dtype in dtypes and w.shape == self._shape_w1
                and w.device == self.device):
            return False
        s = w.stride()  # memory [G][2I][H]; with G = 1 the expert stride is free
        return s == self._stride_w1 or (self._shape_w1[0] == 1 and s[1:] == self._stride_w1[1:])

    def _bad_w1(self, w1, cdt, q):
        name = "gmm1_permuted_weight"
        if not isinstance(w1, torch.Tensor):
            raise TypeError("%s: expected a torch.Tensor, got %s" % (name, type(w1).__name__))
        if w1.dtype not in cdt:
            raise TypeError("%s: dtype must be %s for mode %r, got %s"
                            % (name, " or ".join(str(d) for d in cdt), q, w1.dtype))
        if w1.device != self.device:
            raise ValueError("%s: must be on the buffer's device %s, got %s"
                             % (name, self.device, w1.device))
        if w1.shape != self._shape_w1:
            raise ValueError("%s: shape must be [G, hidden, 2*inter] = %s, got %s"
                             % (name, self._shape_w1, tuple(w1.shape)))
        raise ValueError("%s: strides must be %s (memory [G][2*inter][hidden], each output "
                         "channel contiguous: a transpose(1, 2) view of a contiguous "
                         "[G, 2*inter, hidden] tensor, as prepare_gmm1_weight() returns), got %s"
                         % (name, self._stride_w1, tuple(w1.stride())))

    def _check_fused_args(self, x, topk_idx, topk_weights, w1, s1, w2, s2, num_max, num_experts,
                          use_fp8, quant, return_recv_hook, ep_recv_count, out):
        """fused_deep_moe's checks one by one; raises on the first problem, else
        returns ((T, K), mode name, self._modes entry)."""
        where = "fused_deep_moe"
        self._live_ctx(where)
        reject_recv_hook(return_recv_hook, where)
        q = _mode_of(use_fp8, quant, where)
        self._mode(q, where)
        self._common(num_max, num_experts, where)
        T, K = self._tokens(x, topk_idx, where)
        self._tensor(topk_weights, "topk_weights", _F32, topk_idx.shape,
                     "[T, num_topk] (topk_idx's shape)")
        cdt = self._code_dtypes[q]
        if not self._is_w1(w1, cdt):
            self._bad_w1(w1, cdt, q)
        self._tensor(w2, "gmm2_weight", cdt, self._shape_w2, "[G, hidden, inter]")
        self._scale(s1, "gmm1_permuted_weight_scale", self._shape_s1, "[G, 2*inter]", q)
        self._scale(s2, "gmm2_weight_scale", self._shape_s2, "[G, hidden]", q)
        self._ep_recv_count(ep_recv_count)
        self._out(out, T)
        return (T, K), q, self._modes[q]

    def _check_dispatch_args(self, x, topk_idx, num_max, num_experts, stats, wait_stats,
                             use_fp8, round_scale, use_ue8m0, return_recv_hook, quant,
                             ep_recv_count):
        """low_latency_dispatch's checks one by one (as _check_fused_args)."""
        where = "low_latency_dispatch"
        self._live_ctx(where)
        reject_recv_hook(return_recv_hook, where)
        if wait_stats is not None:
            raise NotImplementedError("low_latency_dispatch: dispatch_wait_recv_cost_stats is "
                                      "not supported")
        if round_scale or use_ue8m0:
            raise NotImplementedError("low_latency_dispatch: round_scale/use_ue8m0 are not "
                                      "supported (scales are fp32 per token, SPEC 3.1)")
        q = _mode_of(use_fp8, quant, where)
        self._mode(q, where)
        self._common(num_max, num_experts, where)
        T, K = self._tokens(x, topk_idx, where)
        if stats is not None:
            self._tensor(stats, "cumulative_local_expert_recv_stats", _I32,
                         (self.num_local_experts,), "[G]")
        self._ep_recv_count(ep_recv_count)
        return (T, K), q, self._modes[q]

    def _check_combine_args(self, x, topk_idx, topk_weights, handle, use_logfmt, zero_copy,
                            return_recv_hook, out, wait_stats):
        """low_latency_combine's checks one by one; raises on the first problem."""
        where = "low_latency_combine"
        self._live_ctx(where)
        reject_recv_hook(return_recv_hook, where)
        if use_logfmt or zero_copy or wait_stats is not None:
            raise NotImplementedError("low_latency_combine: use_logfmt, zero_copy and "
                                      "combine_wait_recv_cost_stats are not supported")
        if not isinstance(handle, LowLatencyHandle) or handle.buffer is not self:
            raise ValueError("handle: must be the handle that this Buffer's "
                             "low_latency_dispatch returned")
        T, K = handle.tokens
        self._tensor(x, "x", _BF16, self._shape_y,
                     "[G, R * num_max_dispatch_tokens_per_rank, hidden]")
        self._tensor(topk_idx, "topk_idx", _I64, (T, K), "[T, num_topk] (dispatch's)")
        self._tensor(topk_weights, "topk_weights", _F32, (T, K), "[T, num_topk] (dispatch's)")
        self._out(out, T)

    # ---- what every call does after its checks --------------------------------------------

    # Every operator polls the asynchronous error of SPEC section 7 before any
    # launch (written out in each: get_async(ctx, async_ref) from _call_consts)
    # and raises it with this.

    def _raise_async_error(self, ctx):
        """Raise the asynchronous error that the last poll read (a poll clears
        DFM_ERROR_INVALID_EXPERT: it is not polled again)."""
        st = self._async_status.value
        raise _lib.DFMAsyncError(
            str(_lib.error_for(st, "deepfusedmoe asynchronous error (raised at the next "
                                   "call)", _lib.last_error(ctx))), st)

    def _stream(self, async_finish):
        """(torch stream or None, cudaStream_t as int or None) the op runs on."""
        if not self._is_cuda:
            return None, None
        if async_finish:
            comm = self._comm_stream
            comm.wait_stream(torch.cuda.current_stream(self.device))
            return comm, comm.cuda_stream
        return None, current_raw_stream(self._device_index)

    def _event(self, stream, stream_ptr, async_finish, tensors):
        """The EventOverlap of a call; with async_finish it keeps ``tensors`` alive
        until the call has finished."""
        if stream_ptr is None or not async_finish:
            return stream_event(stream_ptr)  # CPU (complete), or the caller's stream
        for t in tensors:
            if t is not None and t.is_cuda:
                t.record_stream(stream)
        ev = torch.cuda.Event()
        ev.record(stream)
        return EventOverlap(ev, extra_tensors=tuple(tensors), stream=stream)

    def _failed(self, st, ctx, where):
        """The exception for a failed library call, with the context's message."""
        return _lib.error_for(st, where, _lib.last_error(ctx))

    # ---- the fused operator -----------------------------------------------------------------

    def fused_deep_moe(self, x, topk_idx, topk_weights, gmm1_permuted_weight,
                       gmm1_permuted_weight_scale, gmm2_weight, gmm2_weight_scale,
                       num_max_dispatch_tokens_per_rank, num_experts, use_fp8=_USE_FP8_DEFAULT,
                       *, quant=None, async_finish=False, return_recv_hook=False,
                       ep_recv_count=None, out=None):
        """Dispatch + expert FFNs (GEMM, SwiGLU, GEMM) + combine, in one collective call.

        The seed's API (SPEC section 1), positional order and defaults as written:

        Args:
            x: [T, hidden] bfloat16, this rank's tokens (T <= num_max_dispatch_tokens_per_rank).
            topk_idx: [T, K] int64, expert of each slot, -1 = unused.
            topk_weights: [T, K] float32.
            gmm1_permuted_weight: [G, hidden, 2*inter] codes with memory [G][2I][H]
                (strides (2I*H, 1, H)), from prepare_gmm1_weight().
            gmm1_permuted_weight_scale: [G, 2*inter] float32 (None allowed in bf16 mode).
            gmm2_weight: [G, hidden, inter] codes, contiguous.
            gmm2_weight_scale: [G, hidden] float32 (None allowed in bf16 mode).
            num_max_dispatch_tokens_per_rank, num_experts: must equal the buffer's.
            use_fp8: True: FP8 E4M3 path; False: bf16 (unquantized) path.
            quant: 'fp8' | 'int8' | 'bf16' (keyword): overrides the default use_fp8;
                contradicting an explicit use_fp8 is an error.
            async_finish: run on the buffer's own stream; wait through the returned
                EventOverlap (CUDA).
            return_recv_hook: not supported (raises NotImplementedError).
            ep_recv_count: optional int32 [G * R] out-tensor: entry g*R + src = tokens that
                rank src sent to local expert g in this call (works in CUDA graphs).
            out: optional [T, hidden] bf16 output tensor.

        Returns:
            (output [T, hidden] bf16, EventOverlap, hook); hook is a documented no-op.
        """
        # The checks are written out here, not called: a call's host time is a few
        # microseconds, and each function call or attribute lookup saved is tens of
        # nanoseconds. The buffer's constants come in one tuple, unpacked to locals.
        ctx = self._ctx
        w1, s1 = gmm1_permuted_weight, gmm1_permuted_weight_scale
        w2, s2 = gmm2_weight, gmm2_weight_scale
        ep = ep_recv_count
        (H, M, max_topk, E, dev, modes, shape_w1, stride_w1, shape_s1, shape_w2, shape_s2,
         shape_ep, guards) = self._fused_consts
        if quant is None:
            q = "fp8" if use_fp8 else "bf16"
        elif use_fp8 is _USE_FP8_DEFAULT and type(quant) is str:
            q = quant
        else:
            q = None  # spelled otherwise: _check_fused_args decides (_mode_of)
        mode = modes.get(q)  # (dfm_quant_t, weight dtypes); None: not one of the buffer's
        tk = topk_idx.shape if isinstance(topk_idx, _Tensor) else None
        if (ctx is None or mode is None or return_recv_hook or self.debug
                or num_max_dispatch_tokens_per_rank != M or num_experts != E):
            ok = False
        else:
            # The guard of this (T, K) and mode (see "argument checks"), else the
            # quick test, which makes one.
            ok = False
            if guards is not None:
                ts = (x, topk_idx, topk_weights, w1, _NO_S1 if s1 is None else s1, w2,
                      _NO_S2 if s2 is None else s2, _NO_EP if ep is None else ep,
                      _NO_OUT if out is None else out)
                guard = guards.get((tk, q))
                ok = guard is not None and guard[0].check(*ts)
            if not ok:  # the quick test (see "argument checks")
                ok = (tk is not None and len(tk) == 2 and tk[0] <= M and 0 < tk[1] <= max_topk
                      and topk_idx.dtype is _INT64 and topk_idx.device == dev
                      and topk_idx.is_contiguous()
                      and isinstance(x, _Tensor) and x.dtype is _BFLOAT16
                      and x.shape == (tk[0], H) and x.device == dev and x.is_contiguous()
                      and isinstance(topk_weights, _Tensor) and topk_weights.dtype is _FLOAT32
                      and topk_weights.shape == tk and topk_weights.device == dev
                      and topk_weights.is_contiguous()
                      and isinstance(w1, _Tensor) and w1.dtype in mode[1]
                      and w1.shape == shape_w1 and w1.device == dev
                      and (w1.stride() == stride_w1 or self._is_w1(w1, mode[1]))
                      and isinstance(w2, _Tensor) and w2.dtype in mode[1]
                      and w2.shape == shape_w2 and w2.device == dev and w2.is_contiguous()
                      and (isinstance(s1, _Tensor) and s1.dtype is _FLOAT32
                           and s1.shape == shape_s1 and s1.device == dev
                           and s1.is_contiguous() or s1 is None and q == "bf16")
                      and (isinstance(s2, _Tensor) and s2.dtype is _FLOAT32
                           and s2.shape == shape_s2 and s2.device == dev
                           and s2.is_contiguous() or s2 is None and q == "bf16")
                      and (ep is None or isinstance(ep, _Tensor) and ep.dtype is _INT32
                           and ep.shape == shape_ep and ep.device == dev and ep.is_contiguous())
                      and (out is None or isinstance(out, _Tensor) and out.dtype is _BFLOAT16
                           and out.shape == (tk[0], H) and out.device == dev
                           and out.is_contiguous()))
                if ok and guards is not None:
                    _remember_guard(guards, (tk, q), ts)
        if not ok:
            tk, q, mode = self._check_fused_args(
                x, topk_idx, topk_weights, w1, s1, w2, s2, num_max_dispatch_tokens_per_rank,
                num_experts, use_fp8, quant, return_recv_hook, ep, out)
        T, K = tk
        if out is None:  # (sizes as separate arguments: see low_latency_dispatch)
            out = torch.empty(T, H, dtype=_BFLOAT16, device=dev)

        get_async, async_ref, async_status, is_cuda, dev_index = self._call_consts
        get_async(ctx, async_ref)  # the asynchronous error, before any launch
        if async_status.value != _SUCCESS:
            self._raise_async_error(ctx)
        if is_cuda and not async_finish:  # the caller's stream (_stream, written out)
            stream, stream_ptr = None, current_raw_stream(dev_index)
        else:
            stream, stream_ptr = self._stream(async_finish)
        _write_moe_args(self._moe_args, 0,
                        x.data_ptr(), topk_idx.data_ptr(), topk_weights.data_ptr(),
                        T, K, mode[0],  # num_tokens, num_topk, quant
                        w1.data_ptr(), s1.data_ptr() if s1 is not None else 0,
                        w2.data_ptr(), s2.data_ptr() if s2 is not None else 0,
                        out.data_ptr(), ep.data_ptr() if ep is not None else 0,
                        stream_ptr or 0)
        st = self._fused_fn(ctx, self._moe_args_ref)
        if st != _SUCCESS:
            raise self._failed(st, ctx, "fused_deep_moe")
        if stream is None:  # nothing but stream order to wait for (_event, written out)
            return out, stream_event(stream_ptr), noop_hook
        return out, self._event(stream, stream_ptr, async_finish,
                                (x, topk_idx, topk_weights, w1, s1, w2, s2, out, ep)), noop_hook

    # ---- dispatch and combine -----------------------------------------------------------------

    def low_latency_dispatch(self, x, topk_idx, num_max_dispatch_tokens_per_rank, num_experts,
                             cumulative_local_expert_recv_stats=None,
                             dispatch_wait_recv_cost_stats=None, use_fp8=_USE_FP8_DEFAULT,
                             round_scale=False, use_ue8m0=False, async_finish=False,
                             return_recv_hook=False, *, quant=None, ep_recv_count=None):
        """Dispatch only (SPEC section 5), DeepEP's signature and return structure.

        Returns ``(recv_x, recv_count, handle, event, hook)``:

        - recv_x: ``(codes, scales)`` in fp8/int8 mode (codes [G, R*num_max, H]
          float8_e4m3fn (uint8 where torch has no float8) or int8; scales
          [G, R*num_max] float32, one per row), or the bf16 tensor [G, R*num_max, H]
          in bf16 mode. Rows 0..recv_count[g]-1 of expert g are valid, ordered by
          source rank, then token.
        - recv_count: [G] int32.
        - handle: a LowLatencyHandle; as DeepEP's tuple, handle[0] = src_info
          [G, R*num_max] int32 (src_rank * num_max + token) and handle[1] =
          layout_range [G, R] int64 (begin << 32 | count); handle[2..4] =
          num_max, hidden, num_experts. Pass it to low_latency_combine().
        - event: EventOverlap; hook: a no-op.

        cumulative_local_expert_recv_stats (int32 [G]) is incremented by
        recv_count if given; dispatch_wait_recv_cost_stats, round_scale,
        use_ue8m0 and return_recv_hook are not supported. ``quant`` and
        ``ep_recv_count`` as in fused_deep_moe.
        """
        ctx = self._ctx
        stats = cumulative_local_expert_recv_stats
        q = _plain_mode(use_fp8, quant)
        mode = self._modes.get(q)
        tk = self._accepts_tokens(x, topk_idx)
        dev = self.device
        G, R, M, H = self.num_local_experts, self.group_size, \
            self.num_max_dispatch_tokens_per_rank, self.hidden
        if (ctx is None or return_recv_hook or dispatch_wait_recv_cost_stats is not None
                or round_scale or use_ue8m0 or mode is None or tk is None
                or num_max_dispatch_tokens_per_rank != M or num_experts != self.num_experts
                or not (stats is None or _is_dense(stats, _I32, (G,), dev))
                or not (ep_recv_count is None
                        or _is_dense(ep_recv_count, _I32, self._shape_ep, dev))):
            tk, q, mode = self._check_dispatch_args(
                x, topk_idx, num_max_dispatch_tokens_per_rank, num_experts, stats,
                dispatch_wait_recv_cost_stats, use_fp8, round_scale, use_ue8m0,
                return_recv_hook, quant, ep_recv_count)
        T, K = tk
        get_async, async_ref, async_status, is_cuda, dev_index = self._call_consts
        get_async(ctx, async_ref)  # the asynchronous error, before any launch
        if async_status.value != _SUCCESS:
            self._raise_async_error(ctx)

        alloc_dtype, recv_dtype = self._recv_dtypes[q]  # fp8 codes are viewed after the call
        # sizes as separate arguments: in torch 2.x a tuple costs ~1 us more per tensor
        recv_x = torch.empty(G, R * M, H, dtype=alloc_dtype, device=dev)
        recv_scale = torch.empty(G, R * M, dtype=_FLOAT32, device=dev)
        recv_count = torch.empty(G, dtype=_INT32, device=dev)
        layout_range = torch.empty(G, R, dtype=_INT64, device=dev)
        src_info = torch.empty(G, R * M, dtype=_INT32, device=dev)
        if is_cuda and not async_finish:  # the caller's stream (_stream, written out)
            stream, stream_ptr = None, current_raw_stream(dev_index)
        else:
            stream, stream_ptr = self._stream(async_finish)
        _write_dispatch_args(self._disp_args, 0,
                             x.data_ptr(), topk_idx.data_ptr(),
                             T, K, mode[0],  # num_tokens, num_topk, quant
                             recv_x.data_ptr(), recv_scale.data_ptr(), recv_count.data_ptr(),
                             layout_range.data_ptr(), src_info.data_ptr(),
                             ep_recv_count.data_ptr() if ep_recv_count is not None else 0,
                             stream_ptr or 0)
        h = _lib.Handle()
        st = self._dispatch_fn(ctx, self._disp_args_ref, ctypes.byref(h))
        if st != _SUCCESS:
            raise self._failed(st, ctx, "low_latency_dispatch")
        if recv_dtype is not alloc_dtype:
            recv_x = recv_x.view(recv_dtype)
        if stats is not None:
            with torch.cuda.stream(stream) if stream is not None else _nullcontext():
                stats.add_(recv_count)
        handle = LowLatencyHandle(src_info, layout_range, M, H, self.num_experts, h, self, q)
        event = self._event(stream, stream_ptr, async_finish,
                            (x, topk_idx, recv_x, recv_scale, recv_count, layout_range,
                             src_info, ep_recv_count, stats))
        packed = recv_x if q == "bf16" else (recv_x, recv_scale)
        return packed, recv_count, handle, event, noop_hook

    def low_latency_combine(self, x, topk_idx, topk_weights, handle, use_logfmt=False,
                            zero_copy=False, async_finish=False, return_recv_hook=False,
                            out=None, combine_wait_recv_cost_stats=None):
        """Combine only (SPEC section 5), DeepEP's signature.

        ``x``: the expert outputs [G, R*num_max, hidden] bf16 in recv_x's row
        order; ``topk_idx``/``topk_weights`` [T, K] as at dispatch; ``handle``
        from low_latency_dispatch (combines follow their dispatches in order, at
        most two outstanding). Returns ``(combined_x [T, hidden] bf16,
        EventOverlap, hook)``. use_logfmt, zero_copy, return_recv_hook and
        combine_wait_recv_cost_stats are not supported.
        """
        # as fused_deep_moe: a guard per dispatch (T, K), else the quick test
        ctx = self._ctx
        dev = self.device
        if (ctx is None or return_recv_hook or use_logfmt or zero_copy
                or combine_wait_recv_cost_stats is not None
                or not isinstance(handle, LowLatencyHandle) or handle.buffer is not self):
            ok = False
        else:
            tokens, guards = handle.tokens, self._combine_guards
            ok = False
            if guards is not None:
                ts = (x, topk_idx, topk_weights, _NO_OUT if out is None else out)
                guard = guards.get(tokens)
                ok = guard is not None and guard[0].check(*ts)
            if not ok:
                ok = (_is_dense(x, _BF16, self._shape_y, dev)
                      and _is_dense(topk_idx, _I64, tokens, dev)
                      and _is_dense(topk_weights, _F32, tokens, dev)
                      and (out is None
                           or _is_dense(out, _BF16, (tokens[0], self.hidden), dev)))
                if ok and guards is not None:
                    _remember_guard(guards, tokens, ts)
        if not ok:
            self._check_combine_args(x, topk_idx, topk_weights, handle, use_logfmt, zero_copy,
                                     return_recv_hook, out, combine_wait_recv_cost_stats)
        if out is None:  # (sizes as separate arguments: see low_latency_dispatch)
            out = torch.empty(handle.tokens[0], self.hidden, dtype=_BFLOAT16, device=dev)
        get_async, async_ref, async_status, is_cuda, dev_index = self._call_consts
        get_async(ctx, async_ref)  # the asynchronous error, before any launch
        if async_status.value != _SUCCESS:
            self._raise_async_error(ctx)
        if is_cuda and not async_finish:  # the caller's stream (_stream, written out)
            stream, stream_ptr = None, current_raw_stream(dev_index)
        else:
            stream, stream_ptr = self._stream(async_finish)
        _write_combine_args(self._comb_args, 0,
                            x.data_ptr(), topk_idx.data_ptr(), topk_weights.data_ptr(),
                            handle.c_handle_address, out.data_ptr(), stream_ptr or 0)
        st = self._combine_fn(ctx, self._comb_args_ref)
        if st != _SUCCESS:
            raise self._failed(st, ctx, "low_latency_combine")
        if stream is None:  # nothing but stream order to wait for (_event, written out)
            return out, stream_event(stream_ptr), noop_hook
        return out, self._event(stream, stream_ptr, async_finish,
                                (x, topk_idx, topk_weights, out)), noop_hook

    # ---- sizes ---------------------------------------------------------------------------------

    @staticmethod
    def get_buffer_size_hint(num_max_dispatch_tokens_per_rank, hidden, num_experts, num_ranks, *,
                             inter, max_topk=8, quant_modes=ALL_QUANT_MODES, backend="cpu"):
        """See deepfusedmoe.get_buffer_size_hint."""
        return get_buffer_size_hint(num_max_dispatch_tokens_per_rank, hidden, num_experts,
                                    num_ranks, inter=inter, max_topk=max_topk,
                                    quant_modes=quant_modes, backend=backend)

    def __repr__(self):
        return ("Buffer(backend=%r, rank=%d/%d, device=%s, num_max=%d, hidden=%d, inter=%d, "
                "num_experts=%d, max_topk=%d, quant_modes=%s, path=%r)"
                % (self.backend, self.rank, self.group_size, self.device,
                   self.num_max_dispatch_tokens_per_rank, self.hidden, self.inter,
                   self.num_experts, self.max_topk, self.quant_modes,
                   getattr(self, "path_taken", None)))


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class LowLatencyHandle(tuple):
    """What low_latency_combine needs from its dispatch. As DeepEP's handle tuple:
    (src_info, layout_range, num_max_dispatch_tokens_per_rank, hidden, num_experts),
    plus the library's dfm_handle_t (and its address), the dispatch's (T, K), the
    Buffer and the mode as attributes."""

    def __new__(cls, src_info, layout_range, num_max, hidden, num_experts, c_handle, buffer,
                quant):
        self = super().__new__(cls, (src_info, layout_range, num_max, hidden, num_experts))
        self.c_handle = c_handle
        self.c_handle_address = ctypes.addressof(c_handle)
        self.tokens = (c_handle.num_tokens, c_handle.num_topk)  # (T, K) of the dispatch
        self.buffer = buffer
        self.quant = quant
        return self

    src_info = property(lambda self: self[0])
    layout_range = property(lambda self: self[1])
    num_max_dispatch_tokens_per_rank = property(lambda self: self[2])
    hidden = property(lambda self: self[3])
    num_experts = property(lambda self: self[4])
