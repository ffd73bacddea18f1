"""The classifier, trained with a grubench backend's forward and backward:

    input layer -> recurrent network (GRU or LSTM, ``layers`` deep, one or two directions,
                   a grubench.nn module on the backend) -> dense head

The input layer is an embedding for token data; a numeric series goes straight into the
recurrent network, whose input product W_ih x is its linear input layer. The head reads
the last layer's real final state h_n (lengths make it the state after each sequence's own
last step; both directions' side by side when bidirectional, as a torch user writes
``cat(h_n[-2], h_n[-1])``) and is a sigmoid unit for two classes, a softmax otherwise; the
loss is the mean cross-entropy. Gradients are clipped by their global norm, then Adam
updates the parameters, which live in one flat float32 vector so the optimizer is a
handful of vector operations; the recurrent module's parameters are views of that vector.

Shapes: batches are batch-major, series x (B, T, F) float32 or tokens (B, T) int64, lengths
(B,), labels (B,); the network gets time-major x (T, B, I) as a PackedSequence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grubench.kernels.cells import CellSpec, NetworkSpec, cell
from grubench.weights import init_weights


@dataclass(frozen=True)
class ModelSpec:
    """What the model looks like: ``features`` values per step for a series, or
    ``vocab_size`` token ids embedded in ``embed`` dimensions."""

    cell: str
    hidden: int
    classes: int
    features: int = 0
    vocab_size: int = 0
    embed: int = 0
    layers: int = 1
    bidirectional: bool = False

    @property
    def cell_spec(self) -> CellSpec:
        return cell(self.cell)

    @property
    def network(self) -> NetworkSpec:
        """The recurrent network, with torch's parameter names and shapes."""
        return NetworkSpec(self.cell, self.recurrent_input, self.hidden, self.layers,
                           self.bidirectional)

    @property
    def is_tokens(self) -> bool:
        return self.vocab_size > 0

    @property
    def outputs(self) -> int:
        """One sigmoid logit for two classes, else one softmax logit per class."""
        return 1 if self.classes == 2 else self.classes

    @property
    def recurrent_input(self) -> int:
        return self.embed if self.is_tokens else self.features

    def shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"embedding": (self.vocab_size, self.embed)} if self.is_tokens else {}
        shapes.update(self.network.parameter_shapes())
        shapes.update(w_out=(self.outputs, self.network.output_size), b_out=(self.outputs,))
        return shapes

    def parameter_count(self) -> int:
        return sum(int(np.prod(shape)) for shape in self.shapes().values())


def init_parameters(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """torch's default initialisation, seeded: embedding ~ N(0, 1); recurrent weights and
    biases ~ U(-1/sqrt(H), 1/sqrt(H)) (layer and direction k from seed + 1 + k); head ~
    U(-1/sqrt(H), 1/sqrt(H)) (nn.Linear's bound for fan-in H; the same bound with two
    directions keeps one-direction models' values). Both the kernel model and the torch
    model start from these values."""
    rng = np.random.default_rng(seed)
    params = {}
    if spec.is_tokens:
        params["embedding"] = rng.standard_normal((spec.vocab_size, spec.embed))
    network = spec.network
    for index, (layer, _direction, suffix) in enumerate(network.layers()):
        layer_params = init_weights(spec.cell, network.layer_input_size(layer), spec.hidden,
                                    seed=seed + 1 + index, dtype=np.float64)
        params.update({_TORCH_NAMES[name] + suffix: value
                       for name, value in layer_params.items()})
    bound = 1.0 / np.sqrt(spec.hidden)
    params["w_out"] = rng.uniform(-bound, bound, (spec.outputs, network.output_size))
    params["b_out"] = rng.uniform(-bound, bound, spec.outputs)
    return {name: value.astype(np.float32) for name, value in params.items()}


_TORCH_NAMES = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}


def head_loss(h: np.ndarray, w_out: np.ndarray, b_out: np.ndarray, labels: np.ndarray):
    """Mean cross-entropy of the dense head on states h (B, H), with labels (B,).
    w_out (C, H), b_out (C,): C = 1 is a sigmoid unit (labels 0/1), C > 1 a softmax.
    Returns (loss, logits (B, C), grads {"h", "w_out", "b_out"})."""
    logits = h @ w_out.T + b_out
    B = len(labels)
    if w_out.shape[0] == 1:
        z, target = logits[:, 0], labels.astype(logits.dtype)
        loss = np.mean(np.logaddexp(0.0, z) - target * z)     # stable -log sigmoid
        dlogits = ((0.5 * (1.0 + np.tanh(0.5 * z)) - target) / B)[:, None]
    else:
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -np.mean(log_probs[np.arange(B), labels])
        dlogits = np.exp(log_probs)
        dlogits[np.arange(B), labels] -= 1.0
        dlogits /= B
    grads = {"h": dlogits @ w_out, "w_out": dlogits.T @ h, "b_out": dlogits.sum(axis=0)}
    return float(loss), logits, grads


def predicted_classes(logits: np.ndarray) -> np.ndarray:
    """Class per row of logits (B, C): sigmoid unit > 0.5, or the softmax's argmax."""
    return (logits[:, 0] > 0).astype(np.int64) if logits.shape[1] == 1 else logits.argmax(1)


