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
                   "layers": 1, "directions": 1, "lengths": "full", "threads": 2}
    assert Case.from_row(row) == case
    network = Case("lstm", 7, 3, 5, 4, layers=3, directions=2, lengths="short-tail")
    assert Case.from_row(Task(network, "numpy").as_row()) == network


def test_rows_written_before_the_network_fields_still_load():
    old = {"cell": "gru", "variant": "reset_after", "mode": "inference", "T": 5, "B": 2,
           "I": 3, "H": 4, "dtype": "float32"}
    assert Case.from_row(old) == Case("gru", 5, 2, 3, 4)
    # a worker request or baseline entry of the first variable-length cases
    lengths = Case.from_row({**old, "variable_lengths": True})
    assert lengths.lengths == "any" and lengths.variable_lengths
    assert Case.from_row({**old, "layers": None, "lengths": float("nan")}) == Case(
        "gru", 5, 2, 3, 4)


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


def _args_as_first_written(case, seed):
    """make_args as the harness had it before networks and length distributions (the
    arrays of committed baselines): lengths in [0, T] drawn first, then the upstream
    gradients, x and the states."""
    from grubench.kernels.contract import validate
    from grubench.weights import init_weights

    rng = np.random.default_rng(seed)
    dtype = np.dtype(case.dtype)
    T, B, I, H = case.size
    weights = init_weights(case.cell, I, H, seed=seed + 1, dtype=dtype)
    lengths = rng.integers(0, T + 1, size=B) if case.variable_lengths else None
    grads = {}
    if case.training:
        grads["dy"] = rng.standard_normal((T, B, H)).astype(dtype)
        grads.update({f"d{n}": rng.standard_normal((B, H)).astype(dtype)
                      for n in case.spec.outputs[1:]})
    x = rng.standard_normal((T, B, I)).astype(dtype)
    states = {n: rng.standard_normal((B, H)).astype(dtype) for n in case.spec.initial_states}
    return validate(case.cell, x, states["h0"], states.get("c0"), **weights,
                    reset_after=case.reset_after, lengths=lengths, **grads)


@pytest.mark.parametrize("case, key", [
    (Case("gru", 6, 3, 5, 4), "gru/reset_after/inference/6,3,5,4/float32"),
    (Case("lstm", 6, 3, 5, 4, mode="training", variable_lengths=True),
     "lstm/lengths/training/6,3,5,4/float32"),
    (Case("gru", 6, 3, 5, 4, variant="reset_before", lengths="any", dtype="float64"),
     "gru/reset_before/lengths/inference/6,3,5,4/float64"),
])
def test_one_layer_cases_keep_their_key_quantities_and_arrays(case, key):
    """One layer, one direction: the key, FLOPs and bytes the committed baselines and
    results hold (the cell's one-call formulas), and the very arrays they were measured
    on."""
    spec, training, itemsize = case.spec, case.training, case.itemsize
    assert case.key == key and not case.is_network
    assert case.flops() == spec.flops(6, 3, 5, 4, training)
    assert case.recurrent_flops() == spec.recurrent_flops(6, 3, 4)
    assert case.parameter_count == spec.parameter_count(5, 4)
    assert case.input_bytes() == spec.input_elements(6, 3, 5, 4, training) * itemsize
    assert case.expected_bytes() == spec.expected_elements(6, 3, 5, 4, training) * itemsize
    for seed in (0, 3):
        args, first = case.make_args(seed), _args_as_first_written(case, seed)
        for name in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "lengths", "dy",
                     "dh_n", "dc_n"):
            ours, theirs = getattr(args, name), getattr(first, name)
            assert (ours is None) == (theirs is None), name
            assert ours is None or np.array_equal(ours, theirs), name


def test_length_distributions():
    T, B = 9, 40
    uniform = Case("gru", T, B, 2, 3, lengths="uniform").make_args(seed=4).lengths
    assert uniform.min() >= 5 and uniform.max() == T and len(set(uniform)) > 1
    ordered = Case("gru", T, B, 2, 3, lengths="sorted").make_args(seed=4).lengths
    assert np.array_equal(ordered, np.sort(uniform)[::-1])
    tail = Case("gru", T, B, 2, 3, lengths="short-tail").make_args(seed=4).lengths
    short = tail[tail < T]
    assert len(short) == B // 4 and short.min() >= 1 and short.max() <= 3
    drawn = Case("gru", T, B, 2, 3, lengths="any").make_args(seed=4).lengths
    assert drawn.min() == 0 and drawn.max() == T
    assert Case("gru", T, B, 2, 3).make_args().lengths is None
    assert Case("gru", T, B, 2, 3, lengths="uniform").variable_lengths


