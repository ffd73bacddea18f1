"""The "onnxruntime" and "onnxruntime-cuda" backends: ONNX Runtime's own GRU and LSTM
operators, as a deployment that exports its model to ONNX runs them.

``prepare`` builds a one-node ONNX graph with ``onnx.helper``: the GRU node with
``linear_before_reset`` = 1 (reset-after) or 0 (reset-before), or the LSTM node, with the
weights converted by :func:`grubench.weights.to_onnx` as constant initializers (gate orders
z,r,h and i,o,f,c), ``sequence_lens`` for lengths, and the inputs bound once on the
execution provider's device (IOBinding), so a timed ``forward`` is one
``run_with_iobinding``.

Where ONNX Runtime and the contract differ:

* A sequence of length 0 gets Y_h = 0 (and Y_c = 0) from ONNX Runtime; the contract keeps
  its initial state. The graph puts the initial states back in those rows
  (``Where(sequence_lens == 0, initial_h, Y_h)``), so the backend gives the contract's
  answer on every device.
* Inference only, float32 only: :data:`UNSUPPORTED` says why; those calls raise
  NotImplementedError with that reason (the harness reports them as ``unsupported``).

Threads: ``intra_op_num_threads`` is the count :func:`grubench.threads.pin_threads` set in
this process (ONNX Runtime's default, one per physical core, when nothing was pinned),
``inter_op_num_threads`` 1, sequential execution, and no spinning, so an idle pool never
burns the core another backend measures on. The CPU memory arena is off so that every
allocation of a call is a real one that the peak-RSS counter sees (grubench.memory).
"""
from __future__ import annotations

import numpy as np

from grubench.threads import pinned_threads
from grubench.weights import to_onnx

from .cells import NO_VARIANT
from .contract import BackendUnavailable, Prepared, RNNArgs, convenience_api

#: What ONNX Runtime cannot run, by mode or dtype name, with the reason.
UNSUPPORTED = {
    "training": "ONNX Runtime runs GRU and LSTM for inference only (no gradient kernels "
                "for them)",
    "float64": "ONNX Runtime's GRU and LSTM kernels are float32 only (with doubles they "
               "fail: \"GRU operator does not support double yet\", onnxruntime 1.32)",
}

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}

#: GRU-14 and LSTM-14 (opset 14: the ``layout`` attribute, time-major by default).
OPSET = 14


def _import():
    import onnx
    import onnxruntime

    return onnx, onnxruntime


def availability(device: str = "cpu") -> tuple[bool, str | None]:
    try:
        _onnx, ort = _import()
    except ImportError as error:
        return False, f"{error} (install the peers extra: pip install -e '.[peers]')"
    provider = PROVIDERS[device]
    if provider not in ort.get_available_providers():
        return False, (f"onnxruntime {ort.__version__} offers no {provider} here "
                       f"(it has {', '.join(ort.get_available_providers())})")
    return True, None


def version(device: str = "cpu") -> str:
    onnx, ort = _import()
    return f"onnxruntime {ort.__version__} ({PROVIDERS[device]}), onnx {onnx.__version__}"


