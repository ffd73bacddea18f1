"""GRU and LSTM weights: a seeded initializer like torch's, and exact conversions between
the torch layout (grubench's contract) and Keras and ONNX layouts."""
from __future__ import annotations

import numpy as np

from grubench.kernels.contract import GATES


def init_weights(cell: str, input_size: int, hidden_size: int, *, seed: int = 0,
                 dtype=np.float32) -> dict[str, np.ndarray]:
    """torch.nn.GRU/LSTM's default initialization: every weight and bias ~ U(-1/sqrt(H),
    1/sqrt(H)). Returns w_ih (G*H, I), w_hh (G*H, H), b_ih (G*H,), b_hh (G*H,)."""
    if cell not in GATES:
        raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(GATES)}")
    if input_size < 1 or hidden_size < 1:
        raise ValueError(f"input_size and hidden_size must be >= 1, got {input_size}, "
                         f"{hidden_size}")
    rows = GATES[cell] * hidden_size
    bound = 1.0 / np.sqrt(hidden_size)
    rng = np.random.default_rng(seed)
    shapes = {"w_ih": (rows, input_size), "w_hh": (rows, hidden_size),
              "b_ih": (rows,), "b_hh": (rows,)}
    return {name: rng.uniform(-bound, bound, shape).astype(dtype)
            for name, shape in shapes.items()}
