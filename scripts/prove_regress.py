"""Prove the regression gate: run `grubench regress` N times on unchanged code and N times
with a known slowdown injected (GRUBENCH_INJECT_SLOWDOWN), against one baseline recorded
first, and count detections and false alarms.

    python scripts/prove_regress.py --runs 10 --slowdown 1.3 --out reports/regress-proof.md

Targets (issue 6): a 1.3x slowdown detected in >= 9 of 10 runs; false alarms on unchanged
code <= 1 of 10. The baseline is recorded into a temporary file, never over the committed one.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from grubench.files import write_atomic  # noqa: E402
from grubench.regress import SLOWDOWN_ENV  # noqa: E402


def regress(baseline: Path, extra_env: dict, *args: str) -> tuple[int, float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "grubench", "regress", "--baseline",
                           str(baseline), *args], capture_output=True, text=True,
                          env={**os.environ, **extra_env})
    return done.returncode, time.perf_counter() - start, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--slowdown", type=float, default=1.3)
    parser.add_argument("--out", default="reports/regress-proof.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        baseline = Path(scratch) / "baseline.json"
        code, seconds, _ = regress(baseline, {}, "--update")
        if code != 0:
            print("recording the baseline failed", file=sys.stderr)
            return 1
        outcomes = {"unchanged": [], f"slowed {args.slowdown}x": []}
        for run in range(args.runs):
            for label, env in (("unchanged", {}),
                               (f"slowed {args.slowdown}x", {SLOWDOWN_ENV: str(args.slowdown)})):
                code, seconds, table = regress(baseline, env)
                outcomes[label].append((code, seconds))
                print(f"run {run + 1} {label}: exit {code} ({seconds:.0f} s)", flush=True)
    unchanged = outcomes["unchanged"]
    slowed = outcomes[f"slowed {args.slowdown}x"]
    false_alarms = sum(code == 1 for code, _ in unchanged)
    detected = sum(code == 1 for code, _ in slowed)
    walls = sorted(s for _, s in unchanged + slowed)
    report = "\n".join([
        "# grubench regress: detection proof",
        "",
        f"{args.runs} runs each against one baseline recorded at the start, "
        f"default tolerance, suite ci, interleaved in pairs (unchanged, slowed).",
        "",
        "| code | runs | exit 1 (regression) | exit 0 | other |",
        "|---|---|---|---|---|",
        f"| unchanged | {len(unchanged)} | {false_alarms} (false alarms) | "
        f"{sum(c == 0 for c, _ in unchanged)} | {sum(c not in (0, 1) for c, _ in unchanged)} |",
        f"| slowed {args.slowdown}x | {len(slowed)} | {detected} (detected) | "
        f"{sum(c == 0 for c, _ in slowed)} | {sum(c not in (0, 1) for c, _ in slowed)} |",
        "",
        f"Wall time of one regress run: median {walls[len(walls) // 2]:.0f} s, "
        f"max {walls[-1]:.0f} s.",
        "",
    ])
    write_atomic(args.out, report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
