"""Factories for grubench model's tests (grubench.modelbench's contract): tiny models
with GRU/LSTMs at several depths, and the ways a factory can be wrong."""
import torch
from torch import nn

T, B, I, H = 5, 3, 4, 6     # noqa: E741


class Nested(nn.Module):
    """GRUs and LSTMs in a Sequential, a ModuleList and a child module; one GRU reached by
    two paths (shared weights)."""

    def __init__(self, dtype):
        super().__init__()
        shared = nn.GRU(H, H, dtype=dtype)
        self.front = nn.Sequential(nn.Linear(I, H, dtype=dtype))
        self.stack = nn.ModuleList([nn.GRU(H, H, num_layers=2, bidirectional=True,
                                           dtype=dtype),
                                    nn.LSTM(2 * H, H, batch_first=False, dtype=dtype)])
        self.inner = nn.Module()
        self.inner.first = shared
        self.inner.again = shared

    def forward(self, x):
        y = self.front(x)
        y, _ = self.stack[0](y)
        y, (h_n, _c_n) = self.stack[1](y)
        y, _ = self.inner.first(y)
        z, _ = self.inner.again(y)
        return {"sequence": z, "states": (h_n, y)}


def nested(dtype="float64"):
    return Nested(getattr(torch, dtype)), torch.randn(T, B, I, dtype=getattr(torch, dtype),
                                                      requires_grad=True)


def tiny():
    """One bidirectional GRU: the command end to end in a few seconds."""
    return nn.GRU(I, H, bidirectional=True), (torch.randn(T, B, I),)


def no_recurrent():
    return nn.Linear(I, H), (torch.randn(B, I),)


def projected():
    return nn.Sequential(nn.LSTM(I, H, proj_size=2)), (torch.randn(T, B, I),)


def raises():
    raise RuntimeError("no data here")


def module_only():
    return nn.GRU(I, H)


NOT_CALLABLE = 3
