"""The oracle's proof: the NumPy reference against sources we did not write.

* torch.nn.GRU / torch.nn.LSTM (used directly, not through grubench's torch backend):
  forward and every gradient by autograd, float32 and float64, lengths through
  pack_padded_sequence;
* central finite differences of the reference's own forward (float64): every gradient of
  both GRU variants and the LSTM, with lengths;
* non-finite inputs.

The reset-before GRU, which torch lacks, and the LSTM are also checked against ONNX
Runtime's and Keras' implementations in tests/test_weights.py (through the converters).
"""
import dataclasses

import numpy as np
import pytest

from grubench import tolerances
from grubench.kernels import reference
from grubench.kernels.contract import validate
from grubench.case import Case

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

# (cell, reset_after): every equation variant; reset_after means nothing to an LSTM.
VARIANTS = [("gru", True), ("gru", False), ("lstm", True)]
VARIANT_IDS = ["gru-reset-after", "gru-reset-before", "lstm"]
TORCH_VARIANTS = [("gru", True), ("lstm", True)]
TORCH_IDS = ["gru", "lstm"]
WEIGHTS = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0",
           "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}


def make_args(cell, T, B, I, H, dtype="float64", *, reset_after=True, lengths=None, seed=0):
    """Seeded inputs and upstream gradients, validated as the contract does."""
    base = Case(cell, T, B, I, H, dtype=dtype).make_args(seed, with_grads=True)
    return validate(cell, base.x, base.h0, base.c0, base.w_ih, base.w_hh, base.b_ih,
                    base.b_hh, reset_after=reset_after, lengths=lengths, dy=base.dy,
                    dh_n=base.dh_n, dc_n=base.dc_n)


def upstream_of(args) -> tuple:
    return (args.dy, args.dh_n) + ((args.dc_n,) if args.cell == "lstm" else ())


def reference_step(args):
    """The reference's outputs (y, h_n[, c_n]) and gradients."""
    return reference.prepare(args).training_step()


def torch_step(args):
    """torch.nn.GRU / LSTM on the same arrays: outputs and autograd gradients. Sequences of
    length 0, which pack_padded_sequence refuses, get the contract's rule instead: y = 0,
    the state stays h0 (c0), and the gradient passes straight from dh_n to dh0."""
    lengths = args.lengths
    kept = np.arange(args.B) if lengths is None else np.flatnonzero(lengths)
    module = (torch.nn.GRU if args.cell == "gru" else torch.nn.LSTM)(
        args.I, args.H, dtype=getattr(torch, args.dtype.name))
    with torch.no_grad():
        for name, parameter in WEIGHTS.items():
            getattr(module, parameter).copy_(torch.from_numpy(getattr(args, name)))
    states = ("h0", "c0") if args.cell == "lstm" else ("h0",)
    leaves = {name: torch.tensor(getattr(args, name)[..., kept, :], requires_grad=True)
              for name in ("x",) + states}
    initial = tuple(leaves[name][None] for name in states)
    x = leaves["x"]
    if lengths is not None:
        x = pack_padded_sequence(x, torch.from_numpy(lengths[kept]), enforce_sorted=False)
    y, final = module(x, initial if args.cell == "lstm" else initial[0])
    if lengths is not None:
        y, _ = pad_packed_sequence(y, total_length=args.T)
    final_states = final if args.cell == "lstm" else (final,)
    kept_outputs = (y,) + tuple(state[0] for state in final_states)
    upstream = upstream_of(args)
    loss = sum((output * torch.from_numpy(grad[..., kept, :])).sum()
               for output, grad in zip(kept_outputs, upstream))
    loss.backward()

    # Whole-batch arrays: empty sequences hold the contract's values, the rest torch's.
    outputs = [np.zeros_like(args.dy)] + [getattr(args, name).copy() for name in states]
    grads = {"x": np.zeros_like(args.x)}
    grads.update({name: grad.copy() for name, grad in zip(states, upstream[1:])})
    for full, part in zip(outputs, kept_outputs):
        full[..., kept, :] = part.detach().numpy()
    for name, leaf in leaves.items():
        grads[name][..., kept, :] = leaf.grad.numpy()
    grads.update({name: getattr(module, parameter).grad.numpy()
                  for name, parameter in WEIGHTS.items()})
    return outputs, grads


