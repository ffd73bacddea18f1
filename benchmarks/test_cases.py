"""The harness's cases as pytest-benchmark benchmarks, grouped by cell, mode and size:

    pytest benchmarks --benchmark-only                       # the default suite's cases
    GRUBENCH_BENCH_SUITE=quick pytest benchmarks --benchmark-only --benchmark-autosave
    pytest benchmarks --benchmark-only --benchmark-compare   # against the last saved run

Every available CPU backend runs in this process (threads pinned by conftest.py); the
first call (compilation) happens before timing. Cases the suite skips for a backend (the
slow numpy reference above its size cap, sizes too large for memory) are skipped here too.
"""
import os

import pytest

from grubench import backends, runner, suites
from grubench.problems import Problem

SUITE = suites.get(os.environ.get("GRUBENCH_BENCH_SUITE", "default"))
BACKENDS, _ = runner.select_backends(SUITE, None)
CASES = [(backend, case) for case in SUITE.cases() for backend in BACKENDS]


def case_id(value):
    if isinstance(value, suites.CaseSpec):
        variant = "" if value.variant == "-" else f"-{value.variant}"
        return f"{value.cell}{variant}-{value.mode}-{','.join(map(str, value.size))}"
    return value


@pytest.mark.parametrize("backend_name, case", CASES, ids=case_id)
def test_case(benchmark, backend_name, case):
    problem = Problem(case.cell, *case.size, dtype=case.dtype,
                      reset_after=case.variant != "reset_before")
    training = case.mode == "training"
    reason = runner.skip_reason(SUITE, backend_name, problem, training)
    if reason:
        pytest.skip(reason)
    prepared = backends.get(backend_name).prepare(problem.make_args(SUITE.seed,
                                                                    with_grads=training))
    step = prepared.training_step if training else prepared.forward

    def call():
        step()
        prepared.synchronize()

    call()  # compilation and caches stay out of the timing
    benchmark.group = f"{case_id(case)} {case.dtype}"
    benchmark.extra_info.update(backend=backend_name, flops=problem.flops(training),
                                T=problem.T, B=problem.B, I=problem.I, H=problem.H)
    benchmark(call)
