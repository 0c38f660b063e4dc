"""Small pieces shared by the Buffer and the weight helpers: EventOverlap,
the no-op hook, quantization-mode parsing and the code dtypes."""
import torch

from . import _lib

#: Where torch has no float8 dtype (torch < 2.1, e.g. Debian's 1.13), FP8 E4M3
#: codes travel as torch.uint8 bytes.
HAS_FLOAT8 = hasattr(torch, "float8_e4m3fn")
FP8_DTYPE = torch.float8_e4m3fn if HAS_FLOAT8 else torch.uint8


def code_dtype(quant):
    """The torch dtype of one code of mode ``quant`` ('fp8' | 'int8' | 'bf16')."""
    return {"fp8": FP8_DTYPE, "int8": torch.int8, "bf16": torch.bfloat16}[quant]


def code_dtypes(quant):
    """Dtypes accepted for codes of mode ``quant`` (fp8 also as uint8 bytes)."""
    if quant == "fp8":
        return (FP8_DTYPE, torch.uint8) if HAS_FLOAT8 else (torch.uint8,)
    return (code_dtype(quant),)


def parse_quant(quant, where="quant"):
    if isinstance(quant, str) and quant.lower() in _lib.QUANT_IDS:
        return quant.lower()
    raise ValueError("%s: %r is not one of 'fp8', 'int8', 'bf16'" % (where, quant))


def parse_quant_modes(quant_modes):
    """An int mask (DFM_QUANT_MASK bits) or an iterable of mode names -> mask."""
    if isinstance(quant_modes, int) and not isinstance(quant_modes, bool):
        if quant_modes <= 0 or quant_modes & ~_lib.QUANT_MASK_ALL:
            raise ValueError("quant_modes: 0x%x is not a non-empty mask of 0x%x"
                             % (quant_modes, _lib.QUANT_MASK_ALL))
        return quant_modes
    if isinstance(quant_modes, str):
        quant_modes = (quant_modes,)
    mask = 0
    for q in quant_modes:
        mask |= 1 << _lib.QUANT_IDS[parse_quant(q, "quant_modes")]
    if mask == 0:
        raise ValueError("quant_modes: must name at least one of 'fp8', 'int8', 'bf16'")
    return mask


def _noop_hook():
    """The ``hook`` returned by every operator of this package: a no-op.

    DeepEP's ``return_recv_hook=True`` splits an operator in two (issue the
    sends, return, and let the hook wait for the receives). The operators here
    are not split: each call completes its exchange itself (on CUDA, in
    stream order), so there is nothing left for a hook to do, and asking for
    ``return_recv_hook=True`` raises NotImplementedError. Calling this hook is
    always safe and does nothing.
    """
    return None


noop_hook = _noop_hook


def reject_recv_hook(return_recv_hook, where):
    if return_recv_hook:
        raise NotImplementedError(
            "%s: return_recv_hook=True is not supported: the operator is not split into a "
            "send phase and a receive hook (it completes its own exchange, stream-ordered on "
            "CUDA); pass return_recv_hook=False and use async_finish=True with "
            "EventOverlap to overlap it with other work" % where)


class EventOverlap:
    """The completion of one operator call, DeepEP-style.

    ``current_stream_wait()`` makes the caller's *current* CUDA stream wait
    until the operator has finished:

    - with ``async_finish=True`` the operator ran on the buffer's own stream and
      this holds a CUDA event recorded after it;
    - with ``async_finish=False`` it ran on the caller's stream; if the current
      stream is still that one, nothing is needed (stream order), otherwise an
      event is recorded on the operator's stream and waited for.

    On the CPU backend every operator has completed when it returns, and
    ``current_stream_wait()`` is a no-op. ``with event: ...`` waits on exit,
    as DeepEP's does. ``extra_tensors`` keeps tensors alive until the
    EventOverlap is dropped.
    """

    __slots__ = ("event", "stream", "raw_stream", "extra_tensors")

    def __init__(self, event=None, extra_tensors=None, stream=None, raw_stream=None):
        self.event = event
        self.stream = stream          # a torch.cuda.Stream the op ran on, or None
        self.raw_stream = raw_stream  # or its cudaStream_t as an int (async_finish=False)
        self.extra_tensors = extra_tensors

    def current_stream_wait(self):
        if self.event is not None:
            torch.cuda.current_stream().wait_event(self.event)
            return
        if self.stream is None and self.raw_stream is None:
            return  # CPU: already complete
        cur = torch.cuda.current_stream()
        op_stream = self.stream
        if op_stream is None:
            if cur.cuda_stream == self.raw_stream:
                return  # same stream: already ordered
            op_stream = torch.cuda.ExternalStream(self.raw_stream)
        elif cur == op_stream:
            return
        ev = torch.cuda.Event()
        ev.record(op_stream)
        cur.wait_event(ev)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.current_stream_wait()
        return False


class _StreamEventOverlap(EventOverlap):
    """The EventOverlap of a call with nothing to wait for but stream order (on the
    CPU backend, complete; on CUDA with async_finish=False, its stream): it holds no
    event and no tensor, so the calls on one stream share one (stream_event()),
    read-only, rather than make one each."""

    __slots__ = ()

    def __init__(self, raw_stream):
        for name, value in (("event", None), ("stream", None), ("raw_stream", raw_stream),
                            ("extra_tensors", None)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError("this EventOverlap is shared by the calls on its stream "
                             "(read-only)")


_stream_events = {}


def stream_event(raw_stream):
    """The (shared) EventOverlap of a call on the cudaStream_t raw_stream; None: CPU."""
    ev = _stream_events.get(raw_stream)
    if ev is None:
        if len(_stream_events) >= 256:  # streams come and go
            _stream_events.clear()
        ev = _stream_events[raw_stream] = _StreamEventOverlap(raw_stream)
    return ev


def _raw_stream_getter():
    """f(device_index) -> the current cudaStream_t as an int (fast where torch has it)."""
    fast = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if fast is not None:
        return fast
    return lambda index: torch.cuda.current_stream(index).cuda_stream


current_raw_stream = _raw_stream_getter()


def _tensor_guard_maker():
    """f(tensors) -> a guard whose ``check(*tensors)`` is True only for tensors of the
    same Python types, dtypes, devices (type and index), dispatch keys, requires_grad,
    sizes and strides, in one C++ call: torch.compile's own tensor guard
    (torch._C._dynamo.guards.TensorGuards, torch >= 2.1). None where this torch lacks
    it, takes other arguments, or fails the probes below: what a guard accepts must
    never depend on a torch version's details, so each property it is relied on to
    compare is tried once here."""
    try:
        from torch._C._dynamo.guards import TensorGuards
    except ImportError:
        return None

    def make(tensors):
        return TensorGuards(*tensors, dynamic_dims_sizes=None, dynamic_dims_strides=None)

    try:
        a = torch.zeros(2, 3)
        g = make((a,))
        ok = (g.check(a) is True and g.check(torch.ones(2, 3)) is True
              and not g.check(torch.zeros(2, 3, dtype=torch.float64))       # dtype
              and not g.check(torch.zeros(3, 3))                            # size
              and not g.check(torch.zeros(3, 2).t())                        # strides
              and not g.check(torch.zeros(2, 3, device="meta"))             # device type
              and not g.check(torch.nn.Parameter(a, requires_grad=False)))  # Python type
    except Exception:  # noqa: BLE001 (any failure: not used)
        return None
    return make if ok else None


#: see _tensor_guard_maker (None: this torch has no usable one)
make_tensor_guard = _tensor_guard_maker()