def assert_matches(outputs, grads, expected_outputs, expected_grads, dtype):
    for what, out, ref in zip(("y", "h_n", "c_n"), outputs, expected_outputs):
        assert out.dtype == dtype, what
        tolerances.forward_tolerance(dtype).assert_close(out, ref, what)
    assert grads.keys() == expected_grads.keys()
    for name, ref in expected_grads.items():
        assert grads[name].dtype == dtype, name
        tolerances.gradient_tolerance(dtype).assert_close(grads[name], ref, f"d{name}")


# ----------------------------------------------------------------------------- torch

SHAPES = [
    dict(T=1, B=1, I=3, H=4),
    dict(T=5, B=3, I=4, H=2),
    dict(T=3, B=2, I=5, H=5),
    dict(T=6, B=4, I=3, H=5, lengths=[6, 1, 3, 4]),   # unsorted, full and single-step
    dict(T=5, B=4, I=2, H=3, lengths=[3, 0, 5, 0]),   # empty sequences
]
SHAPE_IDS = ["T1-B1", "I>H", "I=H", "lengths", "zero-lengths"]


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell, reset_after", TORCH_VARIANTS, ids=TORCH_IDS)
def test_matches_torch(cell, reset_after, dtype, shape):
    args = make_args(cell, dtype=dtype, reset_after=reset_after, seed=1, **shape)
    outputs, grads = reference_step(args)
    expected_outputs, expected_grads = torch_step(args)
    assert_matches(outputs, grads, expected_outputs, expected_grads, np.dtype(dtype))


# ------------------------------------------------------------------ finite differences

def loss(args) -> float:
    """L = sum(y*dy) + sum(h_n*dh_n) (+ sum(c_n*dc_n)): what the gradients differentiate."""
    outputs = reference.prepare(args).forward()
    return sum(float(np.sum(out * grad)) for out, grad in zip(outputs, upstream_of(args)))


def finite_difference(args, name: str) -> np.ndarray:
    """dL/d(args.name) by central differences, one element at a time."""
    value = getattr(args, name)
    step = tolerances.FINITE_DIFFERENCE_STEP
    numeric = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        moved = []
        for delta in (step, -step):
            shifted = value.copy()
            shifted[index] += delta
            moved.append(loss(dataclasses.replace(args, **{name: shifted})))
        numeric[index] = (moved[0] - moved[1]) / (2 * step)
    return numeric


@pytest.mark.parametrize("lengths", [None, [3, 0, 2]], ids=["full", "lengths"])
@pytest.mark.parametrize("cell, reset_after", VARIANTS, ids=VARIANT_IDS)
def test_backward_matches_finite_differences(cell, reset_after, lengths):
    args = make_args(cell, T=3, B=3, I=2, H=3, reset_after=reset_after, lengths=lengths,
                     seed=2)
    _outputs, grads = reference_step(args)
    assert grads.keys() == args.inputs().keys()
    for name in args.inputs():
        tolerances.FINITE_DIFFERENCE.assert_close(grads[name], finite_difference(args, name),
                                                  f"d{name}")


# ----------------------------------------------------------------------------- non-finite

