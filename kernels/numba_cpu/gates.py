"""The gate functions, in the arithmetic of the problem's dtype (as torch's gate math).

For float32, tanh and sigmoid are an arithmetic-only rational approximation in float32
(:func:`tanh_rational`), so with ``error_model='numpy'`` and fastmath flags the pointwise
loops vectorize, 16 lanes per AVX-512 register (libm's scalar ``tanh`` does not). float64
uses ``math.tanh`` itself, so float64 results match the reference to its rounding.
"""
from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

from .jit import FASTMATH, JIT, cached_njit

# tanh(x) / x = P(x^2) / Q(x^2) on |x| <= TANH_CLAMP, a (4,5) rational fitted for minimal
# relative error (3.5e-9 in exact arithmetic, by linear programming), evaluated in
# float32: with its roundings within 6 float32 ulps of tanh, mean 0.04 (the tests check
# every 61st float32). Past 9.02, tanh rounds to +-1 in float32: clamping there is exact.
TANH_CLAMP = np.float32(9.02)
P0, P1, P2, P3, P4 = (np.float32(c) for c in (
    0.9999999999915583, 0.13774671356493162, 0.003994863080375839,
    3.12922463579297e-05, 4.972694864481796e-08))
Q1, Q2, Q3, Q4, Q5 = (np.float32(c) for c in (
    0.4710800463242281, 0.02768821986376614, 0.0004182718017601931,
    1.5945285894167751e-06, 7.167683350473911e-10))
ONE, HALF = np.float32(1.0), np.float32(0.5)


@cached_njit(**JIT)
def tanh_rational(x):
    """tanh of a float32 in float32 arithmetic only (vectorizes, 16 lanes per AVX-512
    register); never past +-1. NaN stays NaN: the clamps compare, never min/max."""
    x = TANH_CLAMP if x > TANH_CLAMP else x
    x = -TANH_CLAMP if x < -TANH_CLAMP else x
    s = x * x
    p = P0 + s * (P1 + s * (P2 + s * (P3 + s * P4)))
    q = ONE + s * (Q1 + s * (Q2 + s * (Q3 + s * (Q4 + s * Q5))))
    t = x * p / q
    t = ONE if t > ONE else t
    return -ONE if t < -ONE else t


def gate_tanh(x, dtype):
    """tanh of a pre-activation, in the arithmetic of ``dtype``."""
    raise NotImplementedError("gate_tanh is for compiled code")


def gate_sigmoid(x, dtype):
    """The logistic function as 0.5 + 0.5 tanh(x/2), like the reference."""
    raise NotImplementedError("gate_sigmoid is for compiled code")


def _is_float32(dtype):
    return getattr(dtype, "dtype", dtype) == types.float32


@overload(gate_tanh, jit_options=dict(fastmath=FASTMATH, error_model="numpy"))
def _gate_tanh(x, dtype):
    if _is_float32(dtype):
        return lambda x, dtype: tanh_rational(np.float32(x))
    return lambda x, dtype: math.tanh(x)


@overload(gate_sigmoid, jit_options=dict(fastmath=FASTMATH, error_model="numpy"))
def _gate_sigmoid(x, dtype):
    if _is_float32(dtype):
        return lambda x, dtype: HALF + HALF * tanh_rational(HALF * np.float32(x))
    return lambda x, dtype: 0.5 * (1.0 + math.tanh(0.5 * x))


@cached_njit(**JIT)
def tanh_for(values, out):
    """out = gate_tanh(values) elementwise over 1-D arrays; the test and timing hook."""
    for i in range(values.size):
        out[i] = gate_tanh(values[i], out.dtype)


@cached_njit(**JIT)
def sigmoid_for(values, out):
    """out = gate_sigmoid(values) elementwise over 1-D arrays."""
    for i in range(values.size):
        out[i] = gate_sigmoid(values[i], out.dtype)
