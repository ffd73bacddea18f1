"""The kernel contract every backend implements, and the validation that guards it.

Two levels:

* The convenience API (NumPy in, NumPy out), identical in every backend module::

      y, h_n      = gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, reset_after=True, lengths=None)
      grads       = gru_backward(x, h0, w_ih, w_hh, b_ih, b_hh, dy, dh_n, *, reset_after=True, lengths=None)
      y, h_n, c_n = lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, lengths=None)
      grads       = lstm_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, dy, dh_n, dc_n, *, lengths=None)

* The prepared path the harness times: ``prepare(args) -> Prepared`` lays the validated
  arrays out on the backend's device once; ``Prepared.forward()`` (inference, nothing saved)
  and ``Prepared.training_step()`` (forward saving what backward needs, then backward) run
  on them repeatedly; ``synchronize()`` waits for asynchronous devices.

A backend module defines ``availability()``, ``version()`` and ``prepare(args)``, then gets
the convenience API from :func:`convenience_api`, so the four functions are written once.

Shapes (time-major, torch layout and gate order):
    x (T,B,I); h0, c0, h_n, c_n (B,H); y, dy (T,B,H)
    GRU:  w_ih (3H,I), w_hh (3H,H), b_ih, b_hh (3H,)   gates r, z, n
    LSTM: w_ih (4H,I), w_hh (4H,H), b_ih, b_hh (4H,)   gates i, f, g, o
    lengths (B,) integers, 0 <= lengths[b] <= T; steps t >= lengths[b] leave the state
    unchanged and give y[t, b] = 0 (ONNX sequence_lens semantics).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from .cells import CELLS as CELL_SPECS
from .cells import GRU, LSTM, CellSpec
from .cells import cell as cell_spec

CELLS = tuple(CELL_SPECS)
GATES = {name: spec.n_gates for name, spec in CELL_SPECS.items()}
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Named gate offsets (multiply by H for the row offset inside w_ih / w_hh / biases); the
# compiled kernels take them as module constants.
GRU_R, GRU_Z, GRU_N = (GRU.gate(name) for name in ("r", "z", "n"))
LSTM_I, LSTM_F, LSTM_G, LSTM_O = (LSTM.gate(name) for name in ("i", "f", "g", "o"))


class BackendUnavailable(RuntimeError):
    """Raised when a backend that is not available on this machine is asked to run."""


@dataclass(frozen=True)
class RNNArgs:
    """One validated call: C-contiguous arrays of one float dtype, sizes checked.

    ``dy``, ``dh_n`` and ``dc_n`` are the upstream gradients (None for forward-only calls).
    ``lengths`` is None or an int64 array (B,).
    """

    cell: str
    reset_after: bool
    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray | None
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray
    lengths: np.ndarray | None = None
    dy: np.ndarray | None = None
    dh_n: np.ndarray | None = None
    dc_n: np.ndarray | None = None

    @property
    def T(self) -> int:
        return self.x.shape[0]

    @property
    def B(self) -> int:
        return self.x.shape[1]

    @property
    def I(self) -> int:  # noqa: E743 - the conventional name of the input size
        return self.x.shape[2]

    @property
    def H(self) -> int:
        return self.h0.shape[1]

    @property
    def spec(self) -> CellSpec:
        return cell_spec(self.cell)

    @property
    def gates(self) -> int:
        return self.spec.n_gates

    @property
    def variant(self) -> str:
        """The cell's variant name (reset_after, reset_before; "-" for an LSTM)."""
        return self.spec.variant_of(self.reset_after)

    @property
    def dtype(self) -> np.dtype:
        return self.x.dtype

    @property
    def has_grads(self) -> bool:
        return self.dy is not None

    def inputs(self) -> dict[str, np.ndarray]:
        """The differentiable inputs by gradient key, in contract order."""
        named = {"x": self.x}
        named.update((name, getattr(self, name)) for name in self.spec.initial_states)
        named.update(w_ih=self.w_ih, w_hh=self.w_hh, b_ih=self.b_ih, b_hh=self.b_hh)
        return named


