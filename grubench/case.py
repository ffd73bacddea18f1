"""What is measured: a :class:`Case` (one computation) and a :class:`Task` (a case on one
backend at one thread count), as torch.utils.benchmark separates a TaskSpec from its
Measurement.

A case owns every quantity computed from its sizes (parameters, FLOPs, bytes) and makes its
seeded inputs, so suites, the runner, the worker, the regression gate, the training runner
and the GPU script all read one definition. Results rows carry a case's fields under the
names of :data:`CASE_FIELDS`; :meth:`Case.from_row` reads one back (rows written before a
field existed take its default).

A case is one layer in one direction, or a network as torch.nn.GRU/LSTM builds it
(``layers`` stacked, ``directions`` 2 for bidirectional; :class:`NetworkSpec`). Sequence
lengths follow a distribution of :data:`LENGTHS` (see :func:`draw_lengths`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from grubench.kernels.cells import CellSpec, NetworkSpec, cell
from grubench.kernels.contract import RNNArgs, validate
from grubench.weights import init_weights

MODES = ("inference", "training")
DTYPES = ("float32", "float64")

#: How a case's sequence lengths are drawn (:func:`draw_lengths`).
LENGTHS = ("full", "uniform", "sorted", "short-tail", "any")

#: A case's fields as results rows name them, in column order.
CASE_FIELDS = ("cell", "variant", "mode", "T", "B", "I", "H", "dtype",
               "layers", "directions", "lengths")
#: The network fields' values in rows written before they existed.
NETWORK_DEFAULTS = {"layers": 1, "directions": 1, "lengths": "full"}
#: short-tail: 1/SHORT_TAIL_DIVISOR of the batch is short, at most T/SHORT_TAIL_DIVISOR steps.
SHORT_TAIL_DIVISOR = 4


def draw_lengths(distribution: str, T: int, B: int, rng: np.random.Generator
                 ) -> np.ndarray | None:
    """B sequence lengths in [0, T] drawn from ``rng`` (None for ``full``: every sequence
    has T steps):

    * ``uniform``: each length uniform in [ceil(T/2), T];
    * ``sorted``: the same draw, sorted longest first (what pack_padded_sequence's
      enforce_sorted=True wants, and a kernel may exploit);
    * ``short-tail``: every length T except floor(B/4) sequences, at positions drawn from
      ``rng``, whose lengths are uniform in [1, ceil(T/4)] (a batch of mostly full
      sequences with a few short ones, the case padding wastes least on);
    * ``any``: each length uniform in [0, T], empty sequences included (the first
      distribution the harness had: ``variable_lengths=True``).
    """
    if distribution == "full":
        return None
    if distribution == "any":
        return rng.integers(0, T + 1, size=B)
    if distribution in ("uniform", "sorted"):
        lengths = rng.integers((T + 1) // 2, T + 1, size=B)
        return np.sort(lengths)[::-1].copy() if distribution == "sorted" else lengths
    if distribution == "short-tail":
        lengths = np.full(B, T, dtype=np.int64)
        short = rng.choice(B, size=B // SHORT_TAIL_DIVISOR, replace=False)
        lengths[short] = rng.integers(1, -(-T // SHORT_TAIL_DIVISOR) + 1, size=len(short))
        return lengths
    raise ValueError(f"lengths must be one of {', '.join(LENGTHS)}, got {distribution!r}")


def network_parts(layers: int, directions: int, lengths: str) -> list[str]:
    """What sets a case apart from one full-length layer in one direction, in words (empty
    for such a case): ["2 layers", "bidirectional", "lengths uniform"]."""
    parts = [f"{layers} layers"] if layers > 1 else []
    parts += ["bidirectional"] if directions == 2 else []
    return parts + ([f"lengths {lengths}"] if lengths != "full" else [])


def network_fields(row) -> dict:
    """A results row's layers, directions and lengths (any mapping; a field it lacks, or
    holds as None or NaN, takes its :data:`NETWORK_DEFAULTS` value), typed as a Case's."""
    fields = {}
    for name, default in NETWORK_DEFAULTS.items():
        value = row.get(name)
        fields[name] = default if value is None or value != value else type(default)(value)
    return fields


@dataclass(frozen=True)
class NetworkInputs:
    """A network case's seeded inputs, time-major, parameters by torch name
    (``NetworkSpec.parameter_shapes``); ``dy`` (T, B, directions*H), ``dh_n``/``dc_n``
    (layers*directions, B, H) or None outside training."""

    spec: NetworkSpec
    reset_after: bool
    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray | None
    params: dict
    lengths: np.ndarray | None
    dy: np.ndarray | None = None
    dh_n: np.ndarray | None = None
    dc_n: np.ndarray | None = None

    @property
    def has_grads(self) -> bool:
        return self.dy is not None

    def upstream(self) -> tuple:
        """(dy, dh_n[, dc_n]), as the network's backward takes them."""
        return (self.dy, self.dh_n) + ((self.dc_n,) if self.spec.cell == "lstm" else ())

    def astype(self, dtype) -> NetworkInputs:
        """The same inputs in ``dtype`` (the float64 reference's)."""
        def cast(array):
            return None if array is None else array.astype(dtype)
        return replace(self, x=cast(self.x), h0=cast(self.h0), c0=cast(self.c0),
                       params={name: cast(value) for name, value in self.params.items()},
                       dy=cast(self.dy), dh_n=cast(self.dh_n), dc_n=cast(self.dc_n))


