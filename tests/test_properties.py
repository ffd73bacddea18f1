"""Properties every backend keeps, on random calls (hypothesis): shapes from 1 (odd sizes,
I = 1), lengths (0 and T included, or none), both GRU variants and the LSTM, float32 and
float64, weight scales from small to saturating, C-ordered, strided, Fortran-ordered and
read-only inputs, and padding (the steps past a sequence's length) poisoned with NaN,
infinities or huge values. For each call of each available backend's convenience API:

* the outputs and every gradient match the float64 reference on the clean inputs
  (tolerances of grubench.tolerances): padding has no effect;
* no input is modified;
* no output or gradient shares memory with an input.

The ``ci`` profile (tests/conftest.py) keeps this to about two minutes on two cores;
``--hypothesis-profile=long`` runs twenty times as many examples for release checks. Calls
keep to the dtypes and variants the kernels compile anyway (numba compiles per dtype).
numba-cuda runs on the CUDA simulator without a GPU, where each call takes seconds:
it gets smaller shapes and a tenth of the examples.
"""
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from grubench import backends, tolerances
from grubench.kernels import reference

VARIANTS = ("gru-reset-after", "gru-reset-before", "lstm")
LAYOUTS = ("contiguous", "strided", "fortran", "readonly")
POISONS = (np.nan, np.inf, -np.inf, 1e30)
SIMULATED = ("numba-cuda",)


@dataclass
class Call:
    variant: str
    dtype: type
    inputs: dict          # x, h0[, c0], w_ih, w_hh, b_ih, b_hh, dy, dh_n[, dc_n]: clean
    lengths: np.ndarray | None
    layout: str
    poison: float

    @property
    def cell(self) -> str:
        return "lstm" if self.variant == "lstm" else "gru"

    def padding(self) -> np.ndarray | None:
        """(T, B) True at the steps past each sequence's length."""
        if self.lengths is None:
            return None
        T = self.inputs["x"].shape[0]
        return np.arange(T)[:, None] >= self.lengths[None, :]

    def poisoned(self) -> dict:
        """The inputs with the padding of x and dy set to the poison, laid out as drawn."""
        arrays = {name: value.copy() for name, value in self.inputs.items()}
        padding = self.padding()
        if padding is not None:
            arrays["x"][padding] = self.poison
            arrays["dy"][padding] = self.poison
        return {name: lay_out(value, self.layout) for name, value in arrays.items()}


def lay_out(array: np.ndarray, layout: str) -> np.ndarray:
    """The same values as a strided view, a Fortran-ordered copy or a read-only array."""
    if layout == "strided":
        wide = np.repeat(array, 2, axis=-1)
        return wide[..., ::2]
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "readonly":
        array.setflags(write=False)
    return array