class Adam:
    """Adam over one flat parameter vector, after clipping the gradient's global norm to
    ``clip`` as torch.nn.utils.clip_grad_norm_ does; torch.optim.Adam's defaults."""

    def __init__(self, params: np.ndarray, lr: float, clip: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.clip, self.betas, self.eps = params, lr, clip, betas, eps
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)
        self.steps = 0

    def step(self, grad: np.ndarray) -> None:
        norm = float(np.linalg.norm(grad))
        if norm > self.clip:
            grad = grad * np.float32(self.clip / (norm + 1e-6))
        beta1, beta2 = self.betas
        self.steps += 1
        self.m *= beta1
        self.m += (1 - beta1) * grad
        self.v *= beta2
        self.v += (1 - beta2) * grad * grad
        step_size = self.lr / (1 - beta1 ** self.steps)
        denominator = np.sqrt(self.v / (1 - beta2 ** self.steps)) + self.eps
        self.params -= (step_size * self.m / denominator).astype(self.params.dtype)


class FlatParameters:
    """Named views into one flat float32 vector, and a gradient vector of the same layout."""

    def __init__(self, values: dict[str, np.ndarray]):
        sizes = [v.size for v in values.values()]
        self.flat = np.concatenate([v.ravel() for v in values.values()]).astype(np.float32)
        self.grad = np.zeros_like(self.flat)
        offsets = np.cumsum([0] + sizes)
        self.views, self.grads = {}, {}
        for (name, value), start, end in zip(values.items(), offsets[:-1], offsets[1:]):
            self.views[name] = self.flat[start:end].reshape(value.shape)
            self.grads[name] = self.grad[start:end].reshape(value.shape)


class KernelModel:
    """The classifier with its recurrent network a grubench.nn module on a grubench backend
    (see module doc); torch is imported with it."""

    def __init__(self, spec: ModelSpec, backend, params: dict[str, np.ndarray], lr: float,
                 clip: float):
        import torch

        import grubench.nn

        self.spec, self.backend = spec, backend
        self.params = FlatParameters(params)
        self.optimizer = Adam(self.params.flat, lr, clip)
        network = spec.network
        self.rnn = getattr(grubench.nn, spec.cell_spec.torch_class)(
            network.input_size, spec.hidden, num_layers=spec.layers,
            bidirectional=spec.bidirectional, backend=backend.name)
        for name in network.parameter_shapes():      # views: Adam's steps are the module's
            setattr(self.rnn, name, torch.nn.Parameter(torch.from_numpy(
                self.params.views[name])))

    def parameter_count(self) -> int:
        return self.params.flat.size

    def set_learning_rate(self, lr: float) -> None:
        self.optimizer.lr = lr

    def _final_states(self, x: np.ndarray, lengths: np.ndarray, inputs_grad: bool):
        """(time-major inputs tensor, the network's h_n): the batch through the recurrent
        network from zero initial states."""
        import torch
        from torch.nn.utils.rnn import pack_padded_sequence

        p = self.params.views
        inputs = torch.from_numpy(np.ascontiguousarray(
            p["embedding"][x.T] if self.spec.is_tokens else x.transpose(1, 0, 2)))
        inputs.requires_grad_(inputs_grad)
        _y, state = self.rnn(pack_padded_sequence(inputs, torch.from_numpy(lengths),
                                                  enforce_sorted=False))
        # torch returns h_n, or (h_n, c_n) for a cell with more states
        return inputs, state if len(self.spec.cell_spec.states) == 1 else state[0]

    def _head_input(self, h_n: np.ndarray) -> np.ndarray:
        """The last layer's final states, both directions side by side: (B, D*H)."""
        last = h_n[-self.spec.network.directions:]
        return np.concatenate(list(last), axis=1) if len(last) > 1 else last[0]

    def gradients(self, x: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> float:
        """Forward and backward on a batch: fills ``self.params.grad`` with the gradient of
        the batch's mean loss, which it returns."""
        import torch

        inputs, h_n = self._final_states(x, lengths, inputs_grad=self.spec.is_tokens)
        p, g = self.params.views, self.params.grads
        h_n_array = h_n.detach().numpy()
        loss, _logits, head_grads = head_loss(self._head_input(h_n_array), p["w_out"],
                                              p["b_out"], labels)
        # Only the last layer's h_n feeds the head: no gradient reaches y, another layer's
        # state, nor another final state (the LSTM's cell state).
        d_h_n = np.zeros_like(h_n_array)
        directions = self.spec.network.directions
        d_h_n[-directions:] = np.stack(np.split(head_grads["h"], directions, axis=1))
        for parameter in self.rnn.parameters():
            parameter.grad = None
        h_n.backward(torch.from_numpy(d_h_n))
        for name, parameter in self.rnn.named_parameters():
            g[name][...] = parameter.grad.numpy()
        g["w_out"][...], g["b_out"][...] = head_grads["w_out"], head_grads["b_out"]
        if self.spec.is_tokens:
            g["embedding"].fill(0)
            np.add.at(g["embedding"], x.T, inputs.grad.numpy())
        return loss

    def train_step(self, x: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> float:
        """One forward, backward and Adam step on a batch; returns the batch's mean loss."""
        loss = self.gradients(x, lengths, labels)
        self.optimizer.step(self.params.grad)
        return loss

    def predict(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Logits (B, C) for a batch."""
        import torch

        with torch.no_grad():
            h_n = self._final_states(x, lengths, inputs_grad=False)[1].numpy()
        p = self.params.views
        return self._head_input(h_n) @ p["w_out"].T + p["b_out"]
