"""Network weight conversions (grubench.weights, stacked and bidirectional): exact round
trips, each layer and direction where each layout puts it, errors naming the array and
both shapes, and converted weights giving the NumPy reference Network's outputs in a real
ONNX Runtime graph (one bidirectional node per layer, sequence_lens) and a real stack of
Keras Bidirectional layers, both ways: torch -> peer and peer -> torch.

The peers run float32 (ONNX Runtime's GRU and LSTM have no double kernels; Keras' type
promotion rounds to float32); the reference runs float64 on the same float32 values, so
the float32 forward tolerance covers the peers' rounding alone.
"""
import numpy as np
import pytest

from grubench import tolerances
from grubench.kernels import reference
from grubench.kernels.cells import NetworkSpec
from grubench.kernels.network import Network
from grubench.weights import (from_keras_network, from_onnx_network, onnx_node_attributes,
                              to_keras_network, to_onnx, to_onnx_network)
from peer_fixtures import keras, onnxruntime  # noqa: F401 (fixtures)

T, B, I, H = 5, 3, 4, 6     # noqa: E741
LENGTHS = np.array([T, 1, 3])
# (cell, reset_after): every equation variant; reset_after means nothing to an LSTM.
VARIANTS = [("gru", True), ("gru", False), ("lstm", True)]
VARIANT_IDS = ["gru-reset-after", "gru-reset-before", "lstm"]
SHAPES = [(layers, bidirectional) for layers in (1, 2, 3) for bidirectional in (False, True)]
SHAPE_IDS = [f"{layers}-layer-{'bi' if bi else 'uni'}" for layers, bi in SHAPES]


def network_spec(cell, layers, bidirectional, bias=True) -> NetworkSpec:
    return NetworkSpec(cell, I, H, num_layers=layers, bidirectional=bidirectional, bias=bias)


def random_params(spec: NetworkSpec, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(-0.5, 0.5, shape).astype(np.float32)
            for name, shape in spec.parameter_shapes().items()}


