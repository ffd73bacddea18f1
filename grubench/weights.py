"""GRU and LSTM weights: a seeded initializer like torch's, and exact conversions between
the torch layout (grubench's contract) and the Keras and ONNX layouts.

torch layout (a dict, as :func:`init_weights` returns; pass it on as ``**weights``)::

    w_ih (G*H, I), w_hh (G*H, H), b_ih (G*H,), b_hh (G*H,)
    GRU gates r, z, n (G = 3); LSTM gates i, f, g, o (G = 4)

Keras 3 (``layer.get_weights()`` / ``layer.set_weights(...)`` order, U = H units)::

    kernel (I, G*U), recurrent_kernel (U, G*U); GRU gates z, r, h; LSTM gates i, f, c, o
    bias: GRU reset_after=True (2, 3U) = [input bias, recurrent bias]
          GRU reset_after=False and LSTM (G*U,): one bias

ONNX (one direction, D = 1: a node with direction "forward" or "reverse"; no LSTM
peepholes)::

    W [1, G*H, I], R [1, G*H, H], B [1, 2*G*H] = [Wb, Rb]; GRU gates z, r, h; LSTM i, o, f, c
    GRU linear_before_reset = 1 is reset_after=True, 0 (ONNX's default) is reset_after=False;
    the weights are the same in both modes, only the node attribute differs.

Networks (:class:`~grubench.kernels.cells.NetworkSpec`: layers, directions; parameters by
torch name, ``weight_ih_l{k}[_reverse]``...) convert layer by layer and direction by
direction through the single-layer converters above:

* Keras: one ``Bidirectional(GRU/LSTM(H, return_sequences=True))`` per layer (a plain
  GRU/LSTM layer when not bidirectional), stacked; each layer's ``get_weights()`` holds
  the forward layer's ``[kernel, recurrent_kernel, bias]`` then the backward layer's (no
  bias with ``use_bias=False``).
* ONNX: one GRU/LSTM node per layer with ``direction="bidirectional"`` (or "forward"),
  W [D, G*H, I_k], R [D, G*H, H], B [D, 2*G*H], direction 0 forward, 1 reverse (torch's
  ``_reverse`` set); ``initial_h``/``Y_h`` [D, B, H] are torch's h0/h_n rows of that layer.
  ``Y`` is [T, D, B, H]: the next layer reads it transposed to [T, B, D, H] and reshaped to
  [T, B, D*H], torch's layout.

Every conversion is a permutation of gate blocks plus a transpose or reshape, so it is exact,
with one exception: where Keras keeps a single bias (GRU reset_after=False, LSTM) torch's two
biases are summed going to Keras, and coming back the sum becomes ``b_ih`` with ``b_hh = 0``.
That round trip gives the same outputs (up to the rounding of one addition) but not the same
two arrays; every other round trip returns the identical arrays.
"""
from __future__ import annotations

import numpy as np

from grubench.kernels.cells import CELLS, NetworkSpec
from grubench.kernels.cells import cell as cell_spec
from grubench.kernels.network import check_params, direction_weights

# Gate names along the G*H axis of each layout, from the cell specs; Keras' "h"/"c" and
# ONNX's "h"/"c" are the candidate gate torch calls "n" (GRU) and "g" (LSTM), so one name
# serves all three.
TORCH_GATES = {name: spec.gates for name, spec in CELLS.items()}
KERAS_GATES = {name: spec.keras_gates for name, spec in CELLS.items()}
ONNX_GATES = {name: spec.onnx_gates for name, spec in CELLS.items()}
TORCH_NAMES = ("w_ih", "w_hh", "b_ih", "b_hh")   # the keys of a torch-layout dict


def init_weights(cell: str, input_size: int, hidden_size: int, *, seed: int = 0,
                 dtype=np.float32) -> dict[str, np.ndarray]:
    """torch.nn.GRU/LSTM's default initialization: every weight and bias ~ U(-1/sqrt(H),
    1/sqrt(H)). Returns w_ih (G*H, I), w_hh (G*H, H), b_ih (G*H,), b_hh (G*H,)."""
    spec = cell_spec(cell)
    if input_size < 1 or hidden_size < 1:
        raise ValueError(f"input_size and hidden_size must be >= 1, got {input_size}, "
                         f"{hidden_size}")
    bound = 1.0 / np.sqrt(hidden_size)
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(-bound, bound, shape).astype(dtype)
            for name, shape in spec.parameter_shapes(input_size, hidden_size).items()}