def upstream_names(spec: CellSpec) -> tuple[str, ...]:
    """The upstream gradients of a call, in contract order: dy, then one per final state
    (dh_n, dc_n)."""
    return ("dy",) + tuple(f"d{output}" for output in spec.outputs[1:])


class Prepared:
    """Inputs laid out for one backend, ready to run repeatedly.

    Subclasses implement ``forward``, ``forward_train`` and ``backward``; results stay on
    the backend's device until ``to_numpy`` fetches them, so a timed region holds no host
    transfers. A training loop calls ``forward_train``, computes the upstream gradients from
    the outputs, then ``backward``; the harness calls ``training_step``, which uses the
    upstream gradients given to ``validate``.
    """

    #: bytes of state the last ``forward_train`` saved for backward (None: unknown)
    saved_bytes: int | None = None

    def __init__(self, args: RNNArgs):
        self.args = args
        self._upstream = None

    def forward(self):
        """Inference: returns (y, h_n) for GRU, (y, h_n, c_n) for LSTM; saves nothing."""
        raise NotImplementedError

    def forward_train(self):
        """Forward that keeps what backward needs: returns (outputs, saved)."""
        raise NotImplementedError

    def backward(self, saved, upstream) -> dict:
        """Gradients from ``saved`` (of ``forward_train``) and ``upstream`` = (dy, dh_n) for
        GRU or (dy, dh_n, dc_n) for LSTM, in this backend's arrays (see ``from_numpy``).
        Returns a dict keyed as :meth:`RNNArgs.inputs`."""
        raise NotImplementedError

    def upstream(self) -> tuple:
        """The upstream gradients given to ``validate``, on this backend's device."""
        if not self.args.has_grads:
            raise ValueError("no upstream gradients were given (dy, dh_n[, dc_n])")
        if self._upstream is None:
            self._upstream = tuple(self.from_numpy(getattr(self.args, name))
                                   for name in upstream_names(self.args.spec))
        return self._upstream

    def training_step(self):
        """``forward_train`` then ``backward`` with the prepared upstream gradients.
        Returns (outputs, grads)."""
        upstream = self.upstream()
        outputs, saved = self.forward_train()
        return outputs, self.backward(saved, upstream)

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op for synchronous CPU backends)."""

    def from_numpy(self, array: np.ndarray):
        """A NumPy array as this backend's array type (identity on NumPy backends)."""
        return array

    def to_numpy(self, result):
        """Fetch a result of ``forward``/``training_step`` as NumPy arrays (same structure)."""
        return result


def map_arrays(result, convert: Callable):
    """``result`` with ``convert`` applied to each array in it; tuples, lists and dicts
    (in their order) keep their structure: ``to_numpy`` of the backends' arrays."""
    if isinstance(result, dict):
        return {key: map_arrays(value, convert) for key, value in result.items()}
    if isinstance(result, (tuple, list)):
        return type(result)(map_arrays(value, convert) for value in result)
    return convert(result)


# --------------------------------------------------------------------------------------
# Validation: everything a user can get wrong is caught here, before any kernel sees it.
# --------------------------------------------------------------------------------------

def _as_float_array(name: str, value) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(value).__name__}")
    if value.dtype not in DTYPES:
        raise TypeError(f"{name} has dtype {value.dtype}; expected float32 or float64")
    return value


def _check_shape(name: str, array: np.ndarray, expected: tuple[int, ...], meaning: str) -> None:
    if array.shape != expected:
        raise ValueError(f"{name} has shape {array.shape}; expected {expected} {meaning}")


def _validate_lengths(lengths, T: int, B: int) -> np.ndarray | None:
    if lengths is None:
        return None
    array = np.asarray(lengths)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"lengths must hold integers, got dtype {array.dtype}")
    if array.shape != (B,):
        raise ValueError(f"lengths has shape {array.shape}; expected ({B},) = (B,)")
    if B and (array.min() < 0 or array.max() > T):
        raise ValueError(f"lengths must lie in [0, T={T}]; got values from "
                         f"{array.min()} to {array.max()}")
    return np.ascontiguousarray(array, dtype=np.int64)


