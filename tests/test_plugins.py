"""A backend added from outside the package, as a developer adds one: one module and one
registry line (tests/plugins/), loaded through GRUBENCH_PLUGINS. Each is listed by
`grubench list`, measured by `grubench run` in its worker processes, reported in every
report file and picked up by the conformance suite; the inference-only one is never asked
to train, and every training case of it is reported unsupported with its declared reason.

Everything goes through public behaviour: the command line in processes of their own and
the conformance suite run by pytest in another, with the environment a user would set."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugins import toy_inference_backend
from tests.test_conformance import LENGTHS, VARIANTS

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = "tests.plugins.toy_backend,tests.plugins.toy_inference_backend"
TOYS = ("toy", "toy-inference")


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``args`` with the toy plugins loaded and the repository importable."""
    env = {**os.environ, "GRUBENCH_PLUGINS": PLUGINS,
           "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT),
                                                       os.environ.get("PYTHONPATH"))))}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def grubench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = run([sys.executable, "-m", "grubench", *args], cwd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_listed(tmp_path):
    listing = grubench("list", cwd=tmp_path).stdout
    assert re.search(r"^  toy +\[cpu\] toy backend: the NumPy reference \(available\)$",
                     listing, re.M), listing
    assert re.search(r"^  toy-inference +\[cpu\] .*\(available; does not run: training\)$",
                     listing, re.M), listing


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The report folder of one tiny run of both toys, inference and training."""
    folder = tmp_path_factory.mktemp("toy-run")
    grubench("run", "--backends", ",".join(TOYS), "--suite", "quick", "--size", "3,2,2,3",
             "--cells", "gru,lstm", "--variant", "reset_after", "--mode", "both",
             "--dtype", "float32", "--min-runs", "1", "--min-time", "0.01",
             "--no-progress", "--no-history", "--out", "out", cwd=folder)
    return folder / "out"


def test_measured_in_workers(report):
    rows = json.loads((report / "results.json").read_text())["results"]
    found = {(r["backend"], r["cell"], r["mode"]): r for r in rows}
    assert set(found) == {(b, c, m) for b in TOYS for c in ("gru", "lstm")
                          for m in ("inference", "training")}
    for (backend, _cell, mode), row in found.items():
        if backend == "toy-inference" and mode == "training":
            assert row["status"] == "unsupported"
            assert row["reason"] == toy_inference_backend.WHY
            assert row["median_s"] is None
            continue
        # measured: its worker loaded the plugin, timed it and checked it against the
        # float64 reference
        assert row["status"] == "ok", row
        assert row["backend_version"] == f"{backend} 1.0"
        assert row["runs"] >= 1 and row["median_s"] > 0
        assert 0 < row["rel_err"] < 1e-6


def test_reported(report):
    with open(report / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted(r["backend"] for r in rows) == sorted(TOYS * 4)
    markdown = (report / "report.md").read_text()
    for backend in TOYS:                   # a row of each time table
        assert re.search(rf"^\| {backend} \| \*?[\d.]+", markdown, re.M), markdown
    assert re.search(rf"^\| toy-inference \| unsupported \| 2 \| {toy_inference_backend.WHY} \|$",
                     markdown, re.M), markdown


def test_conformance_tested(tmp_path):
    """The conformance suite, with the plugins loaded, runs every case of both toys; the
    inference-only one's training cases are skipped with its declared reason."""
    done = run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                str(ROOT / "tests" / "test_conformance.py"), "-k", "toy"], ROOT)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    per_mode = len(VARIANTS) * 2 * len(LENGTHS)       # variants x dtypes x lengths
    assert re.search(rf"\b{3 * per_mode} passed, {per_mode} skipped\b", done.stdout), done.stdout
    assert f"toy-inference declares training in float32 unsupported: {toy_inference_backend.WHY}" \
        in done.stdout