def random_like(arrays, seed):
    """Arrays of ``arrays``' shapes drawn afresh: a peer's weights made without our
    converters, so converting them back is checked on its own."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-0.5, 0.5, np.shape(a)).astype(np.float32) for a in arrays]


def inputs(spec: NetworkSpec, seed=1) -> dict[str, np.ndarray]:
    """x (T, B, I) and the initial states (num_layers*D, B, H), float32."""
    rng = np.random.default_rng(seed)
    arrays = {"x": rng.standard_normal((T, B, I))}
    for state in spec.spec.initial_states:
        arrays[state] = rng.standard_normal(spec.state_shape(B))
    return {name: value.astype(np.float32) for name, value in arrays.items()}


def reference_network(spec, params, arrays, *, reset_after, lengths=None):
    """The float64 NumPy reference Network on the given float32 values: (y, h_n[, c_n])."""
    up = lambda a: np.asarray(a, np.float64)  # noqa: E731
    network = Network(reference, spec, reset_after=reset_after)
    return network.forward(up(arrays["x"]), {n: up(p) for n, p in params.items()},
                           *(up(arrays[state]) for state in spec.spec.initial_states),
                           lengths=lengths)


def assert_outputs_close(outputs, expected, names=("y", "h_n", "c_n")):
    assert len(outputs) == len(expected)
    for name, out, ref in zip(names, outputs, expected):
        tolerances.FLOAT32_FORWARD.assert_close(out, ref, name)


def assert_same_params(out: dict, ref: dict) -> None:
    assert list(out) == list(ref)            # torch's names, in torch's order
    for name in ref:
        assert out[name].dtype == ref[name].dtype, name
        assert np.array_equal(out[name], ref[name]), f"{name} changed in the round trip"


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("layers, bidirectional", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_onnx_round_trips_are_exact(cell, layers, bidirectional, bias):
    spec = network_spec(cell, layers, bidirectional, bias)
    params = random_params(spec)
    assert_same_params(from_onnx_network(spec, to_onnx_network(spec, params)), params)
    nodes = to_onnx_network(spec, random_params(spec, seed=2))
    again = to_onnx_network(spec, from_onnx_network(spec, nodes))
    assert [list(node) for node in again] == [list(node) for node in nodes]
    for node, node_again in zip(nodes, again):
        for name in node:
            assert np.array_equal(node_again[name], node[name]), name


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("layers, bidirectional", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("cell, reset_after", VARIANTS, ids=VARIANT_IDS)
def test_keras_round_trips(cell, reset_after, layers, bidirectional, bias):
    """Keras -> torch -> Keras returns the identical arrays. torch -> Keras -> torch does
    too where Keras keeps both biases (GRU reset_after=True) or none; where it keeps one,
    the sum b_ih + b_hh comes back as b_ih and b_hh = 0 (the same outputs)."""
    spec = network_spec(cell, layers, bidirectional, bias)
    keras_weights = to_keras_network(spec, random_params(spec, seed=3),
                                     reset_after=reset_after)
    again = to_keras_network(spec, from_keras_network(spec, keras_weights,
                                                      reset_after=reset_after),
                             reset_after=reset_after)
    assert [len(weights) for weights in again] == [len(weights) for weights in keras_weights]
    for layer, (weights, weights_again) in enumerate(zip(keras_weights, again)):
        for index, (array, array_again) in enumerate(zip(weights, weights_again)):
            assert np.array_equal(array_again, array), f"layer {layer} weights[{index}]"

    params = random_params(spec, seed=4)
    back = from_keras_network(spec, to_keras_network(spec, params, reset_after=reset_after),
                              reset_after=reset_after)
    if not bias or (cell, reset_after) == ("gru", True):
        assert_same_params(back, params)
        return
    assert list(back) == list(params)
    for layer, direction, suffix in spec.layers():
        for name in (f"weight_ih{suffix}", f"weight_hh{suffix}"):
            assert np.array_equal(back[name], params[name]), name
        np.testing.assert_array_equal(back[f"bias_ih{suffix}"],
                                      params[f"bias_ih{suffix}"] + params[f"bias_hh{suffix}"])
        assert not back[f"bias_hh{suffix}"].any()


# ----------------------------------------------------------------------------- layouts

def labelled_params(spec: NetworkSpec) -> dict[str, np.ndarray]:
    """Every parameter filled with one number, 100*layer + 10*direction + its position in
    (w_ih, w_hh, b_ih, b_hh): where an array lands shows which it was."""
    params = {}
    for layer, direction, _suffix in spec.layers():
        names = spec.parameter_names(layer, direction)
        for kind, name in enumerate(names.values()):
            if name in spec.parameter_shapes():
                params[name] = np.full(spec.parameter_shapes()[name],
                                       100.0 * layer + 10 * direction + kind)
    return params


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_onnx_nodes_hold_each_layer_and_direction_in_order(cell):
    spec = network_spec(cell, 3, True)
    nodes = to_onnx_network(spec, labelled_params(spec))
    assert len(nodes) == 3
    for layer, node in enumerate(nodes):
        for direction in (0, 1):
            label = 100.0 * layer + 10 * direction
            assert np.all(node["W"][direction] == label + 0)
            assert np.all(node["R"][direction] == label + 1)
            Wb, Rb = np.split(node["B"][direction], 2)
            assert np.all(Wb == label + 2) and np.all(Rb == label + 3)


@pytest.mark.parametrize("cell, reset_after", VARIANTS, ids=VARIANT_IDS)
def test_keras_lists_hold_each_layer_forward_then_backward(cell, reset_after):
    spec = network_spec(cell, 3, True)
    layers = to_keras_network(spec, labelled_params(spec), reset_after=reset_after)
    assert len(layers) == 3
    two_biases = (cell, reset_after) == ("gru", True)
    for layer, weights in enumerate(layers):
        expected = []
        for direction in (0, 1):
            label = 100.0 * layer + 10 * direction
            expected += [[label + 0], [label + 1],
                         [label + 2, label + 3] if two_biases else [2 * label + 5]]
        assert [sorted(np.unique(array).tolist()) for array in weights] == expected
    assert layers[1][0].shape == (2 * H, spec.spec.n_gates * H)     # reads both directions


def test_onnx_node_attributes_name_direction_and_reset():
    assert onnx_node_attributes(network_spec("gru", 2, True), reset_after=False) == {
        "hidden_size": H, "direction": "bidirectional", "linear_before_reset": 0}
    assert onnx_node_attributes(network_spec("lstm", 1, False)) == {
        "hidden_size": H, "direction": "forward"}


# ----------------------------------------------------------------------------- bad input

SPEC = network_spec("gru", 2, True)
PARAMS = random_params(SPEC)


def without_reverse(params):
    return {name: value for name, value in params.items() if "_reverse" not in name}


def changed(sequence, index, value):
    items = list(sequence)
    items[index] = value
    return items


@pytest.mark.parametrize("call, error, words", [
    (lambda: to_onnx_network("gru", PARAMS), TypeError, "spec must be a NetworkSpec, got str"),
    (lambda: from_keras_network(None, []), TypeError, "spec must be a NetworkSpec"),
    (lambda: to_onnx_network(SPEC, without_reverse(PARAMS)), ValueError,
     "missing ['weight_ih_l0_reverse', 'weight_hh_l0_reverse', 'bias_ih_l0_reverse'"),
    (lambda: to_keras_network(network_spec("gru", 3, True), PARAMS), ValueError,
     "params do not match the network (3 layers, bidirectional, bias): missing "
     "['weight_ih_l2'"),
    (lambda: to_onnx_network(network_spec("gru", 1, True), PARAMS), ValueError,
     "unexpected ['weight_ih_l1', "),
    (lambda: to_keras_network(SPEC, {**PARAMS, "weight_hh_l1_reverse": np.zeros((18, 5))}),
     ValueError, "weight_hh_l1_reverse has shape (18, 5); expected (18, 6)"),
    (lambda: to_onnx_network(SPEC, {**PARAMS, "bias_ih_l0": np.zeros(18, int)}), TypeError,
     "bias_ih_l0 has dtype int64; expected float32 or float64"),
    (lambda: from_onnx_network(SPEC, to_onnx_network(SPEC, PARAMS)[:1]), ValueError,
     "ONNX weights of 1 layers; expected 2, one node per layer"),
    (lambda: from_onnx_network(SPEC, to_onnx_network(
        network_spec("gru", 2, False), random_params(network_spec("gru", 2, False)))),
     ValueError, "ONNX layer 0 W has shape (1, 18, 4); expected (2, 18, 4) = "
                 "[directions, 3*H, I] (direction='bidirectional')"),
    (lambda: from_onnx_network(SPEC, changed(to_onnx_network(SPEC, PARAMS), 1,
                                             {**to_onnx_network(SPEC, PARAMS)[1],
                                              "B": np.zeros((2, 18))})),
     ValueError, "ONNX layer 1 B has shape (2, 18); expected (2, 36)"),
    (lambda: from_onnx_network(SPEC, [{"W": 0}, {}]), ValueError,
     "ONNX layer 0 has ['W']; expected a dict of W, R and optionally B"),
    (lambda: from_onnx_network(network_spec("gru", 2, True, bias=False),
                               to_onnx_network(SPEC, PARAMS)), ValueError,
     "ONNX layer 0 B is nonzero; the network has no bias"),
    (lambda: from_keras_network(SPEC, to_keras_network(SPEC, PARAMS)[:1]), ValueError,
     "Keras weights of 1 layers; expected 2, a list of arrays per layer"),
    (lambda: from_keras_network(SPEC, changed(to_keras_network(SPEC, PARAMS), 1,
                                              to_keras_network(SPEC, PARAMS)[1][:3])),
     ValueError, "Keras layer 1 has 3 arrays; expected 6 = 2 directions x "
                 "[kernel, recurrent_kernel, bias] (bidirectional=True, bias=True)"),
    (lambda: from_keras_network(SPEC, to_keras_network(SPEC, PARAMS), reset_after=False),
     ValueError, "Keras layer 0 weights[2] (bias, forward) has shape (2, 18); expected "
                 "(18,) = (3*H,) (reset_after=False)"),
    (lambda: from_keras_network(SPEC, changed(to_keras_network(SPEC, PARAMS), 1, changed(
        to_keras_network(SPEC, PARAMS)[1], 3, np.zeros((4, 18))))),
     ValueError, "Keras layer 1 weights[3] (kernel, reverse) has shape (4, 18); expected "
                 "(12, 18) = (directions*H, 3*H)"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_bad_weights_are_named(call, error, words):
    with pytest.raises(error) as raised:
        call()
    assert words in str(raised.value)


# ----------------------------------------------------------------------------- ONNX Runtime

def onnx_network_outputs(onnxruntime, spec, nodes, arrays, lengths, *, reset_after):
    """A graph of one ONNX GRU/LSTM node per layer (``nodes``' W, R[, B] as initializers,
    the attributes of :func:`onnx_node_attributes`), each layer's Y [T, D, B, H] turned
    into the next layer's X [T, B, D*H], run by ONNX Runtime: (y, h_n[, c_n]) in torch's
    shapes, the states concatenated over layers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    D, states = spec.directions, spec.spec.states
    initializers = [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "merged")]
    feeds = {"X": arrays["x"], "sequence_lens": lengths.astype(np.int32)}
    graph_nodes, layer_input, finals = [], "X", {state: [] for state in states}
    for layer, weights in enumerate(nodes):
        names = {name: f"{name}_{layer}" for name in weights}
        initializers += [numpy_helper.from_array(weights[name], names[name])
                         for name in weights]
        for state in states:
            feeds[f"initial_{state}_{layer}"] = arrays[f"{state}0"][layer * D:(layer + 1) * D]
        # Positional inputs: X, W, R, B, sequence_lens, initial_h[, initial_c].
        node_inputs = [layer_input, names["W"], names["R"], names.get("B", ""),
                       "sequence_lens"] + [f"initial_{state}_{layer}" for state in states]
        node_outputs = [f"Y_{layer}"] + [f"Y_{state}_{layer}" for state in states]
        graph_nodes += [
            helper.make_node(spec.cell.upper(), node_inputs, node_outputs,
                             **onnx_node_attributes(spec, reset_after=reset_after)),
            helper.make_node("Transpose", [f"Y_{layer}"], [f"Y_{layer}_TBDH"],
                             perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"Y_{layer}_TBDH", "merged"], [f"out_{layer}"])]
        layer_input = f"out_{layer}"
        for state in states:
            finals[state].append(f"Y_{state}_{layer}")
    outputs = [layer_input] + [f"{state}_n" for state in states]
    graph_nodes += [helper.make_node("Concat", finals[state], [f"{state}_n"], axis=0)
                    for state in states]

    def declared(name, array):
        kind = TensorProto.INT32 if array.dtype == np.int32 else TensorProto.FLOAT
        return helper.make_tensor_value_info(name, kind, array.shape)

    shapes = [(T, B, spec.output_size)] + [spec.state_shape(B)] * len(states)
    graph = helper.make_graph(
        graph_nodes, f"stacked_{spec.cell}", [declared(n, a) for n, a in feeds.items()],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
         for name, shape in zip(outputs, shapes)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session.run(outputs, feeds)


@pytest.mark.parametrize("layers, bidirectional", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("cell, reset_after", VARIANTS, ids=VARIANT_IDS)
def test_onnx_runtime_network_matches_reference(onnxruntime, cell, reset_after, layers,
                                                bidirectional):
    """Both ways: our parameters converted to ONNX, and ONNX weights drawn afresh
    converted to ours, give the reference Network's outputs in ONNX Runtime, with
    sequence_lens (the reverse direction of a sequence of length L starts at step L-1 in
    both; lengths >= 1: for a zero length ONNX Runtime returns Y_h = 0, where the
    network keeps h0)."""
    spec = network_spec(cell, layers, bidirectional)
    arrays = inputs(spec)
    params = random_params(spec, seed=5)
    onnx_weights = [dict(zip(node, random_like(node.values(), seed=6 + layer)))
                    for layer, node in enumerate(to_onnx_network(spec, params))]
    for ours, theirs in [(params, to_onnx_network(spec, params)),
                         (from_onnx_network(spec, onnx_weights), onnx_weights)]:
        outputs = onnx_network_outputs(onnxruntime, spec, theirs, arrays, LENGTHS,
                                       reset_after=reset_after)
        expected = reference_network(spec, ours, arrays, reset_after=reset_after,
                                     lengths=LENGTHS)
        assert_outputs_close(outputs, expected)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_onnx_runtime_network_without_bias(onnxruntime, cell):
    """bias=False: the nodes have no B input (ONNX reads zeros)."""
    spec = network_spec(cell, 2, True, bias=False)
    arrays = inputs(spec)
    params = random_params(spec, seed=8)
    nodes = to_onnx_network(spec, params)
    assert all(list(node) == ["W", "R"] for node in nodes)
    outputs = onnx_network_outputs(onnxruntime, spec, nodes, arrays, LENGTHS,
                                   reset_after=True)
    assert_outputs_close(outputs, reference_network(spec, params, arrays, reset_after=True,
                                                    lengths=LENGTHS))


@pytest.mark.parametrize("cell, reset_after", VARIANTS, ids=VARIANT_IDS)
def test_onnx_reverse_node_is_the_reverse_set(onnxruntime, cell, reset_after):
    """A one-direction node with direction="reverse" over to_onnx(the _reverse set) gives
    the reverse half of the reference's bidirectional layer: y[..., H:] and h_n[1]."""
    import onnx
    from onnx import TensorProto, helper

    spec = network_spec(cell, 1, True)
    arrays = inputs(spec)
    params = random_params(spec, seed=9)
    feeds = dict(X=arrays["x"], **to_onnx(cell, {
        name: params[torch_name] for name, torch_name in spec.parameter_names(0, 1).items()}))
    feeds["sequence_lens"] = LENGTHS.astype(np.int32)
    for state in spec.spec.states:
        feeds[f"initial_{state}"] = arrays[f"{state}0"][1:]
    attributes = {**onnx_node_attributes(spec, reset_after=reset_after),
                  "direction": "reverse"}
    outputs = ["Y"] + [f"Y_{state}" for state in spec.spec.states]
    node = helper.make_node(cell.upper(), list(feeds), outputs, **attributes)
    graph = helper.make_graph(
        [node], "reverse", [helper.make_tensor_value_info(
            n, TensorProto.INT32 if a.dtype == np.int32 else TensorProto.FLOAT, a.shape)
            for n, a in feeds.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
         for n, shape in zip(outputs, [(T, 1, B, H)] + [(1, B, H)] * len(spec.spec.states))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    y, *states = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]).run(outputs, feeds)
    expected_y, *expected_states = reference_network(spec, params, arrays,
                                                     reset_after=reset_after, lengths=LENGTHS)
    assert_outputs_close([y[:, 0], *(state[0] for state in states)],
                         [expected_y[..., H:], *(state[1] for state in expected_states)])


# ----------------------------------------------------------------------------- Keras

def keras_model(keras, spec, reset_after):
    """A functional Keras model: x (B, T, I) and the initial states in, one
    Bidirectional(GRU/LSTM) per layer (a plain GRU/LSTM without ``bidirectional``), the
    last layer's sequence and every layer's final states out. Keras' initial and final
    states of a layer: per direction (forward, backward) h [, c] (B, H)."""
    recurrent_class = getattr(keras.layers, spec.spec.torch_class)   # Keras' GRU, LSTM
    options = dict(return_sequences=True, return_state=True, use_bias=spec.bias,
                   dtype="float32")
    if "reset_before" in spec.spec.variants:
        options["reset_after"] = reset_after
    x = keras.Input((T, spec.input_size), batch_size=B)
    per_layer = spec.directions * len(spec.spec.states)
    initial = [keras.Input((spec.hidden_size,), batch_size=B)
               for _ in range(spec.num_layers * per_layer)]
    sequence, finals = x, []
    for layer in range(spec.num_layers):
        recurrent = recurrent_class(spec.hidden_size, **options)
        if spec.bidirectional:
            recurrent = keras.layers.Bidirectional(recurrent)
        sequence, *states = recurrent(
            sequence, initial_state=initial[layer * per_layer:(layer + 1) * per_layer])
        finals += states
    return keras.Model([x, *initial], [sequence, *finals])


def keras_outputs(model, spec, arrays):
    """The model on time-major ``arrays``: (y, h_n[, c_n]) in torch's shapes."""
    # Keras' state list runs layer, direction, state; torch's arrays are [state][layer*D+d].
    n_states = len(spec.spec.states)
    initial = [arrays[f"{state}0"][row] for row in range(spec.num_layers * spec.directions)
               for state in spec.spec.states]
    sequence, *finals = model([arrays["x"].transpose(1, 0, 2), *initial])
    finals = [final.detach().numpy() for final in finals]   # torch tensors (the backend)
    return [sequence.detach().numpy().transpose(1, 0, 2),
            *(np.stack(finals[index::n_states]) for index in range(n_states))]


# Keras 3's Variable.numpy() (model.get_weights) calls np.array on a torch tensor, which
# NumPy 2 warns about; the values are right.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
@pytest.mark.parametrize("layers, bidirectional, bias",
                         [(1, True, True), (2, False, False), (3, True, True)],
                         ids=["1-layer-bi", "2-layer-uni-no-bias", "3-layer-bi"])
@pytest.mark.parametrize("cell, reset_after", VARIANTS, ids=VARIANT_IDS)
def test_keras_network_matches_reference(keras, cell, reset_after, layers, bidirectional,
                                         bias):
    """Both ways: our parameters converted into the model (model.set_weights), and each
    Keras layer's weights drawn afresh (layer.set_weights) converted to ours, give the
    reference Network's outputs in Keras (full-length sequences: Keras pads differently
    from torch)."""
    spec = network_spec(cell, layers, bidirectional, bias)
    arrays = inputs(spec)
    model = keras_model(keras, spec, reset_after)
    params = random_params(spec, seed=10)
    keras_weights = to_keras_network(spec, params, reset_after=reset_after)
    model.set_weights([array for weights in keras_weights for array in weights])
    assert_outputs_close(keras_outputs(model, spec, arrays),
                         reference_network(spec, params, arrays, reset_after=reset_after))

    recurrent_layers = [layer for layer in model.layers if layer.weights]
    assert len(recurrent_layers) == spec.num_layers
    for layer in recurrent_layers:
        layer.set_weights(random_like(layer.get_weights(), seed=11))
    params = from_keras_network(spec, [layer.get_weights() for layer in recurrent_layers],
                                reset_after=reset_after)
    assert_outputs_close(keras_outputs(model, spec, arrays),
                         reference_network(spec, params, arrays, reset_after=reset_after))
