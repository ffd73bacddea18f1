"""Weight conversions: exact round trips, gate blocks where each layout puts them, clear
errors, and converted weights giving the reference's outputs in ONNX Runtime's and Keras'
own GRU/LSTM.

The library runs are also the reference's independent check for what torch cannot
provide: the reset-before GRU (ONNX linear_before_reset=0, Keras reset_after=False) and the
LSTM against a second implementation besides torch (tests/kernels/test_reference.py).
"""
import numpy as np
import pytest

from grubench import tolerances
from grubench.kernels import reference
from grubench.case import Case
from grubench.kernels.cells import CELLS
from grubench.weights import (KERAS_GATES, ONNX_GATES, TORCH_GATES, TORCH_NAMES, from_keras,
                              from_onnx, init_weights, reorder_gates, to_keras, to_onnx)
from peer_fixtures import keras, onnxruntime  # noqa: F401 (fixtures)

# (cell, reset_after): every equation variant; reset_after means nothing to an LSTM.
VARIANTS = [("gru", True), ("gru", False), ("lstm", True)]
VARIANT_IDS = ["gru-reset-after", "gru-reset-before", "lstm"]


def weights_of(args) -> dict[str, np.ndarray]:
    return {name: getattr(args, name) for name in TORCH_NAMES}


def reference_outputs(cell, x, h0, c0, weights, *, reset_after, lengths=None):
    """The float64 reference on the given arrays (upcast): (y, h_n) or (y, h_n, c_n)."""
    up = {name: np.asarray(value, np.float64) for name, value in weights.items()}
    if cell == "gru":
        return reference.gru_forward(x.astype(np.float64), h0.astype(np.float64), **up,
                                     reset_after=reset_after, lengths=lengths)
    return reference.lstm_forward(x.astype(np.float64), h0.astype(np.float64),
                                  c0.astype(np.float64), **up, lengths=lengths)


def assert_same_arrays(out: dict, ref: dict) -> None:
    assert out.keys() == ref.keys()
    for name in ref:
        assert out[name].dtype == ref[name].dtype, name
        assert np.array_equal(out[name], ref[name]), f"{name} changed in the round trip"


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_onnx_round_trips_are_exact(cell, dtype):
    weights = init_weights(cell, 3, 5, seed=1, dtype=dtype)
    assert_same_arrays(from_onnx(cell, **to_onnx(cell, weights)), weights)
    onnx_weights = to_onnx(cell, init_weights(cell, 4, 2, seed=2, dtype=dtype))
    assert_same_arrays(to_onnx(cell, from_onnx(cell, **onnx_weights)), onnx_weights)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell, reset_after", VARIANTS, ids=VARIANT_IDS)
def test_keras_round_trip_from_keras_is_exact(cell, reset_after, dtype):
    keras_weights = to_keras(cell, init_weights(cell, 3, 5, seed=3, dtype=dtype),
                             reset_after=reset_after)
    back = to_keras(cell, from_keras(cell, *keras_weights, reset_after=reset_after),
                    reset_after=reset_after)
    assert_same_arrays(dict(enumerate(back)), dict(enumerate(keras_weights)))


def test_keras_round_trip_from_torch_is_exact_with_two_biases():
    weights = init_weights("gru", 3, 5, seed=4)
    assert_same_arrays(from_keras("gru", *to_keras("gru", weights, reset_after=True),
                                  reset_after=True), weights)


