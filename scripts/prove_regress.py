"""Prove the A/B regression gate (`grubench regress --against`): N A/B runs of unchanged
code against itself (HEAD checked out and installed apart, as the gate does), on this
machine and with its ISA restricted to AVX2, and N runs with a slowdown injected in the
current side only (GRUBENCH_INJECT_SLOWDOWN reaches the current side's worker; the base
side's environment drops it). Counts false alarms and detections and records the A/B noise
on unchanged code, from which the default tolerance is sized.

    python scripts/prove_regress.py --runs 10 --out reports/regress-proof.md

Targets: false alarms <= 1 in 10 on unchanged code (native and AVX2); a 1.3x slowdown
detected >= 9 in 10. One base install serves every run of the proof (the runs after the
first find both sides' numba caches warm); the cold-cache cost of one gate run is measured
apart (README, "Gating CI on performance").
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from grubench import ab, calibrated, machine, regress, worker  # noqa: E402
from grubench.files import write_atomic  # noqa: E402

#: The machine's ISA restricted to AVX2 for numba, OpenBLAS, MKL and oneDNN (both sides).
AVX2_ENV = {"NUMBA_CPU_NAME": "haswell", "OPENBLAS_CORETYPE": "Haswell",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def conditions(slowdown: float) -> list[tuple[str, dict, bool]]:
    """(label, environment for both sides, whether a regression is expected)."""
    slowed = {calibrated.SLOWDOWN_ENV: str(slowdown)}
    return [("unchanged, native ISA", {}, False),
            (f"slowed {slowdown}x, native ISA", slowed, True),
            ("unchanged, AVX2", AVX2_ENV, False),
            (f"slowed {slowdown}x, AVX2", {**AVX2_ENV, **slowed}, True)]


def run_once(site: Path, env: dict, args) -> tuple[list[regress.Verdict], float]:
    with worker.inherited_env(env):
        start = time.perf_counter()
        verdicts = regress.ab_verdicts({c.key: c for c in regress.CI_SUITE}, site,
                                       args.rounds, args.pairs, args.tolerance)
        return verdicts, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="A/B runs per condition")
    parser.add_argument("--slowdown", type=float, default=1.3)
    parser.add_argument("--rounds", type=int, default=regress.AB_ROUNDS)
    parser.add_argument("--pairs", type=int, default=regress.AB_PAIRS)
    parser.add_argument("--tolerance", type=float, default=regress.AB_TOLERANCE)
    parser.add_argument("--conditions", default="0,1,2,3",
                        help="which conditions to run, by index (see conditions())")
    parser.add_argument("--out", default="reports/regress-proof.md")
    args = parser.parse_args()
    chosen = [conditions(args.slowdown)[int(i)] for i in args.conditions.split(",")]
    results: dict[str, list[tuple[int, float, list[regress.Verdict]]]] = {}
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with ab.sigterm_as_interrupt(), ab.base_install("HEAD") as (commit, site):
        # Runs alternate between the conditions, so a busy stretch of the machine is
        # shared among them rather than falling on one.
        for run in range(args.runs):
            for label, env, _ in chosen:
                verdicts, seconds = run_once(site, env, args)
                code = regress.exit_code(verdicts)
                results.setdefault(label, []).append((code, seconds, verdicts))
                print(f"run {run + 1} {label}: exit {code} ({seconds:.0f} s)", flush=True)
                # rewritten after every run: a proof cut short keeps what it measured
                write_atomic(args.out, render(results, chosen, commit, args, started,
                                              load_before))
    print(Path(args.out).read_text())
    return 0


def render(results, chosen, commit: str, args, started: str, load_before) -> str:
    context = machine.context()
    lines = [
        "# grubench regress --against: proof",
        "",
        f"`python scripts/prove_regress.py --runs {args.runs} --conditions {args.conditions}` "
        f"({sum(map(len, results.values()))} of {args.runs * len(chosen)} runs done) "
        f"on {started}: {machine.short_name(context)}, ISA "
        f"{machine.isa_level()}, suite ci (7 cases, 1 thread, float32), {args.rounds} turns "
        f"per side of {args.pairs} pairs, tolerance {args.tolerance:.0%}; base = current = "
        f"{commit[:12]} (unchanged code, installed apart as the gate does). Load average "
        f"{load_before[0]:.1f} at the start and {os.getloadavg()[0]:.1f} at the end on 2 "
        f"cores (the machine is shared with other jobs).",
        "",
        "| condition | runs | exit 1 (regression) | exit 0 | target | median s/run |",
        "|---|---|---|---|---|---|",
    ]
    for label, _, expected in chosen:
        runs = results.get(label, [])
        flagged = sum(code == 1 for code, _, _ in runs)
        target = (f">= {-(-9 * len(runs) // 10)} detected" if expected
                  else f"<= {max(1, len(runs) // 10)} false alarm")
        seconds = statistics.median(s for _, s, _ in runs) if runs else float("nan")
        lines.append(f"| {label} | {len(runs)} | {flagged} | {len(runs) - flagged} | "
                     f"{target} | {seconds:.0f} |")
    lines += ["", "Noise of the first measurement on unchanged code (change = current / base "
              "- 1, every case of every unchanged run; cases beyond the tolerance are "
              "re-measured before any verdict):", "",
              "| condition | cases | median abs. change | 90th percentile | max "
              "| beyond tolerance |",
              "|---|---|---|---|---|---|"]
    for label, _, expected in chosen:
        changes = sorted(abs(first_change(v)) for _, _, verdicts in results.get(label, [])
                         for v in verdicts if first_change(v) is not None)
        if expected or not changes:
            continue
        beyond = sum(c > args.tolerance for c in changes)
        lines.append(f"| {label} | {len(changes)} | {statistics.median(changes):.1%} | "
                     f"{changes[int(0.9 * (len(changes) - 1))]:.1%} | {changes[-1]:.1%} | "
                     f"{beyond} |")
    lines += ["", "Detected slowdowns, measured change of the slowed cases (after the "
              "re-measurement):", "", "| condition | cases | min | median | max |",
              "|---|---|---|---|---|"]
    for label, _, expected in chosen:
        changes = sorted(v.change for _, _, verdicts in results.get(label, [])
                         for v in verdicts if v.change is not None)
        if expected and changes:
            lines.append(f"| {label} | {len(changes)} | {changes[0]:+.1%} | "
                         f"{statistics.median(changes):+.1%} | {changes[-1]:+.1%} |")
    lines += ["", "The first run of each ISA compiled both sides' kernels (cold numba caches); "
              "the base install then served every later run. The tolerance sits above the "
              "90th percentile of the first-measurement noise; its tail is why a suspect "
              "is measured again (both sides, twice the turns) before any verdict."]
    return "\n".join(lines) + "\n"


def first_change(verdict: regress.Verdict) -> float | None:
    """The change of a case's first measurement (before any re-measurement)."""
    return verdict.change if verdict.first_change is None else verdict.first_change


if __name__ == "__main__":
    sys.exit(main())