@st.composite
def calls(draw, most: int = 9) -> Call:
    variant = draw(st.sampled_from(VARIANTS))
    dtype = draw(st.sampled_from((np.float32, np.float64)))
    T, B, I, H = (draw(st.integers(1, most)) for _ in range(4))
    lengths = draw(st.one_of(st.none(), st.just([0] * B), st.just([T] * B),
                             st.lists(st.integers(0, T), min_size=B, max_size=B)))
    scale = draw(st.sampled_from((0.05, 0.5, 1.0, 3.0)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    G = 4 if variant == "lstm" else 3

    def normal(*shape, std=1.0):
        return (std * rng.standard_normal(shape)).astype(dtype)

    weight = scale / np.sqrt(H)
    inputs = dict(x=normal(T, B, I), h0=normal(B, H))
    if variant == "lstm":
        inputs["c0"] = normal(B, H)
    inputs.update(w_ih=normal(G * H, I, std=weight), w_hh=normal(G * H, H, std=weight),
                  b_ih=normal(G * H, std=weight), b_hh=normal(G * H, std=weight),
                  dy=normal(T, B, H), dh_n=normal(B, H))
    if variant == "lstm":
        inputs["dc_n"] = normal(B, H)
    return Call(variant, dtype, inputs,
                None if lengths is None else np.array(lengths, np.int64),
                draw(st.sampled_from(LAYOUTS)), draw(st.sampled_from(POISONS)))


def run(api, call: Call, arrays: dict, training: bool = True):
    """(outputs, grads) of one backend (``api`` has the four convenience functions); grads
    is {} when ``training`` is false (an inference-only backend)."""
    state = ("x", "h0", "c0") if call.cell == "lstm" else ("x", "h0")
    weights = tuple(arrays[n] for n in (*state, "w_ih", "w_hh", "b_ih", "b_hh"))
    if call.cell == "lstm":
        outputs = api.lstm_forward(*weights, lengths=call.lengths)
        if not training:
            return outputs, {}
        grads = api.lstm_backward(*weights, arrays["dy"], arrays["dh_n"], arrays["dc_n"],
                                  lengths=call.lengths)
    else:
        after = call.variant == "gru-reset-after"
        outputs = api.gru_forward(*weights, reset_after=after, lengths=call.lengths)
        if not training:
            return outputs, {}
        grads = api.gru_backward(*weights, arrays["dy"], arrays["dh_n"], reset_after=after,
                                 lengths=call.lengths)
    return outputs, grads


def check(backend_name: str, call: Call) -> None:
    backend = backends.get(backend_name)
    # What the registry says a backend cannot run is not asked of it (an inference-only
    # peer: forward only; a dtype its library lacks: no call).
    assume(not backend.entry.why_unsupported("inference", call.dtype))
    training = not backend.entry.why_unsupported("training", call.dtype)
    clean64 = {name: value.astype(np.float64) for name, value in call.inputs.items()}
    want_outputs, want_grads = run(reference, call, clean64, training)
    arrays = call.poisoned()
    before = {name: value.copy() for name, value in arrays.items()}
    outputs, grads = run(backend, call, arrays, training)

    forward = tolerances.forward_tolerance(call.dtype)
    names = ("y", "h_n", "c_n")[:len(want_outputs)]
    for name, got, want in zip(names, outputs, want_outputs, strict=True):
        assert got.dtype == call.dtype, name
        forward.assert_close(got, want, f"{backend_name} {name}")
    gradient = tolerances.gradient_tolerance(call.dtype)
    assert list(grads) == list(want_grads)
    for name, want in want_grads.items():
        assert grads[name].dtype == call.dtype, name
        gradient.assert_close(grads[name], want, f"{backend_name} grad {name}")

    for name, value in arrays.items():
        np.testing.assert_array_equal(value, before[name], err_msg=f"{name} was modified")
    results = [*outputs, *grads.values()]
    for result in results:
        for name, value in arrays.items():
            assert not np.shares_memory(result, value), f"a result aliases input {name}"
    for i, first in enumerate(results):
        for second in results[i + 1:]:
            assert not np.shares_memory(first, second), "two results share memory"


#: Backends that compile a program per input shape (jax.jit): every shape drawn costs them a
#: compilation of seconds, so they get a fifth of the examples (the longest test of the
#: suite otherwise); their own tests (tests/kernels/test_jax.py) cover shapes, variants
#: and lengths case by case.
COMPILES_PER_SHAPE = ("jax",)
CPU = [b.name for b in backends.available() if b.name not in SIMULATED + COMPILES_PER_SHAPE]
PER_SHAPE = [b.name for b in backends.available() if b.name in COMPILES_PER_SHAPE]
ON_SIMULATOR = [b.name for b in backends.available() if b.name in SIMULATED]


@pytest.mark.parametrize("backend_name", CPU)
@given(call=calls())
def test_every_backend_matches_the_reference_ignores_padding_and_keeps_inputs(
        backend_name, call):
    check(backend_name, call)


@pytest.mark.skipif(not PER_SHAPE, reason="no backend here compiles per shape")
@pytest.mark.parametrize("backend_name", PER_SHAPE)
@settings(max_examples=max(2, settings.default.max_examples // 5))
@given(call=calls())
def test_backends_that_compile_per_shape_keep_the_same_properties(backend_name, call):
    check(backend_name, call)


@pytest.mark.slow
@pytest.mark.skipif(not ON_SIMULATOR, reason="numba-cuda is unavailable here")
@pytest.mark.parametrize("backend_name", ON_SIMULATOR)
@settings(max_examples=max(2, settings.default.max_examples // 10))
@given(call=calls(most=3))
def test_numba_cuda_keeps_the_same_properties(backend_name, call):
    check(backend_name, call)
