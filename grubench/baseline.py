"""The regression gate's baseline files: one per machine fingerprint in
:data:`BASELINE_DIR`, holding each task's ratio (grubench.calibrated) and the suite they
were measured on, as :func:`task_entry` writes a task (the format of the files recorded
so far)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from grubench.case import Case, Task
from grubench.kernels.cells import cell
from grubench.machine import fingerprint_id

SCHEMA = "grubench.regress/2"
BASELINE_DIR = Path("reports/baseline")


def task_entry(task: Task) -> dict:
    """A gated task as baseline files list it under "suite" and as a worker request
    carries it (the format of the files already recorded, with ``reset_after``)."""
    case = task.case
    return {"backend": task.backend, "cell": case.cell, "mode": case.mode, "T": case.T,
            "B": case.B, "I": case.I, "H": case.H, "reset_after": case.reset_after,
            "variable_lengths": case.variable_lengths, "dtype": case.dtype,
            "threads": task.threads}


def task_of(entry: dict) -> Task:
    """The task of a :func:`task_entry`."""
    case = Case(entry["cell"], entry["T"], entry["B"], entry["I"], entry["H"],
                variant=cell(entry["cell"]).variant_of(entry["reset_after"]),
                mode=entry["mode"], dtype=entry["dtype"],
                variable_lengths=entry["variable_lengths"])
    return Task(case, entry["backend"], entry["threads"])


class BaselineError(Exception):
    """A baseline file that is missing or cannot be read as a regress baseline."""


def baseline_path(fingerprint: dict) -> Path:
    """Where the baseline of a machine of this fingerprint lives (one file per machine)."""
    return BASELINE_DIR / f"regress-{fingerprint_id(fingerprint)}.json"


def load_baseline(path: str | os.PathLike) -> dict:
    """The baseline document; BaselineError naming the path and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise BaselineError(f"baseline {path} does not exist; record one with "
                            f"`python -m grubench regress --update --baseline {path}`")
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BaselineError(f"baseline {path} is not valid JSON: {error}") from error
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise BaselineError(f"baseline {path} is not a grubench regress baseline "
                            f"(expected schema {SCHEMA!r})")
    if not isinstance(document.get("fingerprint"), dict):
        raise BaselineError(f"baseline {path} has no machine 'fingerprint' mapping")
    cases = document.get("cases")
    if not isinstance(cases, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("ratio"), (int, float))
            and not isinstance(v["ratio"], bool) and v["ratio"] > 0
            for v in cases.values()):
        raise BaselineError(f"baseline {path} has no valid 'cases' mapping of key -> "
                            f"{{'ratio': positive number}}")
    return document


def baseline_document(rows: dict[str, dict], suite, machine: dict, fingerprint: dict,
                      tolerance: float) -> dict:
    """The document of a measurement: each measured task's ratio (rows by key), the
    ``suite`` of tasks, the machine and its fingerprint, the tolerance."""
    # A/B rows carry no case_s: their turns time the case against the calibration only
    cases = {key: {"ratio": row["ratio"], "case_s": row.get("case_s")}
             for key, row in rows.items() if row.get("status") == "ok"}
    return {"schema": SCHEMA, "fingerprint": fingerprint, "machine": machine,
            "tolerance": tolerance, "cases": cases, "suite": [task_entry(t) for t in suite]}
