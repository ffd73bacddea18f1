"""The torch comparison model: same parameters, same function as the kernel model."""
import numpy as np
import pytest

from grubench.training.model import ModelSpec, init_parameters
from grubench.training.torch_model import TorchModel

SPECS = [ModelSpec("gru", hidden=5, classes=3, features=4),
         ModelSpec("lstm", hidden=5, classes=2, vocab_size=9, embed=3)]


@pytest.mark.parametrize("spec", SPECS, ids=["gru-series", "lstm-tokens"])
def test_parameter_count_matches_the_spec(spec):
    params = init_parameters(spec, seed=0)
    model = TorchModel(spec, params, lr=1e-3, clip=1.0)
    assert model.parameter_count() == spec.parameter_count() == sum(p.size for p in params.values())
    np.testing.assert_array_equal(model.rnn.weight_hh_l0.detach().numpy(), params["weight_hh_l0"])


@pytest.mark.parametrize("spec", SPECS, ids=["gru-series", "lstm-tokens"])
def test_padding_after_a_sequence_does_not_change_its_logits(spec):
    rng = np.random.default_rng(0)
    model = TorchModel(spec, init_parameters(spec, seed=1), lr=1e-3, clip=1.0)
    lengths = np.array([4, 2, 3])
    shape = (3, 4) if spec.is_tokens else (3, 4, spec.features)
    x = (rng.integers(1, spec.vocab_size, shape) if spec.is_tokens
         else rng.standard_normal(shape).astype(np.float32))
    before = model.predict(x, lengths)
    x[1, 2:] = x[0, :2]        # change what lies past sequence 1's end
    np.testing.assert_array_equal(model.predict(x, lengths), before)
    assert before.shape == (3, spec.outputs)


def test_a_step_changes_every_parameter():
    spec = SPECS[0]
    params = init_parameters(spec, seed=2)
    model = TorchModel(spec, params, lr=1e-2, clip=1.0)
    x = np.random.default_rng(0).standard_normal((4, 3, 4)).astype(np.float32)
    loss = model.train_step(x, np.array([3, 3, 2, 1]), np.array([0, 1, 2, 1]))
    assert np.isfinite(loss)
    for name, parameter in zip(spec.shapes(), model.parameters):
        assert not np.array_equal(parameter.detach().numpy(), params[name]), name
