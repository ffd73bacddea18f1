"""What is measured: a :class:`Case` (one computation) and a :class:`Task` (a case on one
backend at one thread count), as torch.utils.benchmark separates a TaskSpec from its
Measurement.

A case owns every quantity computed from its sizes (parameters, FLOPs, bytes) and makes its
seeded inputs, so suites, the runner, the worker, the regression gate, the training runner
and the GPU script all read one definition. Results rows carry a case's fields under the
names of :data:`CASE_FIELDS`; :meth:`Case.from_row` reads one back.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from grubench.kernels.cells import CellSpec, cell
from grubench.kernels.contract import RNNArgs, validate
from grubench.weights import init_weights

MODES = ("inference", "training")
DTYPES = ("float32", "float64")

#: A case's fields as results rows name them, in column order.
CASE_FIELDS = ("cell", "variant", "mode", "T", "B", "I", "H", "dtype")


@dataclass(frozen=True)
class Case:
    """One computation: a cell (in one of its variants) over (T, B, I, H), inference or
    training, in one dtype. ``variant`` None means the cell's default. ``variable_lengths``
    draws the sequence lengths in [0, T] from the seed."""

    cell: str
    T: int
    B: int
    I: int  # noqa: E741 - the conventional name of the input size
    H: int
    variant: str | None = None
    mode: str = "inference"
    dtype: str = "float32"
    variable_lengths: bool = False
    spec: CellSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        spec = cell(self.cell)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "variant", spec.check_variant(self.variant or spec.variants[0]))
        for name in ("T", "B", "I", "H"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    @classmethod
    def from_row(cls, row) -> Case:
        """The case of a results row or a worker request (any mapping with
        :data:`CASE_FIELDS`; ``variable_lengths`` optional)."""
        return cls(row["cell"], int(row["T"]), int(row["B"]), int(row["I"]), int(row["H"]),
                   variant=row["variant"], mode=row["mode"], dtype=row["dtype"],
                   variable_lengths=bool(row.get("variable_lengths", False)))

    def as_row(self) -> dict:
        """The case's fields under their results-row names."""
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

    def label(self) -> str:
        return f"{self.T},{self.B},{self.I},{self.H}"

    @property
    def key(self) -> str:
        """A stable name: ``gru/reset_after/inference/100,1,64,64/float32`` (no variant part
        for a cell without variants; ``/lengths`` when lengths vary)."""
        variant = "" if len(self.spec.variants) == 1 else f"/{self.variant}"
        lengths = "/lengths" if self.variable_lengths else ""
        return f"{self.cell}{variant}{lengths}/{self.mode}/{self.label()}/{self.dtype}"

    # ------------------------------------------------------------------ quantities

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def parameter_count(self) -> int:
        return self.spec.parameter_count(self.I, self.H)

    def flops(self, training: bool | None = None) -> float:
        """Matrix-product FLOPs of the case's mode (or of ``training``), input projection
        included (see :meth:`CellSpec.flops`)."""
        training = self.training if training is None else training
        return self.spec.flops(self.T, self.B, self.I, self.H, training)

    def recurrent_flops(self) -> float:
        return self.spec.recurrent_flops(self.T, self.B, self.H)

    def input_bytes(self, training: bool | None = None) -> int:
        training = self.training if training is None else training
        return self.spec.input_elements(self.T, self.B, self.I, self.H, training) * self.itemsize

    def expected_bytes(self, training: bool | None = None) -> int:
        training = self.training if training is None else training
        return (self.spec.expected_elements(self.T, self.B, self.I, self.H, training)
                * self.itemsize)

    # ------------------------------------------------------------------ inputs

    def make_args(self, seed: int = 0, with_grads: bool | None = None) -> RNNArgs:
        """Seeded, validated inputs: torch-style weights, inputs ~ N(0, 1); upstream
        gradients when ``with_grads`` (default: in training)."""
        with_grads = self.training if with_grads is None else with_grads
        rng = np.random.default_rng(seed)
        dtype = np.dtype(self.dtype)
        T, B, I, H = self.T, self.B, self.I, self.H

        def normal(*shape):
            return rng.standard_normal(shape).astype(dtype)

        weights = init_weights(self.cell, I, H, seed=seed + 1, dtype=dtype)
        lengths = rng.integers(0, T + 1, size=B) if self.variable_lengths else None
        grads = {}   # drawn before x and the states, so every seed keeps its inputs
        if with_grads:
            grads["dy"] = normal(T, B, H)
            grads.update({f"d{name}": normal(B, H) for name in self.spec.outputs[1:]})
        x = normal(T, B, I)
        states = {name: normal(B, H) for name in self.spec.initial_states}
        return validate(self.cell, x, states["h0"], states.get("c0"), weights["w_ih"],
                        weights["w_hh"], weights["b_ih"], weights["b_hh"],
                        reset_after=self.reset_after, lengths=lengths, **grads)


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
