"""The onnxruntime backend against the float64 reference: ONNX Runtime's own GRU (both
linear_before_reset values) and LSTM, lengths 0 and T included, and what it refuses."""
import dataclasses
import sys

import numpy as np
import pytest

from grubench import backends, threads
from grubench.kernels import onnxruntime
from grubench.kernels.contract import BackendUnavailable
from grubench.case import Case
from oracle import assert_matches_reference

ort = pytest.importorskip("onnxruntime", reason="the peers extra is not installed")

VARIANTS = [("gru", "reset_after"), ("gru", "reset_before"), ("lstm", None)]
VARIANT_IDS = ["gru-reset-after", "gru-reset-before", "lstm"]


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("cell, variant", VARIANTS, ids=VARIANT_IDS)
def test_forward_matches_reference(cell, variant, with_lengths):
    args = Case(cell, 7, 4, 3, 5, variant=variant,
                variable_lengths=with_lengths).make_args(seed=3, with_grads=True)
    if with_lengths:
        args.lengths[:] = [0, 7, 3, 0]          # empty and full sequences included
    prepared = onnxruntime.prepare(args)
    outputs = prepared.to_numpy(prepared.forward())
    assert_matches_reference(outputs, None, args)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_empty_sequences_keep_their_initial_state(cell):
    """ONNX Runtime's operator gives zeros there; the backend puts h0 (c0) back, exactly."""
    args = Case(cell, 3, 2, 4, 5).make_args(seed=2)
    args = dataclasses.replace(args, lengths=np.zeros(2, dtype=np.int64))
    assert np.all(args.h0 != 0)
    prepared = onnxruntime.prepare(args)
    y, h_n, *c_n = prepared.to_numpy(prepared.forward())
    assert not y.any()
    assert np.array_equal(h_n, args.h0)
    if cell == "lstm":
        assert np.array_equal(c_n[0], args.c0)


def test_training_is_refused_with_the_reason():
    args = Case("gru", 3, 2, 4, 5, mode="training").make_args()
    with pytest.raises(NotImplementedError, match="inference only"):
        onnxruntime.gru_backward(args.x, args.h0, args.w_ih, args.w_hh, args.b_ih, args.b_hh,
                                 args.dy, args.dh_n)
    with pytest.raises(NotImplementedError, match="inference only"):
        onnxruntime.prepare(args).training_step()


def test_float64_is_refused_with_the_reason():
    args = Case("lstm", 3, 2, 4, 5, dtype="float64").make_args()
    with pytest.raises(NotImplementedError, match="float32 only.*got float64"):
        onnxruntime.lstm_forward(args.x, args.h0, args.c0, args.w_ih, args.w_hh, args.b_ih,
                                 args.b_hh)


def test_registry_declares_what_it_cannot_run():
    entry = backends.get("onnxruntime").entry
    assert entry.why_unsupported("training", "float32") == onnxruntime.UNSUPPORTED["training"]
    assert entry.why_unsupported("inference", "float64") == onnxruntime.UNSUPPORTED["float64"]
    assert entry.why_unsupported("inference", "float32") is None
    assert entry.memory == "rss"


@pytest.mark.parametrize("pinned", [None, 1, 2])
def test_session_takes_the_pinned_threads_and_does_not_spin(monkeypatch, pinned):
    monkeypatch.setattr(threads, "_pinned", pinned)
    session = onnxruntime.prepare(Case("gru", 2, 1, 2, 2).make_args()).session
    options = session.get_session_options()
    assert options.intra_op_num_threads == (pinned or 0)
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert not options.enable_cpu_mem_arena


def test_missing_package_makes_it_unavailable_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)     # import raises ImportError
    ok, why = onnxruntime.availability()
    assert not ok and "peers extra" in why
    with pytest.raises(BackendUnavailable, match="peers extra"):
        onnxruntime.prepare(Case("gru", 2, 1, 2, 2).make_args())


def test_cuda_provider_absent_says_why():
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu with CUDA is present")
    ok, why = onnxruntime.availability("cuda")
    assert not ok and "CUDAExecutionProvider" in why


def test_version_names_onnxruntime():
    assert onnxruntime.version().startswith(f"onnxruntime {ort.__version__}")
