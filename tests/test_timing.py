"""Statistics against exact hand-computed values, and the measuring loop driven by a fake
clock (no real timing in any assertion)."""
import itertools

import pytest

from grubench import timing


def test_quantile_interpolates_linearly_between_ranks():
    values = [1.0, 2.0, 4.0, 8.0]
    assert timing.quantile(values, 0.0) == 1.0
    assert timing.quantile(values, 1.0) == 8.0
    assert timing.quantile(values, 0.5) == 3.0        # halfway between 2 and 4
    assert timing.quantile(values, 0.25) == 1.75      # position 0.75: 1 + 0.75 * (2 - 1)
    assert timing.quantile(values, 0.75) == 5.0       # position 2.25: 4 + 0.25 * (8 - 4)


def test_summarize_exact_values():
    # sorted: 1 2 3 4 5 6 7 8 9 -> median 5, q25 at position 2 = 3, q75 at 6 = 7
    stats = timing.summarize([9, 1, 8, 2, 7, 3, 6, 4, 5])
    assert stats == timing.Stats(median_s=5, iqr_s=4, min_s=1, runs=9, unstable=True)


def test_unstable_threshold_is_ten_percent_of_the_median():
    # five values: q25 and q75 are exactly the 2nd and 4th
    stable = timing.summarize([0.98, 0.99, 1.0, 1.01, 1.02])
    assert stable.iqr_s == pytest.approx(0.02) and not stable.unstable
    unstable = timing.summarize([0.8, 0.9, 1.0, 1.1, 1.2])
    assert unstable.iqr_s == pytest.approx(0.2) and unstable.unstable
    # binary-exact values: IQR 0.0625 (6.25%) is stable, 0.125 (12.5%) is not
    assert not timing.summarize([0.5, 0.96875, 1.0, 1.03125, 2.0]).unstable
    assert timing.summarize([0.5, 0.9375, 1.0, 1.0625, 2.0]).unstable


def test_single_run():
    assert timing.summarize([2.5]) == timing.Stats(2.5, 0.0, 2.5, 1, False)


class FakeClock:
    """Each call of the measured function advances time by the next given duration."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = iter(durations)
        self.calls = 0

    def clock(self):
        return self.now

    def call(self):
        self.calls += 1
        self.now += next(self.durations)


def test_measure_warms_up_then_collects_min_runs_and_min_time():
    fake = FakeClock(itertools.repeat(0.02))
    times = timing.measure(fake.call, lambda: None, min_runs=3, min_time=0.1,
                           warmup_time=0.05, clock=fake.clock)
    # warm-up: 3 calls reach 0.06 >= 0.05; then 5 samples of 0.02 reach min_time 0.1
    assert times == pytest.approx([0.02] * 5)
    assert fake.calls == 8


def test_measure_min_runs_dominates_for_slow_calls():
    fake = FakeClock(itertools.repeat(1.0))
    times = timing.measure(fake.call, lambda: None, min_runs=4, min_time=0.1,
                           warmup_time=0.05, clock=fake.clock)
    assert len(times) == 4 and fake.calls == 5     # one warm-up call suffices


def test_measure_stops_at_max_runs():
    fake = FakeClock(itertools.repeat(1e-6))
    assert len(timing.measure(fake.call, lambda: None, min_runs=1, min_time=10.0,
                              warmup_time=0.0, max_runs=7, clock=fake.clock)) == 7


def test_measure_synchronizes_inside_the_timed_region():
    fake = FakeClock(itertools.repeat(0.0))

    def synchronize():  # asynchronous work finishing at synchronize() must be counted
        fake.now += 0.5

    times = timing.measure(fake.call, synchronize, min_runs=2, min_time=0.0,
                           warmup_time=0.0, clock=fake.clock)
    assert times == [0.5, 0.5]


def test_measure_rejects_zero_runs():
    with pytest.raises(ValueError, match="min_runs"):
        timing.measure(lambda: None, lambda: None, min_runs=0, min_time=0.0)


def test_gemm_ceiling_is_a_positive_rate():
    assert timing.gemm_ceiling_gflops("float32", n=64, runs=2) > 0
