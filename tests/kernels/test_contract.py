"""The contract's validation: every bad input is refused with the promised error, and good
inputs in any memory order are accepted."""
import numpy as np
import pytest

from grubench.kernels import contract, reference
from grubench.kernels.contract import validate
from grubench.case import Case


def gru_inputs(T=3, B=2, I=4, H=5, dtype=np.float64):
    args = Case("gru", T, B, I, H, mode="training",
                dtype=np.dtype(dtype).name).make_args(seed=1)
    return dict(x=args.x, h0=args.h0, w_ih=args.w_ih, w_hh=args.w_hh, b_ih=args.b_ih,
                b_hh=args.b_hh), dict(dy=args.dy, dh_n=args.dh_n)


def lstm_inputs(T=3, B=2, I=4, H=5):
    args = Case("lstm", T, B, I, H, dtype="float64").make_args(seed=1)
    return dict(x=args.x, h0=args.h0, c0=args.c0, w_ih=args.w_ih, w_hh=args.w_hh,
                b_ih=args.b_ih, b_hh=args.b_hh)


@pytest.mark.parametrize("name, bad, message", [
    ("x", np.zeros((3, 2)), r"x has shape \(3, 2\); expected 3 dimensions"),
    ("h0", np.zeros((2, 6)), r"h0 has shape \(2, 6\); expected \(2, 5\) \(B, H\)"),
    ("w_ih", np.zeros((15, 3)), r"w_ih has shape \(15, 3\); expected \(15, 4\)"),
    ("w_hh", np.zeros((12, 5)), r"w_hh has shape \(12, 5\); expected \(3\*H, H\)"),
    ("b_ih", np.zeros(14), r"b_ih has shape \(14,\); expected \(15,\)"),
    ("b_hh", np.zeros((15, 1)), r"b_hh has shape \(15, 1\)"),
])
def test_wrong_shapes_name_the_argument_and_both_shapes(name, bad, message):
    inputs, _ = gru_inputs()
    inputs[name] = bad
    with pytest.raises(ValueError, match=message):
        reference.gru_forward(**inputs)


def test_wrong_upstream_gradient_shape_is_refused():
    inputs, grads = gru_inputs()
    grads["dy"] = grads["dy"][:2]
    with pytest.raises(ValueError, match=r"dy has shape \(2, 2, 5\); expected \(3, 2, 5\)"):
        reference.gru_backward(**inputs, **grads)


def test_lstm_needs_c0():
    inputs = lstm_inputs()
    inputs["c0"] = None
    with pytest.raises(TypeError, match="c0 is required"):
        reference.lstm_forward(**inputs)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 2, 4), dtype=np.int64), "x has dtype int64; expected float32 or float64"),
    (np.zeros((3, 2, 4), dtype=np.float16), "x has dtype float16"),
    ([[[0.0] * 4] * 2] * 3, "x must be a numpy.ndarray, got list"),
])
def test_wrong_types_and_dtypes(bad, message):
    inputs, _ = gru_inputs()
    inputs["x"] = bad
    with pytest.raises(TypeError, match=message):
        reference.gru_forward(**inputs)


def test_mixed_dtypes_are_refused_with_each_dtype_listed():
    inputs, _ = gru_inputs()
    inputs["h0"] = inputs["h0"].astype(np.float32)
    with pytest.raises(TypeError, match="one dtype.*h0=float32"):
        reference.gru_forward(**inputs)


@pytest.mark.parametrize("lengths, error, message", [
    (np.array([1, 4]), ValueError, r"lengths must lie in \[0, T=3\]"),
    (np.array([-1, 2]), ValueError, r"lengths must lie in \[0, T=3\]"),
    (np.array([1, 2, 3]), ValueError, r"lengths has shape \(3,\); expected \(2,\)"),
    (np.array([1.0, 2.0]), TypeError, "lengths must hold integers"),
    (np.array([True, False]), TypeError, "lengths must hold integers"),
])
def test_bad_lengths(lengths, error, message):
    inputs, _ = gru_inputs()
    with pytest.raises(error, match=message):
        reference.gru_forward(**inputs, lengths=lengths)