def reorder_gates(array: np.ndarray, source: tuple[str, ...], target: tuple[str, ...],
                  axis: int = 0) -> np.ndarray:
    """``array`` with its len(source) equal gate blocks along ``axis`` put in ``target``
    order (a new array; values are moved, never computed)."""
    blocks = dict(zip(source, np.split(array, len(source), axis=axis)))
    return np.concatenate([blocks[name] for name in target], axis=axis)


# ----------------------------------------------------------------------------- validation

def _as_float(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must hold floats, got dtype {array.dtype}")
    return array


def _check_shape(name: str, array: np.ndarray, expected: tuple[int, ...],
                 meaning: str) -> None:
    if array.shape != expected:
        raise ValueError(f"{name} has shape {array.shape}; expected {expected} = {meaning}")


def _torch_weights(cell: str, weights: dict) -> dict[str, np.ndarray]:
    """The torch-layout dict checked: keys w_ih, w_hh, b_ih, b_hh with consistent shapes."""
    G = cell_spec(cell).n_gates
    missing = set(TORCH_NAMES) - set(weights)
    if missing:
        raise ValueError(f"torch weights lack {', '.join(sorted(missing))}; expected "
                         "the keys w_ih, w_hh, b_ih, b_hh")
    arrays = {name: _as_float(name, weights[name]) for name in TORCH_NAMES}
    w_hh = arrays["w_hh"]
    if w_hh.ndim != 2 or w_hh.shape[1] < 1 or w_hh.shape[0] != G * w_hh.shape[1]:
        raise ValueError(f"w_hh has shape {w_hh.shape}; expected ({G}*H, H) for {cell}")
    H = w_hh.shape[1]
    w_ih = arrays["w_ih"]
    if w_ih.ndim != 2 or w_ih.shape[0] != G * H:
        raise ValueError(f"w_ih has shape {w_ih.shape}; expected ({G * H}, I) = ({G}*H, I)")
    for name in ("b_ih", "b_hh"):
        _check_shape(name, arrays[name], (G * H,), f"({G}*H,)")
    return arrays


# ----------------------------------------------------------------------------- Keras

def _keras_two_biases(cell: str, reset_after: bool) -> bool:
    """Whether the Keras layer keeps [input bias, recurrent bias] (GRU reset_after=True)
    rather than one bias."""
    return cell_spec(cell).variant_of(reset_after) == "reset_after"


def to_keras(cell: str, weights: dict, *, reset_after: bool = True) -> list[np.ndarray]:
    """torch layout -> Keras ``[kernel, recurrent_kernel, bias]`` for ``layer.set_weights``.

    ``reset_after`` (GRU only) must match the Keras layer's. For a GRU with
    reset_after=False and for an LSTM, Keras has one bias: it gets ``b_ih + b_hh``.
    """
    w = _torch_weights(cell, weights)
    source, target = TORCH_GATES[cell], KERAS_GATES[cell]
    kernel = reorder_gates(w["w_ih"], source, target).T
    recurrent_kernel = reorder_gates(w["w_hh"], source, target).T
    b_ih, b_hh = (reorder_gates(w[name], source, target) for name in ("b_ih", "b_hh"))
    if _keras_two_biases(cell, reset_after):
        bias = np.stack([b_ih, b_hh])
    else:
        bias = b_ih + b_hh
    return [np.ascontiguousarray(kernel), np.ascontiguousarray(recurrent_kernel), bias]


def from_keras(cell: str, kernel, recurrent_kernel, bias, *,
               reset_after: bool = True) -> dict[str, np.ndarray]:
    """Keras ``kernel, recurrent_kernel, bias`` (``*layer.get_weights()``) -> torch layout.

    ``reset_after`` (GRU only) must match the Keras layer's. Where Keras has one bias (GRU
    with reset_after=False, LSTM) it becomes ``b_ih`` and ``b_hh`` is zero: the outputs are
    the same, since only the sum b_ih + b_hh enters those equations.
    """
    G = cell_spec(cell).n_gates
    recurrent_kernel = _as_float("recurrent_kernel", recurrent_kernel)
    U = recurrent_kernel.shape[0] if recurrent_kernel.ndim == 2 else -1
    if U < 1 or recurrent_kernel.shape[1] != G * U:
        raise ValueError(f"recurrent_kernel has shape {recurrent_kernel.shape}; expected "
                         f"(U, {G}*U) for a Keras {cell.upper()}")
    kernel = _as_float("kernel", kernel)
    if kernel.ndim != 2 or kernel.shape[1] != G * U:
        raise ValueError(f"kernel has shape {kernel.shape}; expected (I, {G * U}) = "
                         f"(I, {G}*U)")
    bias = _as_float("bias", bias)
    if _keras_two_biases(cell, reset_after):
        _check_shape("bias", bias, (2, G * U), f"(2, {G}*U) [input, recurrent] "
                     "(a Keras GRU with reset_after=True)")
        input_bias, recurrent_bias = bias
    else:
        what = "a Keras GRU with reset_after=False" if cell == "gru" else "a Keras LSTM"
        _check_shape("bias", bias, (G * U,), f"({G}*U,) ({what})")
        input_bias, recurrent_bias = bias, np.zeros_like(bias)
    source, target = KERAS_GATES[cell], TORCH_GATES[cell]
    return {"w_ih": np.ascontiguousarray(reorder_gates(kernel.T, source, target)),
            "w_hh": np.ascontiguousarray(reorder_gates(recurrent_kernel.T, source, target)),
            "b_ih": reorder_gates(input_bias, source, target),
            "b_hh": reorder_gates(recurrent_bias, source, target)}


# ----------------------------------------------------------------------------- ONNX

def to_onnx(cell: str, weights: dict) -> dict[str, np.ndarray]:
    """torch layout -> ONNX ``{"W", "R", "B"}`` inputs of a one-direction GRU/LSTM node
    (``direction`` "forward", or "reverse" for torch's ``_reverse`` set alone).

    For a GRU, set the node's ``linear_before_reset`` to ``int(reset_after)``.
    """
    w = _torch_weights(cell, weights)
    source, target = TORCH_GATES[cell], ONNX_GATES[cell]
    W, R, Wb, Rb = (reorder_gates(w[name], source, target) for name in TORCH_NAMES)
    return {"W": W[None], "R": R[None], "B": np.concatenate([Wb, Rb])[None]}


def from_onnx(cell: str, W, R, B=None) -> dict[str, np.ndarray]:
    """ONNX ``W, R[, B]`` of a one-direction GRU/LSTM node -> torch layout (B absent:
    zeros, as ONNX defines). A GRU's ``linear_before_reset`` = 1 means reset_after=True."""
    G = cell_spec(cell).n_gates
    R = _as_float("R", R)
    H = R.shape[2] if R.ndim == 3 else -1
    if H < 1 or R.shape[:2] != (1, G * H):
        raise ValueError(f"R has shape {R.shape}; expected [1, {G}*H, H] (one direction: "
                         "from_onnx_network converts bidirectional and stacked nodes)")
    W = _as_float("W", W)
    if W.ndim != 3 or W.shape[:2] != (1, G * H):
        raise ValueError(f"W has shape {W.shape}; expected [1, {G * H}, I] = [1, {G}*H, I]")
    B = np.zeros((1, 2 * G * H), W.dtype) if B is None else _as_float("B", B)
    _check_shape("B", B, (1, 2 * G * H), f"[1, 2*{G}*H] = [Wb, Rb]")
    source, target = ONNX_GATES[cell], TORCH_GATES[cell]
    w_ih, w_hh, b_ih, b_hh = (reorder_gates(array, source, target)
                              for array in (W[0], R[0], *np.split(B[0], 2)))
    return {"w_ih": w_ih, "w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh}


# ----------------------------------------------------------------------------- networks

def _network(spec) -> NetworkSpec:
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
    return spec


def _layer_input(layer: int) -> str:
    """What layer ``layer``'s input width is, for error messages."""
    return "I" if layer == 0 else "directions*H"


def _keras_bias_shape(spec: NetworkSpec, reset_after: bool) -> tuple[tuple, str]:
    G, H = spec.spec.n_gates, spec.hidden_size
    variant = f" (reset_after={reset_after})" if "reset_before" in spec.spec.variants else ""
    if _keras_two_biases(spec.cell, reset_after):
        return (2, G * H), f"(2, {G}*H) [input, recurrent]{variant}"
    return (G * H,), f"({G}*H,){variant}"


def _keras_shapes(spec: NetworkSpec, layer: int,
                  reset_after: bool) -> dict[str, tuple[tuple, str]]:
    """One Keras layer's arrays in get_weights() order: their shapes and what they are."""
    G, H = spec.spec.n_gates, spec.hidden_size
    shapes = {"kernel": ((spec.layer_input_size(layer), G * H),
                         f"({_layer_input(layer)}, {G}*H)"),
              "recurrent_kernel": ((H, G * H), f"(H, {G}*H)")}
    if spec.bias:
        shapes["bias"] = _keras_bias_shape(spec, reset_after)
    return shapes


def _torch_named(spec: NetworkSpec, layer: int, direction: int,
                 weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One direction's converted ``weights`` under torch's names, biases only where the
    spec has them."""
    names = spec.parameter_names(layer, direction)
    return {names[name]: array for name, array in weights.items()
            if spec.bias or name.startswith("w_")}


def to_keras_network(spec: NetworkSpec, params: dict, *,
                     reset_after: bool = True) -> list[list[np.ndarray]]:
    """torch-named parameters -> per layer the weights of one Keras
    ``Bidirectional(GRU/LSTM(H, return_sequences=True))`` (a plain GRU/LSTM layer without
    ``bidirectional``), for that layer's ``set_weights``: the forward direction's
    :func:`to_keras` ``[kernel, recurrent_kernel, bias]``, then the backward's; no bias
    without ``spec.bias`` (Keras' ``use_bias=False``). A model of these layers alone
    takes them joined: ``model.set_weights([a for layer in layers for a in layer])``."""
    params = check_params(_network(spec), params)
    layers = [[] for _ in range(spec.num_layers)]
    for layer, direction, _suffix in spec.layers():
        kernel, recurrent_kernel, bias = to_keras(
            spec.cell, direction_weights(spec, params, layer, direction),
            reset_after=reset_after)
        layers[layer] += [kernel, recurrent_kernel] + ([bias] if spec.bias else [])
    return layers


def from_keras_network(spec: NetworkSpec, layers, *,
                       reset_after: bool = True) -> dict[str, np.ndarray]:
    """Per layer the ``get_weights()`` of the Keras layers :func:`to_keras_network`
    describes -> torch-named parameters. ValueError naming the array (its layer, index
    and direction) and both shapes where they do not fit ``spec``."""
    _network(spec)
    layers = [list(weights) for weights in layers]
    if len(layers) != spec.num_layers:
        raise ValueError(f"Keras weights of {len(layers)} layers; expected "
                         f"{spec.num_layers}, a list of arrays per layer")
    params = {}
    for layer, weights in enumerate(layers):
        shapes = _keras_shapes(spec, layer, reset_after)
        if len(weights) != len(shapes) * spec.directions:
            raise ValueError(
                f"Keras layer {layer} has {len(weights)} arrays; expected "
                f"{len(shapes) * spec.directions} = {spec.directions} directions x "
                f"[{', '.join(shapes)}] (bidirectional={spec.bidirectional}, "
                f"bias={spec.bias})")
        for direction in range(spec.directions):
            arrays = {}
            for index, (name, (shape, meaning)) in enumerate(shapes.items(),
                                                             direction * len(shapes)):
                what = (f"Keras layer {layer} weights[{index}] ({name}, "
                        f"{'reverse' if direction else 'forward'})")
                arrays[name] = _as_float(what, weights[index])
                _check_shape(what, arrays[name], shape, meaning)
            if not spec.bias:       # use_bias=False: a zero bias converts to zero biases
                arrays["bias"] = np.zeros(_keras_bias_shape(spec, reset_after)[0],
                                          arrays["kernel"].dtype)
            converted = from_keras(spec.cell, **arrays, reset_after=reset_after)
            params.update(_torch_named(spec, layer, direction, converted))
    return params


def onnx_node_attributes(spec: NetworkSpec, *, reset_after: bool = True) -> dict:
    """The attributes of each layer's ONNX GRU/LSTM node: ``hidden_size``, ``direction``
    and, for a cell with a reset-before variant (GRU), ``linear_before_reset``."""
    attributes = {"hidden_size": _network(spec).hidden_size,
                  "direction": "bidirectional" if spec.bidirectional else "forward"}
    if "reset_before" in spec.spec.variants:
        attributes["linear_before_reset"] = int(reset_after)
    return attributes


def _onnx_shapes(spec: NetworkSpec, layer: int) -> dict[str, tuple[tuple, str]]:
    """One ONNX node's W, R, B: their shapes and what they are."""
    D, G, H = spec.directions, spec.spec.n_gates, spec.hidden_size
    return {"W": ((D, G * H, spec.layer_input_size(layer)),
                  f"[directions, {G}*H, {_layer_input(layer)}]"),
            "R": ((D, G * H, H), f"[directions, {G}*H, H]"),
            "B": ((D, 2 * G * H), f"[directions, 2*{G}*H] = [Wb, Rb]")}


def to_onnx_network(spec: NetworkSpec, params: dict) -> list[dict[str, np.ndarray]]:
    """torch-named parameters -> per layer the ``{"W", "R", "B"}`` inputs of one ONNX
    GRU/LSTM node (attributes: :func:`onnx_node_attributes`); direction d of W, R, B is
    :func:`to_onnx` of that layer's forward (d = 0) or ``_reverse`` (d = 1) parameters. No
    B without ``spec.bias`` (ONNX reads an absent B as zeros)."""
    params = check_params(_network(spec), params)
    nodes = []
    for layer in range(spec.num_layers):
        directions = [to_onnx(spec.cell, direction_weights(spec, params, layer, direction))
                      for direction in range(spec.directions)]
        names = ("W", "R", "B") if spec.bias else ("W", "R")
        nodes.append({name: np.concatenate([inputs[name] for inputs in directions])
                      for name in names})
    return nodes


def from_onnx_network(spec: NetworkSpec, nodes) -> dict[str, np.ndarray]:
    """Per layer the ``{"W", "R"[, "B"]}`` inputs of its ONNX GRU/LSTM node (as
    :func:`to_onnx_network` returns) -> torch-named parameters. ValueError naming the
    input (layer and name) and both shapes where they do not fit ``spec``; a nonzero B
    for a spec without bias is an error (torch's network has nowhere to keep it)."""
    _network(spec)
    nodes = list(nodes)
    if len(nodes) != spec.num_layers:
        raise ValueError(f"ONNX weights of {len(nodes)} layers; expected {spec.num_layers}, "
                         "one node per layer")
    params = {}
    for layer, node in enumerate(nodes):
        shapes = _onnx_shapes(spec, layer)
        if not isinstance(node, dict) or not {"W", "R"} <= set(node) <= set(shapes):
            keys = sorted(node) if isinstance(node, dict) else type(node).__name__
            raise ValueError(f"ONNX layer {layer} has {keys}; expected a dict of W, R "
                             "and optionally B")
        direction_attribute = onnx_node_attributes(spec)["direction"]
        inputs = {}
        for name, (shape, meaning) in shapes.items():
            if name in node:
                what = f"ONNX layer {layer} {name}"
                inputs[name] = _as_float(what, node[name])
                _check_shape(what, inputs[name], shape,
                             f"{meaning} (direction={direction_attribute!r})")
        if not spec.bias and "B" in inputs and inputs["B"].any():
            raise ValueError(f"ONNX layer {layer} B is nonzero; the network has no bias "
                             "(bias=False) to hold it")
        for direction in range(spec.directions):
            one = {name: array[direction:direction + 1] for name, array in inputs.items()}
            params.update(_torch_named(spec, layer, direction, from_onnx(spec.cell, **one)))
    return params
