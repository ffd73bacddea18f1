"""grubench.examples: the factories grubench model ships follow its contract, and the
tagger swapped for grubench.nn computes what torch's does."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from grubench import examples, modelbench  # noqa: E402
from grubench.kernels import numba_cpu  # noqa: E402


def test_tagger_is_embedding_stacked_bidirectional_gru_linear_over_token_ids():
    module, (tokens,) = examples.tagger(batch=3, steps=7, width=8, vocabulary=20, classes=4)
    assert type(module.rnn) is torch.nn.GRU
    assert (module.rnn.num_layers, module.rnn.bidirectional) == (2, True)
    assert tokens.shape == (7, 3) and tokens.dtype == torch.int64 and tokens.max() < 20
    assert module(tokens).shape == (7, 3, 4)


def test_rnn_is_one_recurrent_module_whose_input_needs_its_gradient():
    module, (x,) = examples.rnn(steps=4, batch=2, input=3, hidden=5, cell="lstm")
    assert type(module) is torch.nn.LSTM and x.shape == (4, 2, 3) and x.requires_grad


def test_an_unknown_cell_is_an_error_naming_it():
    with pytest.raises(ValueError, match="cell must be 'gru' or 'lstm', got 'rnn'"):
        examples.tagger(cell="rnn")


@pytest.mark.skipif(not numba_cpu.availability()[0], reason=str(numba_cpu.availability()[1]))
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_swapped_tagger_matches_torch(cell, tmp_path):
    torch.manual_seed(0)
    module, inputs = examples.tagger(batch=2, steps=6, width=8, vocabulary=30, cell=cell)
    theirs = modelbench._Runner(copy.deepcopy(module), inputs, seed=0)
    ours = modelbench._Runner(modelbench.swap_recurrent(module)[0], inputs, seed=0)
    np.savez(tmp_path / "theirs.npz", **theirs.results(training=True))
    np.savez(tmp_path / "ours.npz", **ours.results(training=True))
    compared = modelbench.compare(tmp_path / "ours.npz", tmp_path / "theirs.npz")
    assert len(compared) == 1 + len(list(module.parameters()))
    assert all(row["within"] for row in compared), compared