def build_model(args: RNNArgs):
    """The ONNX model of ``args``' cell: inputs X, initial_h[, initial_c][, sequence_lens],
    outputs Y (T,1,B,H), Y_h[, Y_c] (1,B,H) with the contract's states for empty
    sequences."""
    onnx, _ort = _import()
    from onnx import TensorProto, helper, numpy_helper

    T, B, I, H = args.T, args.B, args.I, args.H
    states = args.spec.states
    weights = to_onnx(args.cell, {n: getattr(args, n) for n in ("w_ih", "w_hh", "b_ih", "b_hh")})
    initializers = [numpy_helper.from_array(value, name) for name, value in weights.items()]

    def tensor(name, shape, kind=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, kind, shape)

    inputs = [tensor("X", (T, B, I))] + [tensor(f"initial_{s}", (1, B, H)) for s in states]
    lengths = "sequence_lens" if args.lengths is not None else ""
    if lengths:
        inputs.append(tensor(lengths, (B,), TensorProto.INT32))
    # The operator's positional inputs: X, W, R, B, sequence_lens, initial_h[, initial_c].
    node_inputs = ["X", "W", "R", "B", lengths] + [f"initial_{s}" for s in states]
    raw_states = [f"Y_{s}_onnx" if lengths else f"Y_{s}" for s in states]
    attributes = {"hidden_size": H}
    if args.variant != NO_VARIANT:           # the GRU's
        attributes["linear_before_reset"] = int(args.reset_after)
    nodes = [helper.make_node(args.cell.upper(), node_inputs, ["Y", *raw_states],
                              **attributes)]
    if lengths:
        # Empty sequences keep their initial state (the contract), where ONNX Runtime
        # returns zeros: Y_s = Where(sequence_lens == 0, initial_s, Y_s_onnx).
        initializers += [numpy_helper.from_array(np.zeros((), np.int32), "zero"),
                         numpy_helper.from_array(np.array([1, B, 1], np.int64), "row_shape")]
        nodes += [helper.make_node("Equal", [lengths, "zero"], ["empty"]),
                  helper.make_node("Reshape", ["empty", "row_shape"], ["empty_rows"])]
        nodes += [helper.make_node("Where", ["empty_rows", f"initial_{s}", raw], [f"Y_{s}"])
                  for s, raw in zip(states, raw_states)]
    outputs = [tensor("Y", (T, 1, B, H))] + [tensor(f"Y_{s}", (1, B, H)) for s in states]
    graph = helper.make_graph(nodes, f"grubench_{args.cell}", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


def session_options(ort, threads: int | None):
    """Pinned, non-spinning, sequential session options (see the module docstring)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0          # 0: ONNX Runtime's default
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = False
    return options


class OnnxRuntimePrepared(Prepared):
    def __init__(self, args: RNNArgs, device: str):
        super().__init__(args)
        _onnx, ort = _import()
        self.ort, self.device = ort, device
        self.session = ort.InferenceSession(
            build_model(args).SerializeToString(), session_options(ort, pinned_threads()),
            providers=[PROVIDERS[device]])
        self.binding = self.session.io_binding()
        feeds = {"X": args.x}
        feeds.update((f"initial_{state}", getattr(args, f"{state}0")[None])
                     for state in args.spec.states)
        if args.lengths is not None:
            feeds["sequence_lens"] = args.lengths.astype(np.int32)
        # Kept alive here: the binding refers to these device buffers.
        self.inputs = {name: self.from_numpy(array) for name, array in feeds.items()}
        for name, value in self.inputs.items():
            self.binding.bind_ortvalue_input(name, value)
        for output in self.session.get_outputs():
            self.binding.bind_output(output.name, device)

    def forward(self):
        self.session.run_with_iobinding(self.binding)
        return tuple(self.binding.get_outputs())

    def forward_train(self):
        raise NotImplementedError(UNSUPPORTED["training"])

    def backward(self, saved, upstream):
        raise NotImplementedError(UNSUPPORTED["training"])

    def from_numpy(self, array):
        return self.ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, 0)

    def to_numpy(self, result):
        """(Y, Y_h[, Y_c]) as the contract's (y (T,B,H), h_n (B,H)[, c_n (B,H)])."""
        y, *states = (value.numpy() for value in result)
        return (y[:, 0], *(state[0] for state in states))


def prepare(args: RNNArgs, device: str = "cpu") -> OnnxRuntimePrepared:
    ok, why = availability(device)
    if not ok:
        raise BackendUnavailable(why)
    if args.dtype != np.float32:
        raise NotImplementedError(f"{UNSUPPORTED['float64']}; got {args.dtype}")
    return OnnxRuntimePrepared(args, device)


gru_forward, gru_backward, lstm_forward, lstm_backward = convenience_api(prepare)
