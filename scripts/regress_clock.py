"""Which clock the regress gate should time with on a shared machine: the spread of the
gate's per-turn ratio (case / calibration product, median of 5 interleaved pairs) over 10
turns, timed with wall time, process CPU time and thread CPU time, in one pinned process.

    python scripts/regress_clock.py        # docs/regress-clock.md has a run
"""
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from grubench import calibrated, machine, regress, timing  # noqa: E402
from grubench.backends import get  # noqa: E402
from grubench.threads import pin_threads  # noqa: E402


def main() -> None:
    backend = get("numba-cpu")
    if not backend.available:
        sys.exit(f"numba-cpu unavailable: {backend.why_unavailable}")
    pin_threads(1)
    case = next(t for t in regress.CI_SUITE if t.case.variable_lengths)
    forward = backend.prepare(case.case.make_args(seed=0, with_grads=True)).forward
    forward()
    calibration = calibrated.calibration_workload(case.case)
    print(f"{machine.short_name(machine.context())}, ISA {machine.isa_level()}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; case {case.key}")
    for clock in (time.perf_counter, time.process_time, time.thread_time):
        turns = [statistics.median(timing.interleaved_ratios(forward, calibration, 5,
                                                             clock=clock))
                 for _ in range(10)]
        print(f"{clock.__name__:>13}: {' '.join(f'{t:.3f}' for t in turns)}  "
              f"max/min {max(turns) / min(turns):.2f}")


if __name__ == "__main__":
    main()
