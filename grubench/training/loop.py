"""One training loop for every model: the kernel model on any backend and the torch model.

Batches come in a seeded order that depends only on (seed, epoch), so every model sees
the same batches; each batch is cut to its longest sequence, which saves the padded steps
of variable-length data. The learning rate follows a cosine from ``lr`` in the first epoch
down towards 0 in the last, so the final accuracy does not hinge on the last few noisy
steps. Only the training steps are timed; scoring the test set after each epoch (for the
learning curve) is not.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from grubench.training.datasets import Dataset
from grubench.training.model import predicted_classes

EVAL_BATCH = 512


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the run stops and no results are written."""


@dataclass
class History:
    """Per epoch: seconds spent in training steps, mean training loss, test accuracy."""

    epoch_seconds: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)


def batches(x: np.ndarray, lengths: np.ndarray, labels: np.ndarray, size: int,
            order: np.ndarray | None = None):
    """Yield (x, lengths, labels) batches of ``size`` rows in ``order``, each cut to its
    longest sequence."""
    order = np.arange(len(labels)) if order is None else order
    for start in range(0, len(order), size):
        rows = order[start:start + size]
        steps = int(lengths[rows].max())
        yield x[rows, :steps], lengths[rows], labels[rows]


def accuracy(model, data: Dataset) -> float:
    """Fraction of the test set the model classifies right."""
    correct = sum(int((predicted_classes(model.predict(x, lengths)) == labels).sum())
                  for x, lengths, labels in batches(data.x_test, data.lengths_test,
                                                    data.y_test, EVAL_BATCH))
    return correct / len(data.y_test)


def cosine_learning_rate(lr: float, epoch: int, epochs: int) -> float:
    """The learning rate of ``epoch`` (0-based): lr * (1 + cos(pi * epoch / epochs)) / 2."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def train(model, data: Dataset, *, epochs: int, batch: int, seed: int, lr: float) -> History:
    """Train ``model`` (``set_learning_rate``/``train_step``/``predict``) for ``epochs``
    passes over the training set. Raises TrainingDiverged at the first NaN or infinite
    batch loss."""
    history = History()
    for epoch in range(epochs):
        model.set_learning_rate(cosine_learning_rate(lr, epoch, epochs))
        order = np.random.default_rng([seed, epoch]).permutation(len(data.y_train))
        losses = []
        start = time.perf_counter()
        for x, lengths, labels in batches(data.x_train, data.lengths_train, data.y_train,
                                          batch, order):
            loss = model.train_step(x, lengths, labels)
            if not math.isfinite(loss):
                raise TrainingDiverged(f"training loss became {loss} at epoch {epoch + 1}, "
                                       f"batch {len(losses) + 1} (learning rate too high?)")
            losses.append(loss)
        history.epoch_seconds.append(time.perf_counter() - start)
        history.train_loss.append(float(np.mean(losses)))
        history.test_accuracy.append(accuracy(model, data))
    return history
