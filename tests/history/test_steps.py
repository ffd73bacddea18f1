"""Change points: a planted step is found at its commit with its size; noise and steps
under the minimum effect are not."""
import numpy as np
import pandas as pd

from grubench.history import steps


def noisy(n, sigma=0.03, seed=0):
    return np.exp(np.random.default_rng(seed).normal(0, sigma, n))


def test_a_planted_step_is_found_where_it_was_planted():
    values = 1e-3 * noisy(20)
    values[12:] *= 1.3
    [(cut, before, after)] = steps.change_points(values)
    assert cut == 12
    assert 0.2 < after / before - 1 < 0.4


def test_noise_alone_has_no_steps():
    for seed in range(20):
        assert steps.change_points(1e-3 * noisy(30, seed=seed)) == []


def test_a_step_below_the_minimum_effect_is_not_reported():
    values = noisy(20, sigma=0.005)
    values[10:] *= 1.06
    assert steps.change_points(values, min_effect=0.10) == []
    [(cut, _, _)] = steps.change_points(values, min_effect=0.05)
    assert cut == 10


def test_a_speedup_is_a_negative_step_and_short_series_have_none():
    values = noisy(12)
    values[4:] *= 0.5
    [(cut, before, after)] = steps.change_points(values)
    assert cut == 4 and after < before
    assert steps.change_points([1.0, 2.0, 3.0]) == []          # fewer than 2 runs a side


def test_find_steps_names_the_commit_series_and_sizes():
    values = 1e-3 * noisy(10)
    values[6:] *= 1.5
    frame = pd.DataFrame(dict(
        case="gru x", backend="numba-cpu", machine="m", metric="median_s", status="ok",
        value=values, commit=[f"c{i}" for i in range(10)], run_id=range(10)))
    other = frame.assign(backend="torch-cpu", value=1e-3 * noisy(10, seed=3))
    [step] = steps.find_steps(pd.concat([frame, other]))
    assert (step.backend, step.commit, step.previous_commit, step.run_id) == (
        "numba-cpu", "c6", "c5", 6)
    assert abs(step.change - 0.5) < 0.1
