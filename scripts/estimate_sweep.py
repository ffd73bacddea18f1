"""How long would a suite take on N cluster nodes? An estimate from a measured sample.

    python -m grubench run --suite docs/deepbench-sample.toml --backends torch-cpu,numba-cpu \
        --out SAMPLE 2> SAMPLE.progress
    python scripts/estimate_sweep.py SAMPLE SAMPLE.progress --suite deepbench --scale 0.01 --nodes 16

Each sample case's wall time (all its backends) comes from the progress lines' elapsed
seconds; ``wall = a + b * FLOPs`` is fitted by least squares on the relative error; the
suite's cases are then split over the nodes as ``grubench run --spread`` splits them
(grubench.cluster.split_cases), and the busiest node's total is the sweep's time (plus
starting Ray).
"""
import argparse
import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from grubench import schema, suites
from grubench.case import Case
from grubench.cluster import split_cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="the sample run's report folder")
    parser.add_argument("progress", help="the sample run's stderr (progress lines)")
    parser.add_argument("--suite", default="deepbench")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--nodes", type=int, default=16)
    args = parser.parse_args()

    elapsed = [float(m.group(1)) for line in Path(args.progress).read_text().splitlines()
               if (m := re.search(r"\]\s+\d+/\d+\s+([\d.]+)s ", line))]
    rows = json.loads((Path(args.results) / "results.json").read_text())["results"]
    if len(elapsed) != len(rows):
        raise SystemExit(f"{len(elapsed)} progress lines for {len(rows)} rows")
    cases: dict[tuple, list[float]] = {}
    for row, seconds in zip(rows, np.diff([0.0, *elapsed])):
        key = tuple(row[k] for k in schema.CASE_KEY)
        cases.setdefault(key, [0.0, float(row["flops"])])[0] += seconds
    walls, flops = np.array(list(cases.values())).T
    fit = np.vstack([np.ones_like(flops), flops]).T / walls[:, None]
    (a, b), *_ = np.linalg.lstsq(fit, np.ones_like(walls), rcond=None)
    for key, (wall, f) in cases.items():
        print(f"  {key[:8]}: {wall:7.1f} s measured, {a + b * f:7.1f} s fitted")
    print(f"fit: {a:.2f} s + {b * 1e9:.2f} s per GFLOP per case (all its backends)")

    suite = suites.get(args.suite, scale=args.scale)
    estimate = {case: a + b * Case.from_row(dataclasses.asdict(case)).flops()
                for case in suite.cases()}
    total = sum(estimate.values())
    loads = [sum(estimate[c] for c in part) for part in split_cases(suite.cases(), args.nodes)]
    print(f"{args.suite} x{args.scale:g}: {len(estimate)} cases; one node {total / 60:.1f} min; "
          f"{args.nodes} nodes (--spread): busiest {max(loads) / 60:.1f} min, least "
          f"{min(loads) / 60:.1f} min (an even split: {total / args.nodes / 60:.1f} min; "
          f"the largest case alone: {max(estimate.values()) / 60:.1f} min)")


if __name__ == "__main__":
    main()