@pytest.mark.parametrize("cell, reset_after", VARIANTS, ids=VARIANT_IDS)
def test_nan_stays_in_its_sequence(cell, reset_after):
    clean = make_args(cell, T=4, B=3, I=2, H=3, reset_after=reset_after, seed=3)
    x = clean.x.copy()
    x[1, 0, 0] = np.nan                                  # sequence 0, step 1
    outputs, grads = reference_step(dataclasses.replace(clean, x=x))
    clean_outputs, clean_grads = reference_step(clean)
    y = outputs[0]
    assert np.isfinite(y[:1, 0]).all() and np.isnan(y[1:, 0]).all()
    for state in outputs[1:]:
        assert np.isnan(state[0]).all()
    for what, out, ref in zip(("y", "h_n", "c_n"), outputs, clean_outputs):
        tolerances.FLOAT64.assert_close(out[..., 1:, :], ref[..., 1:, :], what)
    for name in ("x",) + (("h0", "c0") if cell == "lstm" else ("h0",)):
        tolerances.FLOAT64.assert_close(grads[name][..., 1:, :],
                                        clean_grads[name][..., 1:, :], f"d{name}")
        assert np.isnan(grads[name][..., 0, :]).any(), f"d{name} of the NaN sequence"


@pytest.mark.parametrize("cell, reset_after", VARIANTS, ids=VARIANT_IDS)
def test_padding_never_reaches_a_result(cell, reset_after):
    """Steps past a sequence's length may hold anything, NaN included (ONNX Runtime
    agrees: tests/test_weights.py feeds it NaN padding)."""
    clean = make_args(cell, T=4, B=3, I=2, H=3, reset_after=reset_after,
                      lengths=[4, 2, 0], seed=4)
    x, dy = clean.x.copy(), clean.dy.copy()
    for b, length in enumerate(clean.lengths):
        x[length:, b] = np.nan
        dy[length:, b] = np.inf
    outputs, grads = reference_step(dataclasses.replace(clean, x=x, dy=dy))
    clean_outputs, clean_grads = reference_step(clean)
    for what, out, ref in zip(("y", "h_n", "c_n"), outputs, clean_outputs):
        assert np.array_equal(out, ref), what
    for name, ref in clean_grads.items():
        assert np.array_equal(grads[name], ref), f"d{name}"
    # Exactly the contract's values: y = 0 past the length, an empty sequence keeps h0 (c0).
    assert not outputs[0][2:, 1].any() and not outputs[0][:, 2].any()
    for state, initial in zip(outputs[1:], (clean.h0, clean.c0)):
        assert np.array_equal(state[2], initial[2])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # inf - inf in torch's backward
@pytest.mark.parametrize("cell, reset_after", TORCH_VARIANTS, ids=TORCH_IDS)
def test_infinite_input_saturates_the_gates_like_torch(cell, reset_after):
    """One infinite input drives pre-activations to +-inf without inf - inf; the gates
    saturate at 0, 1 or +-1 and the outputs stay finite, in torch as in the reference."""
    args = make_args(cell, T=3, B=2, I=2, H=3, reset_after=reset_after, seed=5)
    x = args.x.copy()
    x[1, 0, 1] = np.inf
    args = dataclasses.replace(args, x=x)
    outputs = reference.prepare(args).forward()
    torch_outputs, _grads = torch_step(args)
    for what, out, ref in zip(("y", "h_n", "c_n"), outputs, torch_outputs):
        assert np.isfinite(out).all(), what
        tolerances.FLOAT64.assert_close(out, ref, what)


def test_always_available():
    """The oracle needs NumPy only: every other backend's accuracy is measured against it."""
    assert reference.availability() == (True, None)


@pytest.mark.parametrize("cell, saved_per_step", [("gru", 5), ("lstm", 7)])
def test_saved_bytes_count_what_backward_keeps(cell, saved_per_step):
    """The memory report's saved-activations figure: GRU keeps h_prev, r, z, n, W_hn h
    + b_hn and LSTM h_prev, c_prev, i, f, g, o, tanh(c), each (B, H), per step."""
    prepared = reference.prepare(make_args(cell, T=3, B=2, I=4, H=5))
    prepared.forward_train()
    assert prepared.saved_bytes == saved_per_step * 3 * 2 * 5 * 8
