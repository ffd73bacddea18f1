"""The harness's cases as pytest-benchmark benchmarks, grouped by cell, mode and size:

    pytest benchmarks --benchmark-only                       # the default suite's cases
    GRUBENCH_BENCH_SUITE=quick pytest benchmarks --benchmark-only --benchmark-autosave
    GRUBENCH_BENCH_SUITE=reports/cpu/targets/suite.toml \\
        pytest benchmarks --benchmark-only -k lengths_cost     # what variable lengths cost
    pytest benchmarks --benchmark-only --benchmark-compare   # against the last saved run

Every available CPU backend runs in this process (threads pinned by conftest.py); the
first call (compilation) happens before timing. Cases the suite skips for a backend (the
slow numpy reference above its size cap, sizes too large for memory) are skipped here too.
"""
import dataclasses
import os

import numpy as np
import pytest

from grubench import backends, runner, suites
from grubench.case import Case

SUITE = suites.get(os.environ.get("GRUBENCH_BENCH_SUITE", "default"))
BACKENDS, _ = runner.select_backends(SUITE, None)
CASES = [(backend, case) for case in SUITE.cases() for backend in BACKENDS]


def case_id(value):
    if isinstance(value, Case):
        variant = "" if len(value.spec.variants) == 1 else f"-{value.variant}"
        return f"{value.cell}{variant}-{value.mode}-{','.join(map(str, value.size))}"
    return value


def time_case(benchmark, backend_name, case, group, full_lengths=False):
    """Benchmark one case; ``full_lengths`` passes lengths = T for every sequence (the same
    work as none: what is timed is the masking)."""
    reason = (backends.get(backend_name).entry.why_unsupported(case.mode, case.dtype)
              or runner.skip_reason(SUITE, backend_name, case))
    if reason:
        pytest.skip(reason)
    args = case.make_args(SUITE.seed)
    if full_lengths:
        args = dataclasses.replace(args, lengths=np.full(case.B, case.T, np.int64))
    prepared = backends.get(backend_name).prepare(args)
    step = prepared.training_step if case.training else prepared.forward

    def call():
        step()
        prepared.synchronize()

    call()  # compilation and caches stay out of the timing
    benchmark.group = group
    benchmark.extra_info.update(backend=backend_name, flops=case.flops(),
                                T=case.T, B=case.B, I=case.I, H=case.H,
                                lengths="T" if full_lengths else None)
    benchmark(call)


@pytest.mark.parametrize("backend_name, case", CASES, ids=case_id)
def test_case(benchmark, backend_name, case):
    time_case(benchmark, backend_name, case, f"{case_id(case)} {case.dtype}")


GRU_CASES = [(backend, case) for backend, case in CASES if case.cell == "gru"]


@pytest.mark.parametrize("full_lengths", [False, True], ids=["no-lengths", "lengths"])
@pytest.mark.parametrize("backend_name, case", GRU_CASES, ids=case_id)
def test_lengths_cost(benchmark, backend_name, case, full_lengths):
    """Each GRU case with and without lengths, side by side in one group per backend."""
    time_case(benchmark, backend_name, case,
              f"lengths cost: {backend_name} {case_id(case)} {case.dtype}", full_lengths)
