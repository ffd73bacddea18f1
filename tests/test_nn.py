"""grubench.nn.GRU/LSTM against torch.nn.GRU/LSTM with the same weights: outputs, every
parameter's gradient and the input's and initial states' gradients, float64 (FLOAT64) and
float32 (against torch in float64, with the float32 tolerances), tensors and
PackedSequences; and the errors for what grubench cannot run."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence  # noqa: E402

from grubench import backends, nn as gnn, tolerances  # noqa: E402
from grubench.backends import Entry  # noqa: E402
from grubench.kernels import numba_cpu  # noqa: E402
from grubench.kernels.network import Network  # noqa: E402

pytestmark = pytest.mark.skipif(not numba_cpu.availability()[0],
                                reason=str(numba_cpu.availability()[1]))

T, B, I, H = 5, 3, 4, 6     # noqa: E741
LENGTHS = torch.tensor([2, 5, 4])

OURS = {"gru": gnn.GRU, "lstm": gnn.LSTM}
THEIRS = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}


def torch_module(cell, **options):
    torch.manual_seed(0)
    return THEIRS[cell](I, H, dtype=torch.float64, **options)


def run(module, cell, x, states, packed, batch_first):
    """Outputs and the gradients of a fixed weighted sum of them with respect to x, the
    initial states and every parameter (by name)."""
    source = (pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False)
              if packed else x)
    y, finals = module(source, states if cell == "lstm" else states[0])
    finals = finals if cell == "lstm" else (finals,)
    y_values = y.data if packed else y
    generator = torch.Generator().manual_seed(3)
    loss = sum((out * torch.randn(out.shape, generator=generator, dtype=torch.float64)).sum()
               for out in (y_values, *finals))
    named = {"x": x, **{f"{s}0": state for s, state in zip("hc", states)},
             **dict(module.named_parameters())}
    grads = torch.autograd.grad(loss, list(named.values()))
    return y, finals, dict(zip(named, grads))


@pytest.mark.parametrize("packed", [False, True], ids=["tensor", "packed"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["one-way", "bidirectional"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_module_matches_torch(cell, dtype, layers, bidirectional, batch_first, packed):
    theirs = torch_module(cell, num_layers=layers, bidirectional=bidirectional,
                          batch_first=batch_first)
    ours = OURS[cell].from_torch(copy.deepcopy(theirs).to(dtype))
    generator = torch.Generator().manual_seed(1)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), generator=generator,
                    dtype=torch.float64)
    states = [torch.randn(theirs.num_layers * (1 + bidirectional), B, H,
                          generator=generator, dtype=torch.float64)
              for _ in range(2 if cell == "lstm" else 1)]
    want_y, want_finals, want_grads = run(
        theirs, cell, x.clone().requires_grad_(), [s.clone().requires_grad_() for s in states],
        packed, batch_first)
    got_y, got_finals, got_grads = run(
        ours, cell, x.to(dtype).requires_grad_(), [s.to(dtype).requires_grad_() for s in states],
        packed, batch_first)

    forward = tolerances.forward_tolerance(np.dtype(str(dtype)[6:]))
    gradient = tolerances.gradient_tolerance(np.dtype(str(dtype)[6:]))
    assert isinstance(got_y, PackedSequence) == packed
    if packed:
        for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
            assert torch.equal(getattr(got_y, field), getattr(want_y, field)), field
        got_y, want_y = got_y.data, want_y.data
    for name, got, want in zip(("y", "h_n", "c_n"), (got_y, *got_finals),
                               (want_y, *want_finals)):
        assert got.dtype == dtype, name
        forward.assert_close(got.detach().numpy(), want.detach().numpy(), name)
    assert list(got_grads) == list(want_grads)
    for name, want in want_grads.items():
        assert got_grads[name].dtype == dtype, name
        gradient.assert_close(got_grads[name].numpy(), want.numpy(), f"gradient of {name}")


def test_state_dict_has_torchs_names_and_shapes_and_loads_both_ways():
    theirs = torch_module("gru", num_layers=2, bidirectional=True, bias=False)
    ours = gnn.GRU(I, H, num_layers=2, bidirectional=True, bias=False, dtype=torch.float64)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == \
        [(n, p.shape) for n, p in theirs.named_parameters()]
    ours.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    for name, parameter in theirs.named_parameters():
        assert torch.equal(getattr(ours, name), parameter)


def test_no_grad_runs_the_inference_path_and_saves_nothing(monkeypatch):
    theirs = torch_module("lstm", num_layers=2, bidirectional=True)
    ours = gnn.LSTM.from_torch(theirs)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with_grad, (h_n, _) = ours(x)
    assert with_grad.grad_fn is not None

    def forward_train(*args, **kwargs):
        raise AssertionError("forward_train ran under torch.no_grad()")

    monkeypatch.setattr(Network, "forward_train", forward_train)
    with torch.no_grad():
        y, (h_n_inference, c_n) = ours(x)
    assert y.grad_fn is None and h_n_inference.grad_fn is None
    assert torch.equal(y, with_grad.detach()) and torch.equal(h_n_inference, h_n.detach())


def test_parameters_and_contiguous_inputs_reach_the_kernels_without_copies(monkeypatch):
    ours = gnn.GRU(I, H, num_layers=2, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    seen = {}
    original = Network.forward

    def spy(self, x_array, params, *args, **kwargs):
        seen.update(x=x_array, **params)
        return original(self, x_array, params, *args, **kwargs)

    monkeypatch.setattr(Network, "forward", spy)
    with torch.no_grad():
        ours(x)
    assert np.shares_memory(seen["x"], x.numpy())
    for name, parameter in ours.named_parameters():
        assert np.shares_memory(seen[name], parameter.detach().numpy()), name


def test_dropout_follows_torch_mode_and_seed():
    ours = gnn.GRU(I, H, num_layers=2, dropout=0.5, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.manual_seed(4)
    first = ours(x)[0]
    torch.manual_seed(4)
    assert torch.equal(ours(x)[0], first)                  # torch's seed, torch's mask
    assert not torch.equal(ours(x)[0], first)              # a new mask each call
    ours.eval()
    evaluated = ours(x)[0]
    ours.dropout = 0.0
    assert torch.equal(evaluated, ours(x)[0])              # eval: no dropout


def test_unbatched_input_is_a_batch_of_one():
    ours = gnn.GRU(I, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(T, I, dtype=torch.float64)
    h0 = torch.randn(4, H, dtype=torch.float64)
    y, h_n = ours(x, h0)
    y_batched, h_n_batched = ours(x.unsqueeze(1), h0.unsqueeze(1))
    assert y.shape == (T, 2 * H) and h_n.shape == (4, H)
    assert torch.equal(y, y_batched[:, 0]) and torch.equal(h_n, h_n_batched[:, 0])


def test_reset_before_gru_has_gradients_from_the_kernels():
    ours = gnn.GRU(I, H, num_layers=2, bidirectional=True, reset_after=False,
                   dtype=torch.float64)
    reference = gnn.GRU(I, H, num_layers=2, bidirectional=True, reset_after=False,
                        dtype=torch.float64, backend="numpy")
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    grads = [torch.autograd.grad(module(x)[0].pow(2).sum(), [x, module.weight_hh_l1])
             for module in (ours, reference)]
    for got, want in zip(*grads):
        tolerances.FLOAT64.assert_close(got.numpy(), want.numpy())
    assert "reset_after=False" in repr(ours)


# ------------------------------------------------------------------ what we cannot run

@pytest.mark.parametrize("make, error, message", [
    (lambda: gnn.LSTM(I, H, proj_size=3), ValueError, r"proj_size=3 is not supported"),
    (lambda: gnn.GRU(I, H, device="cuda"), ValueError, r"device='cuda': grubench.nn runs CPU"),
    (lambda: gnn.GRU(I, H, dtype=torch.float16), ValueError, r"dtype=torch.float16"),
    (lambda: gnn.GRU(I, H, backend="nope"), ValueError, r"backend='nope': unknown backend"),
    (lambda: gnn.GRU(I, H, backend="numba-cuda"), ValueError,
     r"backend='numba-cuda' runs on cuda"),
    (lambda: gnn.GRU(I, H, dropout=2.0), ValueError, r"dropout must be a number in \[0, 1\]"),
    (lambda: gnn.LSTM.from_torch(torch.nn.LSTM(I, H, proj_size=2)), ValueError,
     r"proj_size=2 is not supported"),
    (lambda: gnn.GRU.from_torch(torch.nn.LSTM(I, H)), TypeError,
     r"module must be a torch.nn.GRU, got LSTM"),
    (lambda: gnn.GRU(0, H), ValueError, r"input_size must be a positive integer, got 0"),
])
def test_unsupported_construction_names_the_argument(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("call, error, message", [
    (lambda m: m(torch.randn(T, B, I), torch.zeros(2, B, H)), ValueError,
     r"h0 has shape \(2, 3, 6\); expected \(4, 3, 6\)"),
    (lambda m: m(torch.randn(T, B, I), torch.zeros(1, B, H)), ValueError,
     r"h0 has shape \(1, 3, 6\); expected \(4, 3, 6\)"),
    (lambda m: m(torch.randn(T, B, I + 1)), ValueError,
     r"x has shape \(5, 3, 5\); expected \(T, B, I\) with I = input_size = 4"),
    (lambda m: m(torch.randn(T, B, I, dtype=torch.float16)), TypeError,
     r"input has dtype torch.float16"),
    (lambda m: m(torch.randn(T, B, I, dtype=torch.float64)), TypeError,
     r"weight_ih_l0 has dtype float32; x has float64"),
    (lambda m: m(np.zeros((T, B, I), np.float32)), TypeError,
     r"input must be a torch.Tensor, got ndarray"),
])
def test_bad_forward_arguments_name_the_argument_and_both_shapes(call, error, message):
    ours = gnn.GRU(I, H, num_layers=2, bidirectional=True)
    with pytest.raises(error, match=message):
        call(ours)


def test_lstm_state_must_be_a_pair():
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h0, c0\)"):
        gnn.LSTM(I, H)(torch.randn(T, B, I), torch.zeros(1, B, H))


def test_a_backend_that_cannot_train_is_an_error_when_gradients_are_needed(monkeypatch):
    monkeypatch.setitem(backends.REGISTRY, "inference-only", Entry(
        "reference", "the reference, declared inference-only",
        unsupported={"training": "no backward kernels"}))
    ours = gnn.GRU(I, H, backend="inference-only")
    x = torch.randn(T, B, I)
    with torch.no_grad():
        ours(x)                                         # inference runs
    with pytest.raises(ValueError, match="'inference-only' cannot run training in float32: "
                                         "no backward kernels"):
        ours(x)


@pytest.mark.parametrize("change", ["input", "output"])
def test_an_in_place_change_before_backward_is_refused(change):
    ours = gnn.GRU(I, H, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    source = x * 1                       # a non-leaf: in-place changes are allowed on it
    y, _ = ours(source)
    loss = y.sum()
    if change == "input":
        source.mul_(2)
    else:
        y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_a_second_derivative_is_refused_not_wrong():
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y, _ = gnn.GRU(I, H, dtype=torch.float64)(x)
    with pytest.raises(RuntimeError, match="grubench.nn has no second derivatives"):
        torch.autograd.grad(y.sum(), x, create_graph=True)
