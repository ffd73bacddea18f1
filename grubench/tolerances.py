"""Every numerical tolerance of grubench, each with the reason for its value.

An error is measured as in llm.c: a result passes when |out - ref| <= atol + rtol * |ref|
elementwise, and the harness reports max |out - ref| and ||out - ref|| / ||ref||.
The reference is always the float64 NumPy backend on the same inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float

    def allclose(self, out, ref) -> bool:
        return bool(np.all(np.abs(np.asarray(out, np.float64) - ref)
                           <= self.atol + self.rtol * np.abs(ref)))

    def assert_close(self, out, ref, what: str = "result") -> None:
        """Raise AssertionError naming ``what`` and its errors unless ``out`` has ``ref``'s
        shape and passes :meth:`allclose` (so a broadcast can never pass silently)."""
        out, ref = np.asarray(out), np.asarray(ref)
        if out.shape != ref.shape:
            raise AssertionError(f"{what}: shape {out.shape}, expected {ref.shape}")
        if not self.allclose(out, ref):
            max_abs, rel = errors(out, ref)
            raise AssertionError(f"{what}: max abs error {max_abs:.3g}, relative error "
                                 f"{rel:.3g} (rtol={self.rtol}, atol={self.atol})")


# float64 against float64: the same math in another summation order; sums of a few hundred
# products lose a few ulps (2.2e-16 each), so 1e-12 leaves room without hiding a wrong term.
FLOAT64 = Tolerance(rtol=1e-10, atol=1e-12)

# float32 forward against float64: float32 rounds at 6e-8 relative; a GEMM of K <= 2048
# terms and T <= 100 recurrent steps grow that to ~1e-6 at worst on O(1) values.
FLOAT32_FORWARD = Tolerance(rtol=1e-4, atol=1e-5)

# float32 gradients: BPTT sums T steps of products of gradients, each rounded in float32,
# and weight gradients sum T*B terms, so their error grows ~10x over the forward's.
FLOAT32_GRADIENT = Tolerance(rtol=1e-3, atol=1e-4)

# The project's targets for float32 against float64, as ||out - ref|| / ||ref||:
FORWARD_REL_ERR_TARGET = 1e-6
GRADIENT_REL_ERR_TARGET = 1e-4

# Central finite differences in float64 with step 1e-6: truncation error ~h^2 = 1e-12 times
# the third derivative, rounding error ~eps/h = 2e-10; 1e-7 relative is well above both.
FINITE_DIFFERENCE = Tolerance(rtol=1e-6, atol=1e-7)
FINITE_DIFFERENCE_STEP = 1e-6


def forward_tolerance(dtype) -> Tolerance:
    return FLOAT64 if np.dtype(dtype) == np.float64 else FLOAT32_FORWARD


def gradient_tolerance(dtype) -> Tolerance:
    return FLOAT64 if np.dtype(dtype) == np.float64 else FLOAT32_GRADIENT


def errors(out, ref) -> tuple[float, float]:
    """(max abs error, relative error ||out - ref|| / ||ref||) in float64."""
    diff = np.asarray(out, np.float64) - np.asarray(ref, np.float64)
    if diff.size == 0:
        return 0.0, 0.0
    norm = float(np.linalg.norm(ref))
    max_abs = float(np.max(np.abs(diff)))
    rel = float(np.linalg.norm(diff)) / norm if norm > 0 else float(np.linalg.norm(diff))
    return max_abs, rel
