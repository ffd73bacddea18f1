"""A planted results history: report folders of ten commits on two machines, with one
step planted (numba-cpu's GRU inference 50% slower from the seventh commit on, on the
first machine) and hostile text in names that reach the HTML."""
import datetime
import json

import numpy as np
import pytest

from grubench.schema import SCHEMA

STEP_COMMIT_INDEX = 6
STEP_FACTOR = 1.5
STEP_CASE = "gru reset_after inference 20,4,32,32 float32 t1"
HOSTILE = '</script><img src=x onerror="window.__xss=1">'
MACHINES = (("ci-box", "Test CPU A", 2), (f"lab {HOSTILE}", "Test CPU B", 8))
BASE_MEDIAN = {("numba-cpu", "gru"): 1.0e-3, ("numba-cpu", "lstm"): 1.4e-3,
               ("torch-cpu", "gru"): 2.0e-3, ("torch-cpu", "lstm"): 2.6e-3}


def commit_of(index: int) -> str:
    return f"{index:02d}c0ffee{index:02d}ab"


def results_document(index: int, machine: int = 0, seed: int = 0) -> dict:
    """The results.json of commit ``index`` on machine ``machine``: 2 backends x GRU/LSTM,
    3% lognormal run-to-run noise, raw samples around each median."""
    rng = np.random.default_rng(seed * 1000 + index * 10 + machine)
    hostname, cpu, cores = MACHINES[machine]
    when = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc) \
        + datetime.timedelta(hours=index, minutes=machine)
    context = dict(hostname=hostname, platform="Linux-test", cpu_model=cpu, cores=cores,
                   logical_cpus=cores, blas=[], gpus=[], versions={"python": "3.11"},
                   commit=commit_of(index), timestamp=when.isoformat())
    rows = []
    for (backend, cell), median in BASE_MEDIAN.items():
        median *= (1 + machine) * float(np.exp(rng.normal(0, 0.03)))
        if (backend, cell, machine) == ("numba-cpu", "gru", 0) and index >= STEP_COMMIT_INDEX:
            median *= STEP_FACTOR
        samples = sorted(float(median * np.exp(rng.normal(0, 0.05))) for _ in range(7))
        rows.append(dict(
            backend=backend, cell=cell, variant="reset_after" if cell == "gru" else "-",
            mode="inference", T=20, B=4, I=32, H=32, dtype="float32", threads=1,
            status="ok", reason=None, median_s=median, iqr_s=median * 0.05, min_s=samples[0],
            runs=7, baseline="torch-cpu", speedup=None, samples_s=samples,
            machine=f"{hostname} ({cpu}, {cores} cores)", commit=commit_of(index)))
    baseline = {r["cell"]: r["median_s"] for r in rows if r["backend"] == "torch-cpu"}
    for row in rows:
        row["speedup"] = baseline[row["cell"]] / row["median_s"]
    return dict(schema=SCHEMA, machine=context, suite=dict(name="planted"),
                notes=[f"note with {HOSTILE}"], interrupted=False, results=rows)


def write_history(folder, commits: int = 10, machines: int = 2):
    """Report folders folder/m<machine>/c<commit>/results.json; returns ``folder``."""
    for machine in range(machines):
        for index in range(commits):
            path = folder / f"m{machine}" / f"c{index:02d}" / "results.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(results_document(index, machine)))
    return folder


@pytest.fixture
def history_reports(tmp_path):
    return write_history(tmp_path / "reports")


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'history.sqlite'}"