def test_lengths_as_a_list_of_ints_is_accepted():
    inputs, _ = gru_inputs()
    y, _ = reference.gru_forward(**inputs, lengths=[3, 1])
    assert np.all(y[1:, 1] == 0)


@pytest.mark.parametrize("shape", [(0, 2, 4), (3, 0, 4), (3, 2, 0)])
def test_empty_sizes_are_refused(shape):
    inputs, _ = gru_inputs()
    inputs["x"] = np.zeros(shape)
    with pytest.raises(ValueError, match="T, B and I must all be >= 1"):
        reference.gru_forward(**inputs)


def test_reset_after_must_be_a_bool():
    inputs, _ = gru_inputs()
    with pytest.raises(TypeError, match="reset_after must be True or False"):
        reference.gru_forward(**inputs, reset_after="no")


def test_a_problem_too_large_for_memory_fails_before_allocating(monkeypatch):
    inputs, _ = gru_inputs()
    monkeypatch.setattr(contract, "available_memory_bytes", lambda: 1000)
    with pytest.raises(MemoryError, match=r"T=3, B=2, I=4, H=5 .*KiB; 1000 B of memory is av"):
        validate("gru", inputs["x"], inputs["h0"], None, inputs["w_ih"], inputs["w_hh"],
                 inputs["b_ih"], inputs["b_hh"])
    monkeypatch.setattr(contract, "available_memory_bytes", lambda: 1 << 30)
    validate("gru", inputs["x"], inputs["h0"], None, inputs["w_ih"], inputs["w_hh"],
             inputs["b_ih"], inputs["b_hh"])


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                     (3 * 2**20, "3.0 MiB"), (5 * 2**40, "5120.0 GiB")])
def test_format_bytes(n, text):
    assert contract.format_bytes(n) == text


def test_working_set_grows_with_every_size():
    base = Case("gru", 4, 3, 5, 6).make_args()
    size = contract.working_set_bytes(base)
    for bigger in [(8, 3, 5, 6), (4, 6, 5, 6), (4, 3, 10, 6), (4, 3, 5, 12)]:
        assert contract.working_set_bytes(Case("gru", *bigger).make_args()) > size


def test_fortran_order_and_strided_inputs_give_the_same_results():
    inputs, _ = gru_inputs()
    expected = reference.gru_forward(**inputs)
    odd = dict(inputs)
    odd["x"] = np.asfortranarray(inputs["x"])
    odd["w_hh"] = np.asfortranarray(inputs["w_hh"])
    doubled = np.repeat(inputs["h0"], 2, axis=1)
    odd["h0"] = doubled[:, ::2]
    assert not odd["h0"].flags.c_contiguous
    args = validate("gru", *[odd[k] for k in ("x", "h0")], None,
                    *[odd[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")])
    assert all(a.flags.c_contiguous for a in args.inputs().values())
    for got, want in zip(reference.gru_forward(**odd), expected):
        np.testing.assert_array_equal(got, want)


def test_unknown_cell():
    inputs, _ = gru_inputs()
    with pytest.raises(ValueError, match="unknown cell 'rnn'"):
        validate("rnn", inputs["x"], inputs["h0"], None, inputs["w_ih"], inputs["w_hh"],
                 inputs["b_ih"], inputs["b_hh"])


def test_args_report_sizes_and_inputs_in_contract_order():
    args = Case("lstm", 3, 2, 4, 5, mode="training", dtype="float64").make_args()
    assert (args.T, args.B, args.I, args.H, args.gates) == (3, 2, 4, 5, 4)
    assert list(args.inputs()) == ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"]
    assert args.dtype == np.float64 and args.has_grads
