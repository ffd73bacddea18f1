"""Problems: seeded inputs for one (cell, variant, T, B, I, H, dtype) case, and the
analytic quantities the harness reports beside its measurements (FLOPs, bytes)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grubench.kernels.contract import GATES, RNNArgs, validate
from grubench.weights import init_weights


@dataclass(frozen=True)
class Problem:
    """One problem size. ``variable_lengths`` draws lengths in [0, T] (seeded)."""

    cell: str
    T: int
    B: int
    I: int  # noqa: E741 - the conventional name of the input size
    H: int
    dtype: str = "float32"
    reset_after: bool = True
    variable_lengths: bool = False

    def __post_init__(self):
        if self.cell not in GATES:
            raise ValueError(f"unknown cell {self.cell!r}; expected one of {', '.join(GATES)}")
        for name in ("T", "B", "I", "H"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    @property
    def parameter_count(self) -> int:
        """Weights and both biases: G*H*(I + H + 2)."""
        return self.gates * self.H * (self.I + self.H + 2)

    def flops(self, training: bool) -> float:
        """Matrix-product FLOPs, input projection included: 2*G*H*(I+H)*B*T forward.
        DeepBench counts only the recurrent part, 2*G*H^2*B*T (see recurrent_flops).
        Backward costs two products per forward one (dX and dW), so training = 3x forward."""
        forward = 2.0 * self.gates * self.H * (self.I + self.H) * self.B * self.T
        return forward * (3 if training else 1)

    def recurrent_flops(self) -> float:
        """DeepBench's forward FLOPs: 2*G*H^2*N*T (input projection excluded)."""
        return 2.0 * self.gates * self.H ** 2 * self.B * self.T

    def expected_bytes(self, training: bool) -> int:
        """Analytic bytes: parameters, inputs and outputs, plus in training the minimum state
        backward needs (per step: the gate activations and the previous state) and gradients."""
        itemsize = np.dtype(self.dtype).itemsize
        T, B, I, H, G = self.T, self.B, self.I, self.H, self.gates
        states = 2 if self.cell == "lstm" else 1
        elements = self.parameter_count + T * B * I + T * B * H + 2 * states * B * H
        if training:
            elements += T * B * G * H + T * B * H * states   # saved gates and states
            elements += self.parameter_count + T * B * I + T * B * H + states * B * H  # grads
        return elements * itemsize

    def label(self) -> str:
        return f"{self.T},{self.B},{self.I},{self.H}"

    def make_args(self, seed: int = 0, with_grads: bool = True) -> RNNArgs:
        """Seeded, validated inputs: torch-style weights, inputs ~ N(0, 1)."""
        rng = np.random.default_rng(seed)
        dtype = np.dtype(self.dtype)
        T, B, I, H = self.T, self.B, self.I, self.H

        def normal(*shape):
            return rng.standard_normal(shape).astype(dtype)

        weights = init_weights(self.cell, I, H, seed=seed + 1, dtype=dtype)
        lengths = rng.integers(0, T + 1, size=B) if self.variable_lengths else None
        grads = {}
        if with_grads:
            grads = dict(dy=normal(T, B, H), dh_n=normal(B, H))
            if self.cell == "lstm":
                grads["dc_n"] = normal(B, H)
        return validate(self.cell, normal(T, B, I), normal(B, H),
                        normal(B, H) if self.cell == "lstm" else None,
                        weights["w_ih"], weights["w_hh"], weights["b_ih"], weights["b_hh"],
                        reset_after=self.reset_after, lengths=lengths, **grads)
