"""Problems: seeded inputs and the analytic figures, against hand-computed values."""
import numpy as np
import pytest

from grubench.problems import Problem


def test_flops_by_hand():
    gru = Problem("gru", T=10, B=2, I=3, H=4)
    # 2 * G * H * (I + H) * B * T = 2 * 3 * 4 * 7 * 2 * 10
    assert gru.flops(training=False) == 3360
    assert gru.flops(training=True) == 3 * 3360
    assert gru.recurrent_flops() == 2 * 3 * 16 * 2 * 10
    assert Problem("lstm", 10, 2, 3, 4).flops(False) == 2 * 4 * 4 * 7 * 2 * 10


def test_parameter_count_matches_torch():
    torch = pytest.importorskip("torch")
    for cell, module in (("gru", torch.nn.GRU), ("lstm", torch.nn.LSTM)):
        expected = sum(p.numel() for p in module(7, 5).parameters())
        assert Problem(cell, 1, 1, 7, 5).parameter_count == expected


def test_expected_bytes_by_hand():
    p = Problem("gru", T=2, B=1, I=1, H=1, dtype="float64")
    params = 3 * 1 * (1 + 1 + 2)                  # 12
    inference = params + 2 + 2 + 2                # + x, y, h0 and h_n
    assert p.expected_bytes(False) == inference * 8
    training = inference + (2 * 3 + 2) + (params + 2 + 2 + 1)
    assert p.expected_bytes(True) == training * 8


def test_make_args_is_seeded_and_typed():
    p = Problem("lstm", 4, 3, 2, 5, dtype="float32", variable_lengths=True)
    a, b = p.make_args(seed=5), p.make_args(seed=5)
    for name in a.inputs():
        np.testing.assert_array_equal(a.inputs()[name], b.inputs()[name])
        assert a.inputs()[name].dtype == np.float32
    np.testing.assert_array_equal(a.lengths, b.lengths)
    assert a.lengths.min() >= 0 and a.lengths.max() <= 4
    assert not np.array_equal(p.make_args(seed=6).x, a.x)
    assert p.make_args(with_grads=False).dy is None


@pytest.mark.parametrize("fields, message", [
    (dict(cell="rnn"), "unknown cell 'rnn'"),
    (dict(T=-1), "T must be a positive integer, got -1"),
    (dict(H=2.5), "H must be a positive integer, got 2.5"),
    (dict(dtype="int32"), "dtype must be float32 or float64"),
])
def test_nonsense_problems_are_refused_when_made(fields, message):
    with pytest.raises(ValueError, match=message):
        Problem(**{**dict(cell="gru", T=2, B=1, I=3, H=4), **fields})
