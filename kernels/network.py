"""Stacked and bidirectional GRU/LSTM networks over any backend's single-layer kernels.

A :class:`Network` runs what torch.nn.GRU/LSTM runs (see :class:`~.cells.NetworkSpec`):
``num_layers`` layers, each in one or two directions, layer k > 0 reading the concatenated
outputs of layer k-1, inter-layer dropout in training. Each (layer, direction) is one call
of a backend's prepared path (``prepare(args)`` of :mod:`.contract`), so every backend
gets networks, forward and exact backpropagation through layers and directions, without
a kernel of its own.

* The reverse direction of a sequence of length L reads its steps L-1, ..., 0, as torch's
  packed sequences do: its input is x with each sequence's first L steps reversed in
  place, and its output is reversed back the same way. Steps t >= L give y = 0.
* Dropout (torch's semantics): in training, every layer's output except the last is
  multiplied by a mask of zeros (probability ``dropout``) and 1/(1 - dropout), drawn from
  a seed; backward multiplies the gradient by the same mask.
* ``bias=False``: the kernels get zero biases, and no bias gradients are returned.
* Two directions run at once in two threads, each with half the threads, when the
  backend's kernels release the GIL (numba-cpu's are ``@njit(nogil=True)``) and the run
  has two threads or more; the result is bit-identical to running them one after the
  other with those threads (torch on CPU runs them one after the other).
* One-direction stacks infer as a wavefront under the same conditions, when the backend's
  prepared call can run a range of steps (``forward_steps``, numba-cpu's): each layer's
  steps run in pieces, and two threads, one each, run the ready pieces, layer k+1 on a
  piece while layer k runs the next. The result is bit-identical to layer by layer
  (numba-cpu's products sum each output in one order wherever the steps are split).

Device backends (numba-cuda, torch-cuda) run too, but each layer's outputs come back to
the host before the next layer: correct, not fast.

Shapes: x (T, B, I), or (B, T, I) with ``batch_first``; y likewise with D*H features
(D = 2 when bidirectional); h0, c0, h_n, c_n (num_layers*D, B, H) in either layout;
parameters in torch's names and shapes (``NetworkSpec.parameter_shapes``).
"""
from __future__ import annotations

import concurrent.futures
import functools
import numbers
import threading
import types
from dataclasses import dataclass

import numpy as np

from .cells import NetworkSpec
from .contract import (RNNArgs, _as_float_array, _check_shape, _contiguous_writable,
                       _validate_lengths, validate)


def _numba_threads():
    """numba's getter and setter of the threads a run started from the calling thread
    uses (numba keeps the count per thread)."""
    import numba
    return numba.get_num_threads, numba.set_num_threads


#: Kernel modules whose kernels release the GIL and whose prepared calls run a range of
#: steps (``forward_steps``), with the function returning the (get, set) pair of their
#: per-thread thread count. Others run one direction, and one layer, at a time.
GIL_FREE_KERNELS = {"grubench.kernels.numba_cpu": _numba_threads}


def _kernel_module_name(backend) -> str | None:
    """The kernel module behind ``backend``: a kernel module itself, or a registry backend
    (grubench.backends.Backend), whose entry names its module."""
    if isinstance(backend, types.ModuleType):
        return backend.__name__
    module = getattr(getattr(backend, "entry", None), "module", None)
    if module is None:
        return None
    return module if "." in module else f"grubench.kernels.{module}"


@functools.cache
def _second_thread() -> concurrent.futures.ThreadPoolExecutor:
    """The thread that runs beside the caller: the reverse direction while the caller runs
    the forward one, or half of a wavefront's pieces."""
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="network")


#: A wavefront splits each layer's steps into this many pieces per layer of the stack:
#: with two threads, L layers and P pieces the wavefront takes about max(L*P/2, P+L-1)
#: piece times against L*P layer by layer, so P = 2L leaves little to the pipeline's
#: fill and drain while each piece stays long enough to hide the per-call overhead.
WAVEFRONT_PIECES_PER_LAYER = 2


