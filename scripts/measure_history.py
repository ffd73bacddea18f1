"""Measure the results history on this machine: `grubench history import reports/` and
`grubench publish` wall times (fresh SQLite database, fresh processes, as a user runs them),
and the database's size per 1,000 rows, by importing copies of one results.json (each copy
a distinct run: its timestamp shifted) until at least --rows rows are stored.

    python scripts/measure_history.py                       # the committed reports
    python scripts/measure_history.py --results reports/latest/results.json  # with samples
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(*argv, env) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "grubench", *argv], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(ROOT / "reports/cpu/default/results.json"))
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    from grubench.history import documents
    from grubench.history.store import Store

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "history.sqlite"
        env = {**os.environ, "GRUBENCH_DB": str(path)}
        seconds_import = timed("history", "import", str(ROOT / "reports"), env=env)
        seconds_publish = timed("publish", "--out", f"{scratch}/site", env=env)
        store = Store(f"sqlite:///{path}")
        runs, rows = store.counts()
        print(f"history import reports/: {runs} runs, {rows} rows, {seconds_import:.2f} s; "
              f"publish: {seconds_publish:.2f} s")

        sized = Path(scratch) / "sized.sqlite"
        store = Store(f"sqlite:///{sized}")
        empty = sized.stat().st_size
        document = json.loads(Path(args.results).read_text())
        stored = 0
        for copy_number in range(10 ** 6):
            if stored >= args.rows:
                break
            shifted = copy.deepcopy(document)
            shifted["machine"]["timestamp"] = f"2000-01-01T00:00:{copy_number:06d}"
            run = documents.parse(shifted)
            store.add(run)
            stored += len(run.rows)
        store.close()
        samples = sum(len(r.get("samples_s") or []) for r in document["results"])
        per_thousand = (sized.stat().st_size - empty) / stored * 1000
        print(f"{args.results}: {len(document['results'])} rows, {samples} raw samples in "
              f"all; {stored} rows stored: {per_thousand / 2 ** 20:.2f} MiB per 1,000 rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
