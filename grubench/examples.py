"""Example factories for ``grubench model`` (the factory contract is in grubench.modelbench):
each returns ``(module, example_inputs)`` built from plain torch.nn layers, so that
``grubench model grubench.examples:tagger`` runs offline.

    tagger  embedding -> stacked (bidirectional) GRU or LSTM -> linear, a tag per token
    rnn     one torch.nn.GRU or LSTM on float input (x needs its gradient), nothing else:
            with ``--overhead`` it measures grubench.nn's own cost over the bare network
"""
from __future__ import annotations

import torch
from torch import nn


class Tagger(nn.Module):
    """Token ids (T, B) -> per-step class logits (T, B, classes)."""

    def __init__(self, vocabulary: int, width: int, classes: int, layers: int,
                 bidirectional: bool, cell: str):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, width)
        self.rnn = recurrent_class(cell)(width, width, num_layers=layers,
                                         bidirectional=bidirectional)
        self.linear = nn.Linear((2 if bidirectional else 1) * width, classes)

    def forward(self, tokens):
        y, _state = self.rnn(self.embedding(tokens))
        return self.linear(y)


def recurrent_class(cell: str):
    """torch.nn.GRU or torch.nn.LSTM by cell name."""
    if cell not in ("gru", "lstm"):
        raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
    return nn.GRU if cell == "gru" else nn.LSTM


def tagger(batch: int = 1, steps: int = 100, width: int = 256, layers: int = 2,
           bidirectional: bool = True, vocabulary: int = 1000, classes: int = 10,
           cell: str = "gru"):
    """embedding -> ``layers``-layer (bidirectional) ``cell`` of ``width`` -> linear; a
    batch of ``batch`` random sequences of ``steps`` tokens."""
    module = Tagger(vocabulary, width, classes, layers, bidirectional, cell)
    return module, (torch.randint(vocabulary, (steps, batch)),)


def rnn(steps: int = 100, batch: int = 16, input: int = 256, hidden: int = 256,  # noqa: A002
        layers: int = 1, bidirectional: bool = False, cell: str = "gru"):
    """One torch.nn.GRU (or LSTM) alone on x of shape (steps, batch, input)."""
    module = recurrent_class(cell)(input, hidden, num_layers=layers,
                                   bidirectional=bidirectional)
    return module, (torch.randn(steps, batch, input, requires_grad=True),)