@dataclass(frozen=True)
class NetworkArgs:
    """One validated network call, time-major: x (T, B, I) (a transposed view of a
    batch-first input), h0/c0 (num_layers*D, B, H), ``params`` every layer's weights and
    biases by torch name (zeros where the spec has no bias)."""

    spec: NetworkSpec
    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray | None
    params: dict[str, np.ndarray]
    lengths: np.ndarray | None

    @property
    def T(self) -> int:
        return self.x.shape[0]

    @property
    def B(self) -> int:
        return self.x.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.x.dtype

    @functools.cached_property
    def reverse_index(self) -> np.ndarray | None:
        """index[t, b]: the step the reverse direction of sequence b reads at its step t
        (lengths[b]-1-t inside the sequence; padding maps to itself). None: all full."""
        if self.lengths is None:
            return None
        steps = np.arange(self.T)[:, None]
        inside = steps < self.lengths[None, :]
        return np.where(inside, self.lengths[None, :] - 1 - steps, steps)

    def reverse_time(self, array: np.ndarray) -> np.ndarray:
        """``array`` (T, B, ...) with each sequence's steps reversed within its length, in
        a new C-contiguous array (the map is its own inverse)."""
        if self.reverse_index is None:
            return np.ascontiguousarray(array[::-1])
        return array[self.reverse_index, np.arange(self.B)[None, :]]

    def zero_padding(self, array: np.ndarray) -> np.ndarray:
        """A C-contiguous copy of ``array`` (T, B, ...) in this call's dtype, with steps
        t >= lengths[b] zero (they may hold anything, NaN included)."""
        if self.lengths is None:
            return np.array(array, dtype=self.dtype, order="C")
        inside = (np.arange(self.T)[:, None] < self.lengths[None, :])[:, :, None]
        return np.where(inside, array, 0).astype(self.dtype, copy=False)


@dataclass
class Saved:
    """What :meth:`Network.forward_train` keeps for backward: per layer, per direction,
    the backend's prepared call and its saved state; the dropout masks applied to each
    layer's output (None where none was)."""

    args: NetworkArgs
    layers: list
    masks: list


