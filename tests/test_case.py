"""Case and Task: identity, the quantities computed from sizes, seeded inputs."""
import numpy as np
import pytest

from grubench.case import Case, Task


def test_defaults_and_key():
    case = Case("gru", 100, 1, 64, 64)
    assert case.variant == "reset_after" and case.mode == "inference" and case.reset_after
    assert Case("lstm", 1, 2, 3, 4).variant == "-"
    assert Task(case, "numba-cpu").key == "numba-cpu/gru/reset_after/inference/100,1,64,64/float32/t1"
    lstm = Case("lstm", 5, 2, 3, 4, mode="training", variable_lengths=True)
    assert Task(lstm, "numpy", 2).key == "numpy/lstm/lengths/training/5,2,3,4/float32/t2"


def test_row_round_trip():
    case = Case("gru", 7, 3, 5, 4, variant="reset_before", mode="training", dtype="float64")
    row = Task(case, "numpy", 2).as_row()
    assert row == {"backend": "numpy", "cell": "gru", "variant": "reset_before",
                   "mode": "training", "T": 7, "B": 3, "I": 5, "H": 4, "dtype": "float64",
                   "threads": 2}
    assert Case.from_row(row) == case


def test_bytes_by_hand():
    # GRU T=2 B=3 I=5 H=4 float32: parameters 132; inference holds parameters, x (30),
    # h0 (12), y (24), h_n (12) = 210 elements.
    case = Case("gru", 2, 3, 5, 4)
    assert case.expected_bytes() == 210 * 4
    assert case.input_bytes() == (132 + 30 + 12) * 4
    # Training adds dy (24) to the inputs; holds also the saved gates (2*3*12=72) and states
    # (24) and the gradients: parameters, dx, dy, dh0 (132 + 30 + 24 + 12).
    training = Case("gru", 2, 3, 5, 4, mode="training")
    assert training.input_bytes() == (132 + 30 + 12 + 24) * 4
    assert training.expected_bytes() == (210 + 72 + 24 + 132 + 30 + 24 + 12) * 4


def test_make_args_is_seeded_and_follows_the_mode():
    a = Case("lstm", 4, 2, 3, 5, mode="training", variable_lengths=True).make_args(seed=3)
    b = Case("lstm", 4, 2, 3, 5, mode="training", variable_lengths=True).make_args(seed=3)
    assert all(np.array_equal(getattr(a, k), getattr(b, k))
               for k in ("x", "h0", "c0", "w_ih", "dy", "dc_n", "lengths"))
    assert a.dc_n is not None and a.lengths is not None
    assert Case("gru", 4, 2, 3, 5).make_args().dy is None
    assert Case("gru", 4, 2, 3, 5, variant="reset_before").make_args().reset_after is False


@pytest.mark.parametrize("bad,match", [
    (dict(cell="rnn"), "unknown cell 'rnn'"),
    (dict(variant="reset_before", cell="lstm"), "unknown lstm variant"),
    (dict(T=0), "T must be a positive integer"),
    (dict(mode="train"), "mode must be one of"),
    (dict(dtype="float16"), "dtype must be one of"),
])
def test_bad_case(bad, match):
    fields = {"cell": "gru", "T": 2, "B": 2, "I": 2, "H": 2, **bad}
    with pytest.raises(ValueError, match=match):
        Case(**fields)


def test_flops_by_hand():
    gru = Case("gru", T=10, B=2, I=3, H=4)
    # 2 * G * H * (I + H) * B * T = 2 * 3 * 4 * 7 * 2 * 10
    assert gru.flops() == 3360
    assert gru.flops(training=True) == 3 * 3360
    assert Case("gru", 10, 2, 3, 4, mode="training").flops() == 3 * 3360
    assert gru.recurrent_flops() == 2 * 3 * 16 * 2 * 10
    assert Case("lstm", 10, 2, 3, 4).flops() == 2 * 4 * 4 * 7 * 2 * 10


def test_parameter_count_matches_torch():
    torch = pytest.importorskip("torch")
    for cell, module in (("gru", torch.nn.GRU), ("lstm", torch.nn.LSTM)):
        expected = sum(p.numel() for p in module(7, 5).parameters())
        assert Case(cell, 1, 1, 7, 5).parameter_count == expected


def test_inputs_have_the_case_dtype_and_differ_by_seed():
    case = Case("lstm", 4, 3, 2, 5, dtype="float64", mode="training", variable_lengths=True)
    args = case.make_args(seed=5)
    assert all(array.dtype == np.float64 for array in args.inputs().values())
    assert args.lengths.min() >= 0 and args.lengths.max() <= 4
    assert not np.array_equal(case.make_args(seed=6).x, args.x)
    assert case.make_args(with_grads=False).dy is None


@pytest.mark.parametrize("name, value", [("H", 2.5), ("B", True), ("I", "3")])
def test_sizes_must_be_integers(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        Case(**{"cell": "gru", "T": 2, "B": 2, "I": 2, "H": 2, name: value})