@pytest.mark.parametrize("cell, reset_after", VARIANTS[1:], ids=VARIANT_IDS[1:])
def test_keras_single_bias_keeps_the_sum_and_the_outputs(cell, reset_after):
    """Keras' one bias holds b_ih + b_hh; back in torch layout it is b_ih and b_hh = 0,
    and only the sum enters these equations, so the outputs agree."""
    args = Case(cell, 4, 2, 3, 5, dtype="float64", variant=CELLS[cell].variant_of(reset_after)).make_args(
        seed=5, with_grads=False)
    weights = weights_of(args)
    back = from_keras(cell, *to_keras(cell, weights, reset_after=reset_after),
                      reset_after=reset_after)
    for name in ("w_ih", "w_hh"):
        assert np.array_equal(back[name], weights[name])
    assert np.array_equal(back["b_ih"], weights["b_ih"] + weights["b_hh"])
    assert not back["b_hh"].any()
    expected = reference_outputs(cell, args.x, args.h0, args.c0, weights,
                                 reset_after=reset_after)
    converted = reference_outputs(cell, args.x, args.h0, args.c0, back,
                                  reset_after=reset_after)
    for what, out, ref in zip(("y", "h_n", "c_n"), converted, expected):
        tolerances.FLOAT64.assert_close(out, ref, what)


# ----------------------------------------------------------------------------- layouts

def gate_labelled_weights(cell: str, I: int, H: int) -> dict[str, np.ndarray]:
    """torch-layout weights whose every entry encodes (array, torch gate index): a wrong
    gate order shows as a wrong number, even where a round trip would undo it."""
    G = len(TORCH_GATES[cell])
    shapes = {"w_ih": (I,), "w_hh": (H,), "b_ih": (), "b_hh": ()}
    return {name: np.concatenate([np.full((H,) + shape, 10.0 * k + gate)
                                  for gate in range(G)])
            for k, (name, shape) in enumerate(shapes.items())}


def gate_labels(block: np.ndarray, axis: int, count: int) -> list[float]:
    """The single value in each of ``count`` gate blocks along ``axis``."""
    labels = []
    for part in np.split(block, count, axis=axis):
        assert np.unique(part).size == 1, "a gate block mixes gates"
        labels.append(float(part.flat[0]))
    return labels


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_keras_layout_puts_each_gate_where_keras_expects_it(cell):
    weights = gate_labelled_weights(cell, I=2, H=3)
    order = [TORCH_GATES[cell].index(gate) for gate in KERAS_GATES[cell]]
    G = len(order)
    kernel, recurrent_kernel, bias = to_keras(cell, weights, reset_after=True)
    assert kernel.shape == (2, G * 3) and recurrent_kernel.shape == (3, G * 3)
    assert gate_labels(kernel, 1, G) == [0.0 + g for g in order]
    assert gate_labels(recurrent_kernel, 1, G) == [10.0 + g for g in order]
    if cell == "gru":   # [input bias, recurrent bias]
        assert gate_labels(bias[0], 0, G) == [20.0 + g for g in order]
        assert gate_labels(bias[1], 0, G) == [30.0 + g for g in order]
    else:               # one bias, the sum
        assert gate_labels(bias, 0, G) == [50.0 + 2 * g for g in order]
    # The published orders, written out: Keras GRU z, r, h and LSTM i, f, c, o.
    assert order == ([1, 0, 2] if cell == "gru" else [0, 1, 2, 3])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_onnx_layout_puts_each_gate_where_onnx_expects_it(cell):
    weights = gate_labelled_weights(cell, I=2, H=3)
    order = [TORCH_GATES[cell].index(gate) for gate in ONNX_GATES[cell]]
    G = len(order)
    onnx_weights = to_onnx(cell, weights)
    assert onnx_weights["W"].shape == (1, G * 3, 2)
    assert onnx_weights["R"].shape == (1, G * 3, 3)
    assert onnx_weights["B"].shape == (1, 2 * G * 3)
    assert gate_labels(onnx_weights["W"][0], 0, G) == [0.0 + g for g in order]
    assert gate_labels(onnx_weights["R"][0], 0, G) == [10.0 + g for g in order]
    assert gate_labels(onnx_weights["B"][0], 0, 2 * G) == (
        [20.0 + g for g in order] + [30.0 + g for g in order])
    # The published orders, written out: ONNX GRU z, r, h and LSTM i, o, f, c.
    assert order == ([1, 0, 2] if cell == "gru" else [0, 3, 1, 2])