class Network:
    """A stacked, possibly bidirectional GRU or LSTM over ``backend``: anything with
    ``prepare(args)`` (a kernel module such as grubench.kernels.reference, or a registry
    backend of grubench.backends).

    ``threads``: threads of one run; None takes the backend's own setting (numba's thread
    count for numba-cpu, 1 for other backends). With two directions, threads >= 2, a
    GIL-free backend and ``concurrent_directions``, the directions run at once with
    threads // 2 each; else one after the other with all the threads each. Likewise
    ``wavefront``: a one-direction stack infers with its layers overlapping (see the
    module's notes); else layer by layer.
    """

    def __init__(self, backend, spec: NetworkSpec, *, reset_after: bool = True,
                 dropout: float = 0.0, threads: int | None = None,
                 concurrent_directions: bool = True, wavefront: bool = True):
        if not callable(getattr(backend, "prepare", None)):
            raise TypeError(f"backend must have a prepare(args) method (a kernel module or "
                            f"a grubench.backends backend), got {type(backend).__name__}")
        if not isinstance(spec, NetworkSpec):
            raise TypeError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
        if not isinstance(reset_after, (bool, np.bool_)):
            raise TypeError(f"reset_after must be True or False, got {reset_after!r}")
        spec.spec.check_variant(spec.spec.variant_of(bool(reset_after)))
        if spec.cell != "gru" and not reset_after:
            raise ValueError(f"reset_after=False is a GRU variant; {spec.cell} has none")
        if (isinstance(dropout, bool) or not isinstance(dropout, numbers.Real)
                or not 0 <= dropout <= 1):
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self.backend = backend
        self.spec = spec
        self.reset_after = bool(reset_after)
        self.dropout = float(dropout)
        self.threads = threads
        self.concurrent_directions = bool(concurrent_directions)
        self.wavefront = bool(wavefront)
        self._thread_control = GIL_FREE_KERNELS.get(_kernel_module_name(backend))

    # ------------------------------------------------------------------ validation

    def validate(self, x, params, h0=None, c0=None, lengths=None) -> NetworkArgs:
        """Check a call and return it time-major as :class:`NetworkArgs`. TypeError or
        ValueError naming the argument and both shapes; nothing runs before this passes."""
        spec = self.spec
        x = _as_float_array("x", x)
        layout = "(B, T, I)" if spec.batch_first else "(T, B, I)"
        if x.ndim != 3 or x.shape[2] != spec.input_size or 0 in x.shape:
            raise ValueError(f"x has shape {x.shape}; expected {layout} with "
                             f"I = input_size = {spec.input_size} and T, B >= 1")
        if spec.batch_first:
            x = x.transpose(1, 0, 2)
        T, B, _ = x.shape
        params = self._validate_params(params, x.dtype)
        states = {"h0": h0, "c0": c0}
        if spec.cell != "lstm" and c0 is not None:
            raise TypeError(f"c0 is an LSTM state; a {spec.cell} network takes h0 only")
        shape = spec.state_shape(B)
        for name in spec.spec.initial_states:
            value = states[name]
            if value is None:
                states[name] = np.zeros(shape, x.dtype)
                continue
            value = _as_float_array(name, value)
            _check_shape(name, value, shape, "(num_layers*directions, B, H)")
            if value.dtype != x.dtype:
                raise TypeError(f"{name} has dtype {value.dtype}; x has {x.dtype}")
            states[name] = value
        return NetworkArgs(spec=spec, x=x, h0=states["h0"], c0=states["c0"], params=params,
                           lengths=_validate_lengths(lengths, T, B))

    def _validate_params(self, params, dtype) -> dict[str, np.ndarray]:
        return check_params(self.spec, params, dtype)

    def _layer_args(self, args: NetworkArgs, layer: int, direction: int,
                    layer_input, lengths="call") -> RNNArgs:
        """The contract call of (layer, direction) on ``layer_input`` (time-major, already
        reversed for the reverse direction), with the call's lengths or ``lengths``."""
        state = layer * self.spec.directions + direction
        weights = direction_weights(self.spec, args.params, layer, direction)
        return validate(self.spec.cell, layer_input, args.h0[state],
                        None if args.c0 is None else args.c0[state], **weights,
                        reset_after=self.reset_after,
                        lengths=args.lengths if lengths == "call" else lengths)

    # ------------------------------------------------------------------ running

    def _thread_count(self) -> int:
        if self.threads is not None:
            return self.threads
        return self._thread_control()[0]() if self._thread_control else 1

    def _each_direction(self, run) -> list:
        """[run(0), run(1)] (or [run(0)]): concurrently, each with threads // 2 threads,
        where the backend's kernels release the GIL and there are two threads or more;
        else one after the other, each with all the threads."""
        directions = self.spec.directions
        threads = self._thread_count()
        if self._thread_control is None:
            return [run(direction) for direction in range(directions)]
        get_threads, set_threads = self._thread_control()
        concurrent_run = self.concurrent_directions and directions == 2 and threads >= 2

        def with_threads(direction):
            before = get_threads()
            set_threads(threads // 2 if concurrent_run else threads)
            try:
                return run(direction)
            finally:
                set_threads(before)

        if not concurrent_run:
            return [with_threads(direction) for direction in range(directions)]
        reverse = _second_thread().submit(with_threads, 1)
        try:
            forward = with_threads(0)
        finally:
            concurrent.futures.wait([reverse])
        return [forward, reverse.result()]

    def _wavefront_applies(self, args: NetworkArgs, train: bool) -> bool:
        spec = self.spec
        return (self.wavefront and not train and spec.directions == 1
                and spec.num_layers > 1 and args.T > 1 and self._thread_control is not None
                and self._thread_count() >= 2)

    def _wavefront(self, args: NetworkArgs, rng):
        """Inference of a one-direction stack with the layers overlapping (the module's
        notes); the outputs."""
        spec, T, B, H = self.spec, args.T, args.B, self.spec.hidden_size
        L = spec.num_layers
        pieces = min(T, WAVEFRONT_PIECES_PER_LAYER * L)
        bounds = [T * piece // pieces for piece in range(pieces + 1)]
        masks = [self._dropout_mask(rng, (T, B, H), args.dtype)
                 if rng is not None and self.dropout > 0 else None for _ in range(L - 1)]
        outputs = [np.empty((T, B, H), args.dtype) for _ in range(L)]
        inputs = [_contiguous_writable(args.zero_padding(args.x) if args.lengths is not None
                                       else args.x)]
        for layer, mask in enumerate(masks):
            inputs.append(outputs[layer] if mask is None else np.empty_like(outputs[layer]))
        get_threads, set_threads = self._thread_control()
        before = get_threads()
        set_threads(1)          # each layer's call is packed for, and runs on, one thread
        try:
            prepared = [self.backend.prepare(self._layer_args(args, layer, 0, inputs[layer],
                                                              lengths=None))
                        for layer in range(L)]
        finally:
            set_threads(before)
        h = [np.ascontiguousarray(args.h0[layer]) for layer in range(L)]
        c = [None if args.c0 is None else np.ascontiguousarray(args.c0[layer])
             for layer in range(L)]
        done = [0] * L              # pieces each layer has finished
        busy = [False] * L
        failed: list[BaseException] = []
        condition = threading.Condition()

        def claim():
            """The ready piece nearest the wavefront's start (deeper layer first), or
            None when all are done or one failed; waits while none is ready."""
            with condition:
                while True:
                    if failed or min(done) == pieces:
                        return None
                    ready = [(done[layer] + layer, -layer) for layer in range(L)
                             if not busy[layer] and done[layer] < pieces
                             and (layer == 0 or done[layer - 1] > done[layer])]
                    if ready:
                        layer = -min(ready)[1]
                        busy[layer] = True
                        return layer
                    condition.wait()

        def run_piece(layer):
            start, stop = bounds[done[layer]], bounds[done[layer] + 1]
            lengths = (None if args.lengths is None
                       else np.clip(args.lengths - start, 0, stop - start))
            result = prepared[layer].forward_steps(inputs[layer][start:stop], h[layer],
                                                   c[layer], lengths)
            outputs[layer][start:stop] = result[0]
            h[layer] = result[1]
            if c[layer] is not None:
                c[layer] = result[2]
            if layer < L - 1 and masks[layer] is not None:
                np.multiply(result[0], masks[layer][start:stop],
                            out=inputs[layer + 1][start:stop])

        def runner():
            before = get_threads()
            set_threads(1)
            try:
                while (layer := claim()) is not None:
                    try:
                        run_piece(layer)
                    except BaseException as error:
                        failed.append(error)
                    with condition:
                        busy[layer] = False
                        done[layer] += not failed
                        condition.notify_all()
            finally:
                set_threads(before)

        helper = _second_thread().submit(runner)
        try:
            runner()
        finally:
            concurrent.futures.wait([helper])
        if failed:
            raise failed[0]
        h_n = np.stack(h)
        y = outputs[-1].transpose(1, 0, 2) if spec.batch_first else outputs[-1]
        return (y, h_n) if args.c0 is None else (y, h_n, np.stack(c))

    def _forward(self, args: NetworkArgs, dropout_seed, train: bool):
        spec, H = self.spec, self.spec.hidden_size
        rng = np.random.default_rng(dropout_seed) if dropout_seed is not None else None
        if self._wavefront_applies(args, train):
            return self._wavefront(args, rng), None
        h_n = np.empty(spec.state_shape(args.B), args.dtype)
        c_n = np.empty_like(h_n) if spec.cell == "lstm" else None
        layer_input, layers, masks = args.x, [], []
        for layer in range(spec.num_layers):
            def run(direction, layer=layer, layer_input=layer_input):
                source = args.reverse_time(layer_input) if direction else layer_input
                prepared = self.backend.prepare(
                    self._layer_args(args, layer, direction, source))
                if train:
                    outputs, saved = prepared.forward_train()
                else:
                    outputs, saved = prepared.forward(), None
                prepared.synchronize()
                return prepared, saved, prepared.to_numpy(outputs)

            results = self._each_direction(run)
            layers.append([(prepared, saved) for prepared, saved, _ in results])
            if spec.directions == 1:
                output = results[0][2][0]
            else:
                output = np.empty((args.T, args.B, 2 * H), args.dtype)
                output[..., :H] = results[0][2][0]
                output[..., H:] = args.reverse_time(results[1][2][0])
            for direction, (_, _, outputs) in enumerate(results):
                state = layer * spec.directions + direction
                h_n[state] = outputs[1]
                if c_n is not None:
                    c_n[state] = outputs[2]
            mask = None
            if rng is not None and self.dropout > 0 and layer < spec.num_layers - 1:
                mask = self._dropout_mask(rng, output.shape, args.dtype)
                output = output * mask
            masks.append(mask)
            layer_input = output
        y = layer_input.transpose(1, 0, 2) if spec.batch_first else layer_input
        outputs = (y, h_n) if c_n is None else (y, h_n, c_n)
        return outputs, Saved(args=args, layers=layers, masks=masks)

    def _dropout_mask(self, rng, shape, dtype) -> np.ndarray:
        """torch's dropout: each element kept with probability 1 - p and scaled by
        1/(1 - p); p = 1 drops everything."""
        keep = rng.random(shape) >= self.dropout
        if self.dropout == 1:
            return np.zeros(shape, dtype)
        return (keep / (1 - self.dropout)).astype(dtype)

    def forward(self, x, params, h0=None, c0=None, *, lengths=None, dropout_seed=None):
        """Outputs (y, h_n) for GRU, (y, h_n, c_n) for LSTM; nothing is saved. Dropout
        (training mode) applies when ``dropout_seed`` is given; None evaluates."""
        args = self.validate(x, params, h0, c0, lengths)
        return self._forward(args, dropout_seed, train=False)[0]

    def forward_train(self, x, params, h0=None, c0=None, *, lengths=None, dropout_seed=None):
        """(outputs, saved): forward keeping what :meth:`backward` needs. The inputs and
        the outputs may be part of ``saved`` (no copies): change none before backward."""
        args = self.validate(x, params, h0, c0, lengths)
        return self._forward(args, dropout_seed, train=True)

    def backward(self, saved: Saved, dy=None, dh_n=None, dc_n=None) -> dict[str, np.ndarray]:
        """Gradients of sum(y*dy) + sum(h_n*dh_n) [+ sum(c_n*dc_n)] (None: zero) with
        respect to x (in x's layout), h0 [, c0] and every parameter by torch name (no bias
        gradients when the spec has no bias)."""
        args, spec, H = saved.args, self.spec, self.spec.hidden_size
        if spec.batch_first:
            dy = self._upstream("dy", dy, (args.B, args.T, spec.output_size),
                                "(B, T, directions*H)", args.dtype).transpose(1, 0, 2)
        else:
            dy = self._upstream("dy", dy, (args.T, args.B, spec.output_size),
                                "(T, B, directions*H)", args.dtype)
        state_shape = spec.state_shape(args.B)
        upstream_states = [self._upstream("dh_n", dh_n, state_shape,
                                          "(num_layers*directions, B, H)", args.dtype)]
        if spec.cell == "lstm":
            upstream_states.append(self._upstream("dc_n", dc_n, state_shape,
                                                  "(num_layers*directions, B, H)",
                                                  args.dtype))
        elif dc_n is not None:
            raise TypeError(f"dc_n is an LSTM gradient; a {spec.cell} network has no c_n")
        grads = {"h0": np.empty(state_shape, args.dtype)}
        if spec.cell == "lstm":
            grads["c0"] = np.empty(state_shape, args.dtype)
        d_output = dy
        for layer in reversed(range(spec.num_layers)):
            def run(direction, layer=layer, d_output=d_output):
                prepared, layer_saved = saved.layers[layer][direction]
                d_y = d_output[..., direction * H:(direction + 1) * H]
                d_y = args.zero_padding(args.reverse_time(d_y) if direction else d_y)
                state = layer * spec.directions + direction
                upstream = (d_y,) + tuple(np.ascontiguousarray(d[state])
                                          for d in upstream_states)
                result = prepared.backward(layer_saved,
                                           tuple(prepared.from_numpy(a) for a in upstream))
                prepared.synchronize()
                return prepared.to_numpy(result)

            results = self._each_direction(run)
            d_input = results[0]["x"]
            if spec.directions == 2:
                d_input = d_input + args.reverse_time(results[1]["x"])
            for direction, layer_grads in enumerate(results):
                names = spec.parameter_names(layer, direction)
                state = layer * spec.directions + direction
                grads["h0"][state] = layer_grads["h0"]
                if spec.cell == "lstm":
                    grads["c0"][state] = layer_grads["c0"]
                for name in ("w_ih", "w_hh") + (("b_ih", "b_hh") if spec.bias else ()):
                    grads[names[name]] = layer_grads[name]
            if layer > 0 and saved.masks[layer - 1] is not None:
                d_input = d_input * saved.masks[layer - 1]
            d_output = d_input
        grads["x"] = d_output.transpose(1, 0, 2) if spec.batch_first else d_output
        order = ["x", "h0"] + (["c0"] if spec.cell == "lstm" else [])
        return {name: grads[name] for name in order + list(spec.parameter_shapes())}

    @staticmethod
    def _upstream(name, value, shape, meaning, dtype) -> np.ndarray:
        if value is None:
            return np.zeros(shape, dtype)
        value = _as_float_array(name, value)
        _check_shape(name, value, shape, meaning)
        if value.dtype != dtype:
            raise TypeError(f"{name} has dtype {value.dtype}; x has {dtype}")
        return value


def check_params(spec: NetworkSpec, params, dtype=None) -> dict[str, np.ndarray]:
    """A network's parameters by torch name (``spec.parameter_shapes()``) checked: no name
    missing or unexpected, every array of floats in torch's shape (and ``dtype``, when
    given). Returns them as arrays, with zero biases where the spec has none. TypeError
    or ValueError naming the parameter (and both shapes)."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays by torch name, got "
                        f"{type(params).__name__}")
    shapes = spec.parameter_shapes()
    missing = [name for name in shapes if name not in params]
    unknown = [name for name in params if name not in shapes]
    if missing or unknown:
        raise ValueError(f"params do not match the network ({_describe(spec)}): missing "
                         f"{missing or 'none'}, unexpected {unknown or 'none'}")
    checked = {}
    for name, shape in shapes.items():
        value = _as_float_array(name, params[name])
        _check_shape(name, value, shape, f"(torch.nn.{spec.spec.torch_class}'s shape)")
        if dtype is not None and value.dtype != dtype:
            raise TypeError(f"{name} has dtype {value.dtype}; x has {dtype}")
        checked[name] = value
    if not spec.bias:
        first_weight = next(iter(checked.values()))
        zeros = np.zeros(spec.spec.n_gates * spec.hidden_size,
                         first_weight.dtype if dtype is None else dtype)
        for layer, direction, _suffix in spec.layers():
            names = spec.parameter_names(layer, direction)
            checked[names["b_ih"]] = checked[names["b_hh"]] = zeros
    return checked


def direction_weights(spec: NetworkSpec, params: dict, layer: int,
                      direction: int) -> dict[str, np.ndarray]:
    """One layer and direction's ``w_ih, w_hh, b_ih, b_hh`` (the single-layer contract's
    names) from checked ``params`` by torch name."""
    return {name: params[torch_name]
            for name, torch_name in spec.parameter_names(layer, direction).items()}


def _describe(spec: NetworkSpec) -> str:
    """E.g. '2 layers, bidirectional, bias' for error messages."""
    layers = f"{spec.num_layers} layer" + ("s" if spec.num_layers > 1 else "")
    return ", ".join([layers, "bidirectional" if spec.bidirectional else "one direction",
                      "bias" if spec.bias else "no bias"])