@dataclass(frozen=True)
class Case:
    """One computation: a cell (in one of its variants) over (T, B, I, H), inference or
    training, in one dtype; ``layers`` stacked layers, each in ``directions`` (1, or 2:
    bidirectional) directions; sequence lengths drawn from the seed by the ``lengths``
    distribution (:func:`draw_lengths`). ``variant`` None means the cell's default.

    ``variable_lengths=True`` is the older spelling of ``lengths="any"``; once built,
    ``variable_lengths`` says whether the lengths vary (``lengths`` is not ``full``)."""

    cell: str
    T: int
    B: int
    I: int  # noqa: E741 - the conventional name of the input size
    H: int
    variant: str | None = None
    mode: str = "inference"
    dtype: str = "float32"
    variable_lengths: bool = field(default=False, compare=False)
    layers: int = 1
    directions: int = 1
    lengths: str = "full"
    spec: CellSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        spec = cell(self.cell)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "variant", spec.check_variant(self.variant or spec.variants[0]))
        for name in ("T", "B", "I", "H", "layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.directions not in (1, 2) or isinstance(self.directions, bool):
            raise ValueError(f"directions must be 1 or 2 (bidirectional), "
                             f"got {self.directions!r}")
        object.__setattr__(self, "directions", int(self.directions))
        if self.lengths not in LENGTHS:
            raise ValueError(f"lengths must be one of {', '.join(LENGTHS)}, "
                             f"got {self.lengths!r}")
        if self.variable_lengths and self.lengths == "full":
            object.__setattr__(self, "lengths", "any")
        object.__setattr__(self, "variable_lengths", self.lengths != "full")

    @classmethod
    def from_row(cls, row) -> Case:
        """The case of a results row or a worker request (any mapping with
        :data:`CASE_FIELDS`; the network fields are optional (:data:`NETWORK_DEFAULTS`),
        and an older row's ``variable_lengths`` means lengths ``any``)."""
        network = network_fields(row)
        return cls(row["cell"], int(row["T"]), int(row["B"]), int(row["I"]), int(row["H"]),
                   variant=row["variant"], mode=row["mode"], dtype=row["dtype"],
                   variable_lengths=bool(row.get("variable_lengths", False)),
                   **network)

    def as_row(self) -> dict:
        """The case's fields under their results-row names (a worker request's too)."""
        return {name: getattr(self, name) for name in CASE_FIELDS}

    # ------------------------------------------------------------------ identity

    @property
    def training(self) -> bool:
        return self.mode == "training"

    @property
    def reset_after(self) -> bool:
        return self.spec.reset_after(self.variant)

    @property
    def gates(self) -> int:
        return self.spec.n_gates

    @property
    def size(self) -> tuple[int, int, int, int]:
        return (self.T, self.B, self.I, self.H)

    @property
    def is_network(self) -> bool:
        """More than one layer or direction: a network call rather than one layer's."""
        return self.layers > 1 or self.directions > 1

    @property
    def network(self) -> NetworkSpec:
        return NetworkSpec(self.cell, self.I, self.H, num_layers=self.layers,
                           bidirectional=self.directions == 2)

    def label(self) -> str:
        return f"{self.T},{self.B},{self.I},{self.H}"

    def network_parts(self) -> list[str]:
        """What sets the case apart from one full-length layer in one direction, in words
        (:func:`network_parts`)."""
        return network_parts(self.layers, self.directions, self.lengths)

    @property
    def key(self) -> str:
        """A stable name: ``gru/reset_after/inference/100,1,64,64/float32`` (no variant part
        for a cell without variants); a network adds ``/layers2``, ``/bidirectional``;
        varying lengths add ``/lengths`` (``any``) or ``/lengths-uniform`` etc."""
        variant = "" if len(self.spec.variants) == 1 else f"/{self.variant}"
        network = (f"/layers{self.layers}" if self.layers > 1 else "") + (
            "/bidirectional" if self.directions == 2 else "")
        lengths = {"full": "", "any": "/lengths"}.get(self.lengths, f"/lengths-{self.lengths}")
        return f"{self.cell}{variant}{network}{lengths}/{self.mode}/{self.label()}/{self.dtype}"

    # ------------------------------------------------------------------ quantities

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def parameter_count(self) -> int:
        return self.network.parameter_count()

    def _layer_input_sizes(self) -> list[int]:
        """The input size of each (layer, direction) call: I, then directions*H."""
        return [self.network.layer_input_size(layer)
                for layer, _direction, _suffix in self.network.layers()]

    def flops(self, training: bool | None = None) -> float:
        """Matrix-product FLOPs of the case's mode (or of ``training``), input projection
        included (see :meth:`CellSpec.flops`), summed over layers and directions (layer
        k > 0 reads directions*H features). Padding steps count: the FLOPs are those of
        the full-length problem whatever the lengths."""
        training = self.training if training is None else training
        return sum(self.spec.flops(self.T, self.B, size, self.H, training)
                   for size in self._layer_input_sizes())

    def recurrent_flops(self) -> float:
        return self.spec.recurrent_flops(self.T, self.B, self.H) * self.layers * self.directions

    def input_bytes(self, training: bool | None = None) -> int:
        """Bytes of the call's inputs: parameters, x, the initial states of every layer and
        direction and, in training, dy."""
        training = self.training if training is None else training
        elements = self.spec.input_elements(self.T, self.B, self.I, self.H, training)
        if self.is_network:
            states = len(self.spec.states) * self.B * self.H
            elements += (self.parameter_count - self.spec.parameter_count(self.I, self.H)
                         + states * (self.layers * self.directions - 1)
                         + (self.T * self.B * self.H * (self.directions - 1) if training
                            else 0))
        return elements * self.itemsize

    def expected_bytes(self, training: bool | None = None) -> int:
        """Analytic bytes the call holds: the sum of its (layer, direction) calls'
        (:meth:`CellSpec.expected_elements`)."""
        training = self.training if training is None else training
        return sum(self.spec.expected_elements(self.T, self.B, size, self.H, training)
                   for size in self._layer_input_sizes()) * self.itemsize

    # ------------------------------------------------------------------ inputs

    def make_args(self, seed: int = 0, with_grads: bool | None = None
                  ) -> RNNArgs | NetworkInputs:
        """Seeded inputs: torch-style weights, inputs ~ N(0, 1); upstream gradients when
        ``with_grads`` (default: in training). One layer in one direction: validated
        contract arguments (RNNArgs); a network: :class:`NetworkInputs`, whose layer 0's
        forward weights, lengths and x are those of the same case with one layer."""
        with_grads = self.training if with_grads is None else with_grads
        if self.is_network:
            return self._network_inputs(seed, with_grads)
        rng = np.random.default_rng(seed)
        dtype = np.dtype(self.dtype)
        T, B, I, H = self.T, self.B, self.I, self.H

        def normal(*shape):
            return rng.standard_normal(shape).astype(dtype)

        weights = init_weights(self.cell, I, H, seed=seed + 1, dtype=dtype)
        lengths = draw_lengths(self.lengths, T, B, rng)
        grads = {}   # drawn before x and the states, so every seed keeps its inputs
        if with_grads:
            grads["dy"] = normal(T, B, H)
            grads.update({f"d{name}": normal(B, H) for name in self.spec.outputs[1:]})
        x = normal(T, B, I)
        states = {name: normal(B, H) for name in self.spec.initial_states}
        return validate(self.cell, x, states["h0"], states.get("c0"), weights["w_ih"],
                        weights["w_hh"], weights["b_ih"], weights["b_hh"],
                        reset_after=self.reset_after, lengths=lengths, **grads)

    def _network_inputs(self, seed: int, with_grads: bool) -> NetworkInputs:
        rng = np.random.default_rng(seed)
        dtype = np.dtype(self.dtype)
        network, T, B, H = self.network, self.T, self.B, self.H

        def normal(*shape):
            return rng.standard_normal(shape).astype(dtype)

        torch_names = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih",
                       "b_hh": "bias_hh"}
        params = {}
        for index, (layer, _direction, suffix) in enumerate(network.layers()):
            weights = init_weights(self.cell, network.layer_input_size(layer), H,
                                   seed=seed + 1 + index, dtype=dtype)
            params.update({torch_names[name] + suffix: value
                           for name, value in weights.items()})
        lengths = draw_lengths(self.lengths, T, B, rng)
        grads = {}
        if with_grads:
            grads["dy"] = normal(T, B, network.output_size)
            grads.update({f"d{name}": normal(*network.state_shape(B))
                          for name in self.spec.outputs[1:]})
        x = normal(T, B, self.I)
        states = {name: normal(*network.state_shape(B)) for name in self.spec.initial_states}
        return NetworkInputs(network, self.reset_after, x, states["h0"], states.get("c0"),
                             params, lengths, **grads)


@dataclass(frozen=True)
class Task:
    """A case on one backend at one thread count: what one measurement times."""

    case: Case
    backend: str
    threads: int = 1

    @property
    def key(self) -> str:
        """``numba-cpu/gru/reset_after/inference/100,1,64,64/float32/t1``."""
        return f"{self.backend}/{self.case.key}/t{self.threads}"

    def as_row(self) -> dict:
        return {"backend": self.backend, **self.case.as_row(), "threads": self.threads}