def test_reorder_gates_moves_blocks_along_any_axis():
    array = np.arange(12).reshape(2, 6)
    np.testing.assert_array_equal(reorder_gates(array, ("a", "b", "c"), ("c", "a", "b"), 1),
                                  [[4, 5, 0, 1, 2, 3], [10, 11, 6, 7, 8, 9]])


# ----------------------------------------------------------------------------- bad input

def bad_torch(cell="gru", **changes):
    weights = init_weights(cell, 3, 4)
    weights.update(changes)
    return weights


@pytest.mark.parametrize("call, error, words", [
    (lambda: to_onnx("rnn", bad_torch()), ValueError, "unknown cell 'rnn'"),
    (lambda: to_onnx("gru", {"w_ih": np.zeros((12, 3))}), ValueError, "b_hh, b_ih, w_hh"),
    (lambda: to_onnx("gru", bad_torch(w_hh=np.zeros((16, 4)))), ValueError, "w_hh has shape"),
    (lambda: to_onnx("lstm", bad_torch()), ValueError, "(4*H, H) for lstm"),
    (lambda: to_keras("gru", bad_torch(w_ih=np.zeros((9, 3)))), ValueError, "w_ih has shape"),
    (lambda: to_keras("gru", bad_torch(b_hh=np.zeros(11))), ValueError, "b_hh has shape"),
    (lambda: to_keras("gru", bad_torch(w_ih=np.zeros((12, 3), int))), TypeError,
     "w_ih must hold floats"),
    (lambda: from_keras("gru", np.zeros((3, 12)), np.zeros((4, 12)), np.zeros(12)),
     ValueError, "reset_after=True"),
    (lambda: from_keras("gru", np.zeros((3, 12)), np.zeros((4, 12)), np.zeros((2, 12)),
                        reset_after=False), ValueError, "reset_after=False"),
    (lambda: from_keras("lstm", np.zeros((3, 16)), np.zeros((4, 12)), np.zeros(16)),
     ValueError, "recurrent_kernel has shape"),
    (lambda: from_keras("lstm", np.zeros((3, 12)), np.zeros((4, 16)), np.zeros(16)),
     ValueError, "kernel has shape (3, 12)"),
    (lambda: from_onnx("gru", np.zeros((2, 12, 3)), np.zeros((2, 12, 4))), ValueError,
     "one direction"),
    (lambda: from_onnx("gru", np.zeros((1, 12, 3)), np.zeros((1, 12, 4)), np.zeros((1, 12))),
     ValueError, "B has shape (1, 12)"),
    (lambda: from_onnx("gru", np.zeros((1, 9, 3)), np.zeros((1, 12, 4))), ValueError,
     "W has shape"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_bad_weights_are_named(call, error, words):
    with pytest.raises(error) as raised:
        call()
    assert words in str(raised.value)


def test_onnx_bias_is_optional_as_in_onnx():
    weights = from_onnx("lstm", np.ones((1, 8, 3)), np.ones((1, 8, 2)))
    assert weights["b_ih"].shape == weights["b_hh"].shape == (8,)
    assert not weights["b_ih"].any() and not weights["b_hh"].any()


# ----------------------------------------------------------------------------- ONNX Runtime

def run_onnx_node(onnxruntime, cell, weights, x, h0, c0, lengths, reset_after):
    """One ONNX GRU/LSTM node over the converted weights, run by ONNX Runtime (float32:
    its CPU GRU and LSTM have no double kernels). Returns Y_h... as (y, h_n[, c_n])."""
    import onnx
    from onnx import TensorProto, helper

    T, B, I = x.shape
    H = h0.shape[1]
    # The node's inputs are positional: X, W, R, B, sequence_lens, initial_h[, initial_c].
    feeds = dict(X=x, **to_onnx(cell, weights), sequence_lens=lengths.astype(np.int32),
                 initial_h=h0[None])
    outputs = ["Y", "Y_h"]
    if cell == "lstm":
        feeds["initial_c"] = c0[None]
        outputs.append("Y_c")
    attributes = {"hidden_size": H}
    if cell == "gru":
        attributes["linear_before_reset"] = int(reset_after)
    node = helper.make_node(cell.upper(), list(feeds), outputs, **attributes)

    def declared(name, array):
        kind = TensorProto.INT32 if array.dtype == np.int32 else TensorProto.FLOAT
        return helper.make_tensor_value_info(name, kind, array.shape)

    output_shapes = {"Y": (T, 1, B, H), "Y_h": (1, B, H), "Y_c": (1, B, H)}
    graph = helper.make_graph(
        [node], f"one_{cell}", [declared(name, array) for name, array in feeds.items()],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, output_shapes[name])
         for name in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    y, *states = session.run(None, feeds)
    return (y[:, 0], *(state[0] for state in states))


@pytest.mark.parametrize("cell, reset_after", VARIANTS, ids=VARIANT_IDS)
def test_onnx_runtime_matches_reference(onnxruntime, cell, reset_after):
    """ONNX Runtime's own GRU (both linear_before_reset values) and LSTM, with
    sequence_lens and NaN in the padding (ONNX never reads it), give the reference's
    outputs. Lengths here are >= 1: for a zero length ONNX Runtime returns Y_h = 0, where
    the contract keeps h0."""
    T = 6
    args = Case(cell, T, 4, 3, 5, variant=CELLS[cell].variant_of(reset_after)).make_args(
        seed=6, with_grads=False)
    lengths = np.array([T, 1, 4, 3])
    x = args.x.copy()
    for b, length in enumerate(lengths):
        x[length:, b] = np.nan
    weights = weights_of(args)
    outputs = run_onnx_node(onnxruntime, cell, weights, x, args.h0, args.c0, lengths,
                            reset_after)
    expected = reference_outputs(cell, x, args.h0, args.c0, weights,
                                 reset_after=reset_after, lengths=lengths)
    for what, out, ref in zip(("Y", "Y_h", "Y_c"), outputs, expected):
        tolerances.FLOAT32_FORWARD.assert_close(out, ref, what)


# ----------------------------------------------------------------------------- Keras

@pytest.mark.parametrize("cell, reset_after", VARIANTS, ids=VARIANT_IDS)
def test_keras_matches_reference(keras, cell, reset_after):
    """Keras 3's own GRU (both reset_after modes) and LSTM, batch-major, with converted
    weights and a given initial state, give the reference's outputs. In float32: Keras'
    type promotion turns float64 with float64 into float32 (it follows JAX without x64), so
    a float64 layer still rounds its reset-before r*h product to float32."""
    T, B, I, H = 5, 3, 4, 6
    args = Case(cell, T, B, I, H, variant=CELLS[cell].variant_of(reset_after)).make_args(
        seed=7, with_grads=False)
    weights = weights_of(args)
    options = dict(return_sequences=True, return_state=True, dtype="float32")
    if cell == "gru":
        layer = keras.layers.GRU(H, reset_after=reset_after, **options)
        initial_state = [args.h0]
    else:
        layer = keras.layers.LSTM(H, **options)
        initial_state = [args.h0, args.c0]
    layer.build((B, T, I))
    layer.set_weights(to_keras(cell, weights, reset_after=reset_after))
    sequence, *states = layer(args.x.transpose(1, 0, 2), initial_state=initial_state)
    # torch tensors (the backend); keras.ops.convert_to_numpy warns under NumPy 2.
    outputs = [sequence.detach().numpy().transpose(1, 0, 2),
               *(state.detach().numpy() for state in states)]
    expected = reference_outputs(cell, args.x, args.h0, args.c0, weights,
                                 reset_after=reset_after)
    for what, out, ref in zip(("sequence", "h", "c"), outputs, expected):
        tolerances.FLOAT32_FORWARD.assert_close(out, ref, what)
