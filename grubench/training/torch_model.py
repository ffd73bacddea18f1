"""The comparison: the same classifier as a PyTorch user writes it, nn.Embedding ->
nn.GRU / nn.LSTM (variable lengths through pack_padded_sequence) -> nn.Linear, autograd,
clip_grad_norm_ and torch.optim.Adam. It starts from the same parameter values as the kernel
model (:func:`grubench.training.model.init_parameters`) and sees the same batches."""
from __future__ import annotations

import numpy as np

from grubench.training.model import ModelSpec

try:
    import torch
    import torch.nn.functional as F
    from torch.nn.utils.rnn import pack_padded_sequence
except ImportError as error:  # torch is a dependency, but a broken install must not crash us
    torch = None
    IMPORT_ERROR = f"torch cannot be imported: {error}"


def availability() -> tuple[bool, str | None]:
    return (False, IMPORT_ERROR) if torch is None else (True, None)


def version() -> str:
    return f"torch {torch.__version__}" if torch is not None else "torch missing"


class TorchModel:
    """Same interface as :class:`~grubench.training.model.KernelModel`."""

    def __init__(self, spec: ModelSpec, params: dict[str, np.ndarray], lr: float,
                 clip: float):
        self.spec, self.clip = spec, clip
        network = spec.network
        self.rnn = getattr(torch.nn, spec.cell_spec.torch_class)(
            network.input_size, spec.hidden, num_layers=spec.layers,
            bidirectional=spec.bidirectional)
        self.head = torch.nn.Linear(network.output_size, spec.outputs)
        self.embedding = (torch.nn.Embedding(spec.vocab_size, spec.embed)
                          if spec.is_tokens else None)
        with torch.no_grad():
            for name in network.parameter_shapes():
                getattr(self.rnn, name).copy_(torch.from_numpy(params[name]))
            self.head.weight.copy_(torch.from_numpy(params["w_out"]))
            self.head.bias.copy_(torch.from_numpy(params["b_out"]))
            if self.embedding is not None:
                self.embedding.weight.copy_(torch.from_numpy(params["embedding"]))
        self.parameters = [p for m in (self.embedding, self.rnn, self.head) if m is not None
                           for p in m.parameters()]
        self.optimizer = torch.optim.Adam(self.parameters, lr=lr)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters)

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _logits(self, x: np.ndarray, lengths: np.ndarray):
        inputs = torch.from_numpy(x.T if self.spec.is_tokens else x.transpose(1, 0, 2))
        if self.embedding is not None:
            inputs = self.embedding(inputs)
        packed = pack_padded_sequence(inputs, torch.from_numpy(lengths), enforce_sorted=False)
        _outputs, state = self.rnn(packed)
        # torch returns h_n, or (h_n, c_n) for a cell with more states; the last layer's
        # final states, both directions side by side
        h_n = state if len(self.spec.cell_spec.states) == 1 else state[0]
        return self.head(torch.cat(list(h_n[-self.spec.network.directions:]), dim=1))

    def _loss(self, logits, labels: np.ndarray):
        target = torch.from_numpy(labels)
        if self.spec.outputs == 1:
            return F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype))
        return F.cross_entropy(logits, target)

    def gradients(self, x: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> float:
        """Forward and autograd backward on a batch: fills each parameter's ``.grad``
        (in :meth:`ModelSpec.shapes` order); returns the batch's mean loss."""
        self.optimizer.zero_grad()
        loss = self._loss(self._logits(x, lengths), labels)
        loss.backward()
        return loss.item()

    def train_step(self, x: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> float:
        loss = self.gradients(x, lengths, labels)
        torch.nn.utils.clip_grad_norm_(self.parameters, self.clip)
        self.optimizer.step()
        return loss

    def predict(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self._logits(x, lengths).numpy()
