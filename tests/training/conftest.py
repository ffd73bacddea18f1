"""Shared fixtures of the training tests."""
import numpy as np
import pytest

from grubench.training.datasets import Dataset


def tiny_series(seed=0, n=24, T=6, features=3, classes=3) -> Dataset:
    """Class = which third of [-1, 1] the first step's first channel falls in."""
    rng = np.random.default_rng(seed)

    def split(count):
        lengths = rng.integers(2, T + 1, count)
        x = rng.uniform(-1, 1, (count, T, features)).astype(np.float32)
        x[np.arange(T)[None, :] >= lengths[:, None]] = 0
        y = np.digitize(x[:, 0, 0], [-1 / 3, 1 / 3]).astype(np.int64)
        return x, lengths, y

    return Dataset("tiny", "made in the test", *split(n), *split(n // 2), classes=classes)


@pytest.fixture(name="tiny_series")
def tiny_series_fixture():
    """The factory :func:`tiny_series`, for tests that change the data they get."""
    return tiny_series
