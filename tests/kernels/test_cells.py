"""The cell and network specs agree with torch.nn.GRU/LSTM, which they describe."""
import pytest
import torch

from grubench.kernels import cells


@pytest.mark.parametrize("name", list(cells.CELLS))
@pytest.mark.parametrize("num_layers,bidirectional,bias", [(1, False, True), (3, True, True),
                                                           (2, True, False)])
def test_network_parameters_are_torchs(name, num_layers, bidirectional, bias):
    spec = cells.NetworkSpec(name, input_size=5, hidden_size=4, num_layers=num_layers,
                             bidirectional=bidirectional, bias=bias)
    module = getattr(torch.nn, cells.cell(name).torch_class)(
        5, 4, num_layers=num_layers, bidirectional=bidirectional, bias=bias)
    torch_shapes = {n: tuple(p.shape) for n, p in module.named_parameters()}
    assert spec.parameter_shapes() == torch_shapes
    assert list(spec.parameter_shapes()) == list(torch_shapes)     # torch's order too
    assert spec.parameter_count() == sum(p.numel() for p in module.parameters())


def test_state_index_follows_torch():
    spec = cells.NetworkSpec("lstm", 3, 2, num_layers=2, bidirectional=True)
    assert [(layer, direction) for layer, direction, _ in spec.layers()] == [
        (0, 0), (0, 1), (1, 0), (1, 1)]
    assert spec.state_shape(7) == (4, 7, 2)
    assert spec.layer_input_size(0) == 3 and spec.layer_input_size(1) == 4


def test_gate_offsets_and_outputs():
    assert [cells.GRU.gate(g) for g in "rzn"] == [0, 1, 2]
    assert cells.LSTM.gate("o") == 3
    assert cells.GRU.outputs == ("y", "h_n") and cells.LSTM.outputs == ("y", "h_n", "c_n")
    assert cells.LSTM.initial_states == ("h0", "c0")


def test_counts_by_hand():
    # GRU, I=5, H=4: 3*4*(5+4+2) = 132 parameters; forward FLOPs 2*3*4*(5+4)*B*T.
    assert cells.GRU.parameter_count(5, 4) == 132
    assert cells.GRU.flops(T=2, B=3, I=5, H=4, training=False) == 2 * 3 * 4 * 9 * 3 * 2
    assert cells.LSTM.flops(T=2, B=3, I=5, H=4, training=True) == 3 * 2 * 4 * 4 * 9 * 3 * 2
    assert cells.LSTM.recurrent_flops(T=2, B=3, H=4) == 2 * 4 * 16 * 3 * 2


def test_variants():
    assert cells.GRU.reset_after("reset_after") and not cells.GRU.reset_after("reset_before")
    assert cells.LSTM.reset_after(cells.NO_VARIANT)
    assert cells.GRU.variant_of(False) == "reset_before"
    assert cells.LSTM.variant_of(False) == cells.NO_VARIANT
    with pytest.raises(ValueError, match="unknown gru variant 'after'"):
        cells.GRU.reset_after("after")


@pytest.mark.parametrize("bad,match", [(dict(cell="rnn"), "unknown cell 'rnn'"),
                                       (dict(num_layers=0), "num_layers must be"),
                                       (dict(hidden_size=True), "hidden_size must be")])
def test_bad_network(bad, match):
    with pytest.raises(ValueError, match=match):
        cells.NetworkSpec(**{"cell": "gru", "input_size": 3, "hidden_size": 2, **bad})
