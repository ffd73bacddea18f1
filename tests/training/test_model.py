"""The kernel model: head and loss against finite differences, the whole model's gradient
against torch autograd, Adam against torch.optim.Adam, and learning on a tiny task."""
import numpy as np
import pytest
import torch

from grubench import backends
from grubench.tolerances import (FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP,
                                 FLOAT32_FORWARD, FLOAT32_GRADIENT)
from grubench.training.model import (Adam, KernelModel, ModelSpec, head_loss,
                                     init_parameters, predicted_classes)
from grubench.training.torch_model import TorchModel


def numeric_gradient(f, array: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of ``array``."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        kept = array[index]
        array[index] = kept + FINITE_DIFFERENCE_STEP
        up = f()
        array[index] = kept - FINITE_DIFFERENCE_STEP
        down = f()
        array[index] = kept
        grad[index] = (up - down) / (2 * FINITE_DIFFERENCE_STEP)
    return grad


@pytest.mark.parametrize("classes", [2, 5])   # sigmoid unit, softmax
def test_head_loss_gradients_match_finite_differences(classes):
    rng = np.random.default_rng(classes)
    outputs = 1 if classes == 2 else classes
    h = rng.standard_normal((6, 4))
    w_out, b_out = rng.standard_normal((outputs, 4)), rng.standard_normal(outputs)
    labels = rng.integers(0, classes, 6)
    _loss, _logits, grads = head_loss(h, w_out, b_out, labels)
    for name, array in (("h", h), ("w_out", w_out), ("b_out", b_out)):
        numeric = numeric_gradient(lambda: head_loss(h, w_out, b_out, labels)[0], array)
        assert FINITE_DIFFERENCE.allclose(grads[name], numeric), name


def test_head_loss_values_match_torch():
    rng = np.random.default_rng(0)
    h, labels = rng.standard_normal((5, 3)), np.array([0, 1, 1, 0, 1])
    w, b = rng.standard_normal((1, 3)), rng.standard_normal(1)
    loss, logits, _ = head_loss(h, w, b, labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.from_numpy(logits[:, 0]), torch.from_numpy(labels).double())
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_array_equal(predicted_classes(logits), (logits[:, 0] > 0).astype(int))


def cpu_backend(name: str):
    """A parameter that skips, with the reason, where the backend is missing."""
    reason = ("not registered" if name not in backends.names()
              else backends.get(name).why_unavailable)
    return pytest.param(name, marks=pytest.mark.skipif(
        name not in backends.names() or not backends.get(name).available, reason=str(reason)))


CPU_BACKENDS = [cpu_backend(name) for name in ("numpy", "torch-cpu", "numba-cpu")]

SPECS = {
    "gru-series": ModelSpec("gru", hidden=5, classes=3, features=4),
    "lstm-series": ModelSpec("lstm", hidden=5, classes=3, features=4),
    "gru-tokens": ModelSpec("gru", hidden=5, classes=2, vocab_size=11, embed=3),
    "lstm-tokens": ModelSpec("lstm", hidden=5, classes=2, vocab_size=11, embed=3),
    "gru-series-2-layers-bidirectional": ModelSpec("gru", hidden=5, classes=3, features=4,
                                                   layers=2, bidirectional=True),
    "lstm-tokens-3-layers": ModelSpec("lstm", hidden=5, classes=2, vocab_size=11, embed=3,
                                      layers=3),
    "gru-tokens-bidirectional": ModelSpec("gru", hidden=5, classes=2, vocab_size=11,
                                          embed=3, bidirectional=True),
}


def tiny_batch(spec: ModelSpec, rng, B=6, T=7):
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    if spec.is_tokens:
        x = rng.integers(1, spec.vocab_size, (B, T))
        x[np.arange(T)[None, :] >= lengths[:, None]] = 0
        x[1, :2] = x[2, 0]           # a token repeated: its embedding gradient accumulates
    else:
        x = rng.standard_normal((B, T, spec.features)).astype(np.float32)
        x[np.arange(T)[None, :] >= lengths[:, None]] = 0
    return x, lengths, rng.integers(0, spec.classes, B)


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_model_gradient_matches_torch_autograd(name, backend):
    """The whole model, embedding and lengths included, against nn.GRU/nn.LSTM autograd
    from the same parameters."""
    spec = SPECS[name]
    rng = np.random.default_rng(1)
    params = init_parameters(spec, seed=3)
    kernel = KernelModel(spec, backends.get(backend), params, lr=1e-3, clip=1.0)
    reference = TorchModel(spec, params, lr=1e-3, clip=1.0)
    x, lengths, labels = tiny_batch(spec, rng)
    assert kernel.gradients(x, lengths, labels) == pytest.approx(
        reference.gradients(x, lengths, labels), rel=1e-5)
    expected = np.concatenate([p.grad.numpy().ravel() for p in reference.parameters])
    assert FLOAT32_GRADIENT.allclose(kernel.params.grad, expected)
    assert FLOAT32_FORWARD.allclose(kernel.predict(x, lengths), reference.predict(x, lengths))


def test_stacked_bidirectional_parameters_are_torchs():
    spec = SPECS["gru-series-2-layers-bidirectional"]
    torch_gru = torch.nn.GRU(4, 5, num_layers=2, bidirectional=True)
    shapes = spec.shapes()
    assert {name: tuple(p.shape) for name, p in torch_gru.named_parameters()} == {
        name: shape for name, shape in shapes.items() if name not in ("w_out", "b_out")}
    assert shapes["w_out"] == (3, 10)
    params = init_parameters(spec, seed=0)
    assert not np.array_equal(params["weight_hh_l0"], params["weight_hh_l0_reverse"])


def test_one_layer_one_direction_keeps_its_parameter_values():
    """--layers 1 without --bidirectional starts from the values it always did."""
    spec = SPECS["gru-tokens"]
    params = init_parameters(spec, seed=4)
    from grubench.weights import init_weights
    expected = init_weights("gru", 3, 5, seed=5, dtype=np.float64)
    for ours, theirs in (("weight_ih_l0", "w_ih"), ("bias_hh_l0", "b_hh")):
        np.testing.assert_array_equal(params[ours], expected[theirs].astype(np.float32))


def test_gru_has_three_quarters_of_the_lstm_recurrent_weights():
    gru, lstm = SPECS["gru-series"], SPECS["lstm-series"]
    head = gru.outputs * (gru.hidden + 1)
    assert 4 * (gru.parameter_count() - head) == 3 * (lstm.parameter_count() - head)


def test_adam_with_clipping_matches_torch():
    rng = np.random.default_rng(0)
    start = rng.standard_normal(20).astype(np.float32)
    params = start.copy()
    ours = Adam(params, lr=0.01, clip=1.0)
    theirs = torch.nn.Parameter(torch.from_numpy(start.copy()))
    optimizer = torch.optim.Adam([theirs], lr=0.01)
    for step in range(5):
        grad = rng.standard_normal(20).astype(np.float32) * (3.0 if step % 2 else 0.1)
        ours.step(grad)
        theirs.grad = torch.from_numpy(grad.copy())
        torch.nn.utils.clip_grad_norm_([theirs], 1.0)
        optimizer.step()
    np.testing.assert_allclose(params, theirs.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", SPECS)
def test_a_few_steps_reduce_the_loss_on_a_tiny_task(name):
    """Label = a function of the first step, which the state must carry to the end."""
    spec = SPECS[name]
    rng = np.random.default_rng(2)
    x, lengths, _ = tiny_batch(spec, rng, B=16, T=5)
    first = x[:, 0] if spec.is_tokens else x[:, 0, 0]
    labels = (first > np.median(first)).astype(np.int64)
    model = KernelModel(spec, backends.get("numpy"), init_parameters(spec, 0), lr=0.05,
                        clip=1.0)
    losses = [model.train_step(x, lengths, labels) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