def test_network_key_quantities_by_hand():
    case = Case("gru", 10, 2, 3, 4, layers=2, directions=2, lengths="uniform")
    assert case.key == "gru/reset_after/layers2/bidirectional/lengths-uniform/inference/10,2,3,4/float32"
    assert case.network_parts() == ["2 layers", "bidirectional", "lengths uniform"]
    # layer 0 reads I = 3, layer 1 reads 2H = 8; two directions each:
    # 2 * (2*3*4*(3+4)*2*10) + 2 * (2*3*4*(8+4)*2*10)
    assert case.flops() == 2 * 3360 + 2 * 5760
    assert case.recurrent_flops() == 4 * 2 * 3 * 16 * 2 * 10
    # parameters: layer 0 2 * 3*4*(3+4+2) = 216, layer 1 2 * 3*4*(8+4+2) = 336
    assert case.parameter_count == 552
    # inference: inputs are the parameters, x (60) and h0 (4 states * 8) = 644 elements;
    # expected: each of the four calls' own elements
    assert case.input_bytes() == (552 + 60 + 32) * 4
    assert case.expected_bytes() == 4 * (2 * case.spec.expected_elements(10, 2, 3, 4, False)
                                         + 2 * case.spec.expected_elements(10, 2, 8, 4, False))
    training = Case("gru", 10, 2, 3, 4, layers=2, directions=2, mode="training")
    assert training.input_bytes() == (552 + 60 + 32 + 10 * 2 * 8) * 4
    assert Case("gru", 10, 2, 3, 4, layers=3).key == "gru/reset_after/layers3/inference/10,2,3,4/float32"


def test_network_parameter_count_matches_torch():
    torch = pytest.importorskip("torch")
    for cell, module in (("gru", torch.nn.GRU), ("lstm", torch.nn.LSTM)):
        expected = sum(p.numel() for p in module(7, 5, num_layers=3, bidirectional=True)
                       .parameters())
        assert Case(cell, 1, 1, 7, 5, layers=3, directions=2).parameter_count == expected


def test_network_inputs():
    case = Case("lstm", 6, 3, 5, 4, layers=2, directions=2, mode="training", lengths="uniform")
    inputs = case.make_args(seed=2)
    assert inputs.x.shape == (6, 3, 5) and inputs.h0.shape == inputs.c0.shape == (4, 3, 4)
    assert inputs.dy.shape == (6, 3, 8) and inputs.dc_n.shape == (4, 3, 4)
    assert list(inputs.params) == list(case.network.parameter_shapes())
    assert {k: v.shape for k, v in inputs.params.items()} == case.network.parameter_shapes()
    # layer 0's forward weights and the lengths are the one-layer case's
    single = Case("lstm", 6, 3, 5, 4, mode="training", lengths="uniform").make_args(seed=2)
    assert np.array_equal(inputs.params["weight_ih_l0"], single.w_ih)
    assert np.array_equal(inputs.lengths, single.lengths)
    assert not np.array_equal(inputs.params["weight_hh_l0_reverse"], single.w_hh)
    assert case.make_args(seed=2, with_grads=False).dy is None
    wide = inputs.astype(np.float64)
    assert wide.x.dtype == wide.params["bias_hh_l1_reverse"].dtype == np.float64
    assert np.array_equal(wide.lengths, inputs.lengths)


@pytest.mark.parametrize("bad,match", [
    (dict(layers=0), "layers must be a positive integer"),
    (dict(layers=True), "layers must be a positive integer"),
    (dict(directions=3), "directions must be 1 or 2"),
    (dict(directions=True), "directions must be 1 or 2"),
    (dict(lengths="random"), "lengths must be one of full, uniform, sorted, short-tail, any"),
])
def test_bad_network_fields(bad, match):
    with pytest.raises(ValueError, match=match):
        Case("gru", 2, 2, 2, 2, **bad)
