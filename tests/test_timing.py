"""Statistics against exact hand-computed values, and the measuring loop driven by a fake
clock (no real timing in any assertion)."""
import itertools

import numpy as np

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


def test_measure_defaults_warm_up_50_ms_and_cap_10000_samples():
    fake = FakeClock(itertools.repeat(0.01))
    timing.measure(fake.call, lambda: None, min_runs=1, min_time=0.0, clock=fake.clock)
    assert fake.calls == 5 + 1          # 0.05 s of 0.01 s warm-up calls, then one sample
    fake = FakeClock(itertools.repeat(0.0))
    assert len(timing.measure(fake.call, lambda: None, min_runs=1, min_time=1.0,
                              warmup_time=0.0, clock=fake.clock)) == 10_000


def test_measure_rejects_zero_runs():
    with pytest.raises(ValueError, match=r"^min_runs must be >= 1, got 0$"):
        timing.measure(lambda: None, lambda: None, min_runs=0, min_time=0.0)


@pytest.mark.slow
def test_gemm_ceiling_is_a_positive_rate():
    assert timing.gemm_ceiling_gflops("float32", n=64, runs=2) > 0


def test_median_of_skewed_samples_is_not_the_mean():
    # one slow outlier: mean 3.0, median 1.0
    stats = timing.summarize([1.0, 11.0, 1.0, 1.0, 1.0])
    assert stats.median_s == 1.0 and stats.min_s == 1.0 and stats.runs == 5


def test_median_of_an_even_count_is_the_midpoint_of_the_middle_pair():
    # sorted 1 2 4 100: median (2 + 4) / 2 = 3 (mean 26.75)
    assert timing.summarize([100.0, 2.0, 1.0, 4.0]).median_s == 3.0


def test_iqr_interpolates_between_ranks_on_skewed_even_samples():
    # sorted 1 2 3 4 10 20 (n = 6): q25 at position 1.25 = 2 + 0.25 * (3 - 2) = 2.25,
    # q75 at position 3.75 = 4 + 0.75 * (10 - 4) = 8.5; IQR 6.25. Nearest rank would give
    # q25 = 2 and q75 = 10 (IQR 8); the median is 3.5.
    stats = timing.summarize([20.0, 3.0, 1.0, 10.0, 4.0, 2.0])
    assert stats == timing.Stats(median_s=3.5, iqr_s=6.25, min_s=1.0, runs=6, unstable=True)


def test_unstable_flag_compares_iqr_with_the_median_not_the_mean():
    # sorted 1 1 1 1 1.25 100: median 1, IQR 1.1875 - 1 = 0.1875 (position 3.75 between
    # 1 and 1.25) -> 18.75% of the median: unstable. Against the mean (17.5) it would be 1%.
    stats = timing.summarize([1.0, 100.0, 1.0, 1.25, 1.0, 1.0])
    assert stats.median_s == 1.0 and stats.iqr_s == 0.1875 and stats.unstable
    # just under the line on an even count: sorted 1 1 1 1.125 (IQR 0.03125, 3%): stable
    assert not timing.summarize([1.0, 1.125, 1.0, 1.0]).unstable


def test_min_is_the_fastest_sample_not_the_first():
    assert timing.summarize([3.0, 2.0, 0.5, 4.0]).min_s == 0.5


def test_gemm_ceiling_counts_two_flops_per_multiply_add(monkeypatch):
    """2 n^3 FLOPs over the median time of the products, with the timing injected so the
    rate is exact: n = 64 in median 2 ms -> 2 * 262144 / 2e-3 / 1e9 = 0.262144 GFLOP/s."""
    calls = []

    def fake_measure(call, synchronize, **settings):
        calls.append(settings)
        synchronize()
        product = call()
        assert product.shape == (64, 64) and product.dtype == "float64"
        return [3e-3, 1e-3, 2e-3]

    monkeypatch.setattr(timing, "measure", fake_measure)
    assert timing.gemm_ceiling_gflops("float64", n=64, runs=3) == pytest.approx(0.262144,
                                                                                rel=1e-12)
    # exactly ``runs`` products, none of them spent on warm-up beyond the first
    assert calls == [dict(min_runs=3, min_time=0.0, warmup_time=0.0, max_runs=3)]


def test_gemm_ceiling_defaults_to_five_1024_cubed_products_in_the_cases_dtype(monkeypatch):
    """The report calls it a "NumPy 1024^3 matmul" in the case's dtype."""
    seen = []

    def fake_measure(call, synchronize, **settings):
        product = call()
        seen.append((product.shape, product.dtype, settings["min_runs"]))
        return [1.0]

    monkeypatch.setattr(timing, "measure", fake_measure)
    assert timing.gemm_ceiling_gflops("float32") == pytest.approx(2 * 1024 ** 3 / 1e9)
    assert seen == [((1024, 1024), np.dtype("float32"), 5)]


def test_quantile_of_nothing_is_an_error():
    with pytest.raises(ValueError, match=r"^quantile of no values$"):
        timing.quantile([], 0.5)


def test_exactly_ten_percent_is_still_stable():
    # sorted 9 10 11: median 10, q25 9.5, q75 10.5: IQR 1 = 10% of the median (the rule
    # is "more than 10%")
    assert timing.summarize([11.0, 9.0, 10.0]) == timing.Stats(10.0, 1.0, 9.0, 3, False)


def test_all_zero_samples_are_stable_not_a_division_by_zero():
    assert timing.summarize([0.0, 0.0]) == timing.Stats(0.0, 0.0, 0.0, 2, False)


def test_measure_stops_warming_up_and_sampling_exactly_at_its_time_limits():
    # 0.25 s calls (binary-exact): warm-up reaches 0.5 after 2 calls, samples reach
    # min_time 0.5 after 2 more; one call more on either side would be a third
    fake = FakeClock(itertools.repeat(0.25))
    times = timing.measure(fake.call, lambda: None, min_runs=1, min_time=0.5,
                           warmup_time=0.5, clock=fake.clock)
    assert times == [0.25, 0.25] and fake.calls == 4


def test_measure_sums_every_sample_towards_min_time():
    fake = FakeClock([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    times = timing.measure(fake.call, lambda: None, min_runs=1, min_time=0.55,
                           warmup_time=0.0, clock=fake.clock)
    # one warm-up call (0.0); samples 0.1 + 0.2 + 0.3 = 0.6 >= 0.55
    assert times == pytest.approx([0.1, 0.2, 0.3])