def _contiguous_writable(array: np.ndarray) -> np.ndarray:
    """``array`` in C order, copied when it is not (or is read-only): no kernel writes its
    inputs, but numba compiles every kernel again for read-only array types (minutes)
    and torch warns on them, so a read-only input costs one copy instead."""
    array = np.ascontiguousarray(array)
    return array if array.flags.writeable else array.copy()


def _zero_padding(array: np.ndarray, given: np.ndarray, lengths) -> np.ndarray:
    """``array`` (T, B, ...) with the steps past each sequence's length set to zero, in a
    copy of the caller's ``given`` (never written). Those steps hold anything by contract
    (NaN, inf); zeroed here, no kernel can let them through a product with a zero
    gradient or mask (0 * NaN = NaN). Costs one copy of x (and of dy) at validation, out
    of any timed call, and only when some sequence is shorter than T."""
    if lengths is None:
        return array
    padding = np.arange(array.shape[0])[:, None] >= lengths[None, :]
    if not padding.any():
        return array
    if np.shares_memory(array, given):
        array = array.copy()
    array[padding] = 0
    return array


def available_memory_bytes() -> int:
    """Memory a new allocation can use now: MemAvailable, else total physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def working_set_bytes(args: RNNArgs) -> int:
    """Bytes a training call allocates beyond its inputs: outputs, the gate activations and
    states saved for backward, and gradients (an upper bound for inference)."""
    T, B, I, H, G = args.T, args.B, args.I, args.H, args.gates
    states = len(args.spec.states)
    elements = (T * B * H * (1 + states)        # y and the saved state sequences
                + T * B * G * H * 2            # gate pre-activations and activations
                + T * B * I                    # dx
                + G * H * (I + H + 2))         # weight gradients
    return elements * args.dtype.itemsize


def format_bytes(n: float) -> str:
    """Bytes for people: '512 B', '1.5 KiB', '3.0 MiB', '12.0 GiB'."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GiB"


def check_fits_in_memory(args: RNNArgs, headroom: float = 0.9) -> None:
    """Raise MemoryError, before anything is allocated, when a call cannot fit."""
    need = working_set_bytes(args)
    have = available_memory_bytes()
    if need > headroom * have:
        raise MemoryError(
            f"{args.cell} with T={args.T}, B={args.B}, I={args.I}, H={args.H} "
            f"({args.dtype}) needs about {format_bytes(need)}; "
            f"{format_bytes(have)} of memory is available")


def validate(cell: str, x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, reset_after: bool = True,
             lengths=None, dy=None, dh_n=None, dc_n=None) -> RNNArgs:
    """Check a call against the contract and return it as :class:`RNNArgs`.

    Raises TypeError for wrong types or dtypes, ValueError for wrong shapes, sizes or
    lengths, MemoryError for a problem that cannot fit; never lets a bad call through.
    Non-contiguous, Fortran-ordered and read-only arrays are accepted and copied to
    writable C order; x and dy are copied with their padding (the steps past a sequence's
    length) zeroed when some sequence is shorter than T.
    """
    spec = cell_spec(cell)
    if not isinstance(reset_after, (bool, np.bool_)):
        raise TypeError(f"reset_after must be True or False, got {reset_after!r}")
    G = spec.n_gates
    x = _as_float_array("x", x)
    if x.ndim != 3:
        raise ValueError(f"x has shape {x.shape}; expected 3 dimensions (T, B, I)")
    T, B, I = x.shape
    if T < 1 or B < 1 or I < 1:
        raise ValueError(f"x has shape {x.shape}; T, B and I must all be >= 1")
    w_hh = _as_float_array("w_hh", w_hh)
    if w_hh.ndim != 2 or w_hh.shape[0] != G * w_hh.shape[1] or w_hh.shape[1] < 1:
        raise ValueError(f"w_hh has shape {w_hh.shape}; expected ({G}*H, H) for {cell}")
    H = w_hh.shape[1]
    arrays = {"x": x, "w_hh": w_hh}
    expected = {
        "h0": ((B, H), "(B, H)"),
        "w_ih": ((G * H, I), f"({G}*H, I)"),
        "b_ih": ((G * H,), f"({G}*H,)"),
        "b_hh": ((G * H,), f"({G}*H,)"),
    }
    given = {"h0": h0, "w_ih": w_ih, "b_ih": b_ih, "b_hh": b_hh}
    initial = {"h0": h0, "c0": c0}
    for name in spec.initial_states:
        expected[name] = ((B, H), "(B, H)")
        given.setdefault(name, initial[name])
    upstream = {name: value for name, value in (("dy", dy), ("dh_n", dh_n), ("dc_n", dc_n))
                if name in upstream_names(spec)}
    if any(value is not None for value in upstream.values()):
        for name in upstream:
            expected[name] = ((T, B, H), "(T, B, H)") if name == "dy" else ((B, H), "(B, H)")
        given.update(upstream)
    for name, value in given.items():
        if value is None:
            raise TypeError(f"{name} is required")
        arrays[name] = _as_float_array(name, value)
        shape, meaning = expected[name]
        _check_shape(name, arrays[name], shape, meaning)
    dtypes = {a.dtype for a in arrays.values()}
    if len(dtypes) > 1:
        listed = ", ".join(f"{n}={a.dtype}" for n, a in arrays.items())
        raise TypeError(f"all arrays must share one dtype; got {listed}")
    contiguous = {n: _contiguous_writable(a) for n, a in arrays.items()}
    lengths = _validate_lengths(lengths, T, B)
    for name in ("x", "dy"):
        if name in contiguous:
            contiguous[name] = _zero_padding(contiguous[name], arrays[name], lengths)
    args = RNNArgs(cell=cell, reset_after=bool(reset_after), lengths=lengths,
                   c0=contiguous.pop("c0", None), dy=contiguous.pop("dy", None),
                   dh_n=contiguous.pop("dh_n", None), dc_n=contiguous.pop("dc_n", None),
                   **contiguous)
    check_fits_in_memory(args)
    return args


