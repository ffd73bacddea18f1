"""The training loop: batching, seeded order, divergence, reproducibility."""
import numpy as np
import pytest

from grubench import backends
from grubench.training import loop
from grubench.training.model import KernelModel, ModelSpec, init_parameters


def test_batches_follow_the_order_and_cut_to_the_longest_sequence():
    x = np.arange(5 * 4).reshape(5, 4)
    lengths = np.array([1, 4, 2, 2, 3])
    labels = np.arange(5)
    got = list(loop.batches(x, lengths, labels, 2, order=np.array([2, 0, 4, 1, 3])))
    assert [b[2].tolist() for b in got] == [[2, 0], [4, 1], [3]]
    assert [b[0].shape for b in got] == [(2, 2), (2, 4), (1, 2)]
    np.testing.assert_array_equal(got[0][0], x[[2, 0], :2])


def make_model(data, seed=0, lr=0.02):
    spec = ModelSpec("gru", 8, data.classes, features=data.features)
    return KernelModel(spec, backends.get("numpy"), init_parameters(spec, seed), lr, 1.0)


def test_same_seed_same_history_and_training_helps(tiny_series):
    data = tiny_series()
    first = loop.train(make_model(data), data, epochs=6, batch=8, seed=3, lr=0.02)
    again = loop.train(make_model(data), data, epochs=6, batch=8, seed=3, lr=0.02)
    other = loop.train(make_model(data), data, epochs=6, batch=8, seed=4, lr=0.02)
    assert first.train_loss == again.train_loss
    assert first.test_accuracy == again.test_accuracy
    assert other.train_loss != first.train_loss               # the seed orders the batches
    assert first.train_loss[-1] < first.train_loss[0]
    assert len(first.epoch_seconds) == 6 and min(first.epoch_seconds) > 0


def test_accuracy_counts_right_answers(tiny_series):
    data = tiny_series()

    class Oracle:
        def predict(self, x, lengths):
            # right for every row but those whose first value is below -0.9
            logits = np.eye(3)[np.digitize(x[:, 0, 0], [-1 / 3, 1 / 3])]
            logits[x[:, 0, 0] < -0.9] = np.roll(logits[x[:, 0, 0] < -0.9], 1, axis=1)
            return logits

    wrong = int((data.x_test[:, 0, 0] < -0.9).sum())
    assert loop.accuracy(Oracle(), data) == pytest.approx(1 - wrong / len(data.y_test))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_nan_loss_stops_training_with_a_hint(tiny_series):
    data = tiny_series()
    data.x_train[5, 0, 1] = np.nan
    with pytest.raises(loop.TrainingDiverged, match="learning rate too high"):
        loop.train(make_model(data), data, epochs=2, batch=8, seed=0, lr=0.02)


def test_cosine_learning_rate():
    assert loop.cosine_learning_rate(0.1, 0, 4) == 0.1
    assert loop.cosine_learning_rate(0.1, 2, 4) == pytest.approx(0.05)
    assert loop.cosine_learning_rate(0.1, 3, 4) == pytest.approx(0.05 * (1 - 0.5 ** 0.5))


def test_the_loop_sets_each_epochs_learning_rate(tiny_series):
    data = tiny_series()
    model = make_model(data)
    seen = []
    model.set_learning_rate = seen.append
    loop.train(model, data, epochs=3, batch=8, seed=0, lr=0.3)
    assert seen == [loop.cosine_learning_rate(0.3, e, 3) for e in range(3)]