# --------------------------------------------------------------------------------------
# The convenience API, built once over a backend's ``prepare``.
# --------------------------------------------------------------------------------------

class ConvenienceAPI(NamedTuple):
    """The four functions of a backend's convenience API."""

    gru_forward: Callable
    gru_backward: Callable
    lstm_forward: Callable
    lstm_backward: Callable


def convenience_api(prepare: Callable[[RNNArgs], Prepared]) -> ConvenienceAPI:
    """The convenience API over ``prepare``."""

    def run_forward(args: RNNArgs):
        prepared = prepare(args)
        result = prepared.forward()
        prepared.synchronize()
        return prepared.to_numpy(result)

    def run_backward(args: RNNArgs) -> dict[str, np.ndarray]:
        prepared = prepare(args)
        result = prepared.training_step()
        prepared.synchronize()
        _outputs, grads = prepared.to_numpy(result)
        return grads

    def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, reset_after=True, lengths=None):
        """GRU over a sequence. Returns y (T,B,H) and h_n (B,H)."""
        return run_forward(validate("gru", x, h0, None, w_ih, w_hh, b_ih, b_hh,
                                    reset_after=reset_after, lengths=lengths))

    def gru_backward(x, h0, w_ih, w_hh, b_ih, b_hh, dy, dh_n, *, reset_after=True,
                     lengths=None):
        """Gradients of sum(y*dy) + sum(h_n*dh_n): dict x, h0, w_ih, w_hh, b_ih, b_hh."""
        return run_backward(validate("gru", x, h0, None, w_ih, w_hh, b_ih, b_hh,
                                     reset_after=reset_after, lengths=lengths,
                                     dy=dy, dh_n=dh_n))

    def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, lengths=None):
        """LSTM over a sequence. Returns y (T,B,H), h_n (B,H) and c_n (B,H)."""
        return run_forward(validate("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                    lengths=lengths))

    def lstm_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, dy, dh_n, dc_n, *, lengths=None):
        """Gradients of sum(y*dy) + sum(h_n*dh_n) + sum(c_n*dc_n): dict x, h0, c0, w_ih,
        w_hh, b_ih, b_hh."""
        return run_backward(validate("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                     lengths=lengths, dy=dy, dh_n=dh_n, dc_n=dc_n))

    return ConvenienceAPI(gru_forward, gru_backward, lstm_forward, lstm_backward)
