"""The report files grubench writes, read as one run each for the results store.

Three kinds of file are runs: ``results.json`` of ``run``/``compare-cells`` (schema
grubench.results/1, one row per case with its raw per-call times ``samples_s``),
``regress`` baselines (grubench.regress/1 and /2, one normalized ratio per case) and
``training.json`` of ``train`` (one row per dataset, cell and backend). Each becomes a
:class:`Run` whose rows carry a case label, a backend, one headline metric and the whole
original row, so nothing is lost and the trend of any case is one query.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from grubench.kernels.cells import cell
from grubench.tables import case_name

RESULTS_SCHEMA = "grubench.results/1"
#: Baseline schemas: /2 added the machine fingerprint the baseline is valid for.
REGRESS_SCHEMAS = ("grubench.regress/1", "grubench.regress/2")
#: File names (glob patterns) ``history import FOLDER`` picks up, at any depth.
FILE_NAMES = ("results.json", "training.json", "regress-*.json")


@dataclass
class Run:
    key: str                    # sha256 of the document: the same run imported twice is one
    kind: str                   # run, regress or train
    context: dict               # grubench.machine.context() of the run
    suite: dict
    notes: list
    rows: list[dict] = field(default_factory=list)
    source: str | None = None

    @property
    def commit(self) -> str | None:
        return self.context.get("commit")

    @property
    def started_at(self) -> str | None:
        return self.context.get("timestamp")


def machine_name(context: dict) -> str:
    """One line naming the machine (the same words as grubench.machine.short_name)."""
    from grubench.machine import short_name
    return short_name(context)


def machine_fingerprint(context: dict) -> str:
    """A short hash of what makes two machines the same kind for timing: host, CPU, core
    counts and GPUs (not library versions, which are what a history compares)."""
    parts = [context.get("hostname"), context.get("cpu_model"), context.get("cores"),
             context.get("logical_cpus"), [g.get("name") for g in context.get("gpus") or []]]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def document_key(document: dict) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str)
                          .encode()).hexdigest()


def size_label(row: dict) -> str:
    return f"{row['T']},{row['B']},{row['I']},{row['H']}"


def case_label(row: dict) -> str:
    """The case a benchmark row measures, backend aside: cell, variant, mode, size, dtype
    and threads, e.g. 'gru reset_after training 100,16,256,256 float32 t1'."""
    return (f"{case_name(row['cell'], row.get('variant'))} {row['mode']} {size_label(row)} "
            f"{row['dtype']} t{row['threads']}")


def _results_rows(document: dict) -> list[dict]:
    rows = []
    for row in document["results"]:
        rows.append(dict(case=case_label(row), backend=row["backend"], cell=row["cell"],
                         variant=row.get("variant"), mode=row["mode"], T=row["T"],
                         B=row["B"], I=row["I"], H=row["H"], dtype=row["dtype"],
                         threads=row["threads"], status=row["status"], metric="median_s",
                         value=row.get("median_s"), samples=row.get("samples_s"),
                         data={k: v for k, v in row.items() if k != "samples_s"}))
    return rows


def _regress_rows(document: dict) -> list[dict]:
    """One row per case of the baseline: its ratio to the calibration product (what the
    gate compares) as the metric; the case's own seconds stay in data."""
    from grubench.baseline import task_of

    rows = []
    for case in document.get("suite") or []:
        entry = document["cases"].get(task_of(case).key)
        variant = cell(case["cell"]).variant_of(case["reset_after"])
        label = "regress " + case_label({**case, "variant": variant})
        if case.get("variable_lengths"):
            label += " lengths"
        rows.append(dict(case=label, backend=case["backend"], cell=case["cell"],
                         variant=variant, mode=case["mode"], T=case["T"], B=case["B"],
                         I=case["I"], H=case["H"], dtype=case["dtype"],
                         threads=case["threads"], status="ok" if entry else "missing",
                         metric="ratio", value=(entry or {}).get("ratio"),
                         samples=(entry or {}).get("ratios"), data={**case, **(entry or {})}))
    return rows


def _training_rows(document: dict) -> list[dict]:
    rows = []
    for row in document["results"]:
        label = (f"train {row['dataset']} {row['cell']} h{row['hidden']} b{row['batch']} "
                 f"t{row['threads']}")
        rows.append(dict(case=label, backend=row["backend"], cell=row["cell"], variant=None,
                         mode="training", T=None, B=row.get("batch"), I=None,
                         H=row.get("hidden"), dtype=None, threads=row.get("threads"),
                         status="ok", metric="seconds_per_epoch",
                         value=row.get("seconds_per_epoch"),
                         samples=row.get("epoch_seconds"), data=row))
    return rows


def parse(document: object, source: str | None = None) -> Run:
    """A report document as a :class:`Run`; ValueError naming what makes it unreadable."""
    where = source or "document"
    if not isinstance(document, dict):
        raise ValueError(f"{where}: not a grubench report (a JSON object was expected)")
    schema = document.get("schema")
    try:
        if schema == RESULTS_SCHEMA:
            from grubench.report import _row_problem
            for number, row in enumerate(document["results"], 1):
                problem = _row_problem(row)
                if problem:
                    raise ValueError(f"{where}: result {number}: {problem}")
            run = Run(document_key(document), "run", document.get("machine") or {},
                      document.get("suite") or {}, document.get("notes") or [],
                      _results_rows(document), source)
        elif schema in REGRESS_SCHEMAS:
            run = Run(document_key(document), "regress", document.get("machine") or {},
                      {"name": "regress", "tolerance": document.get("tolerance")}, [],
                      _regress_rows(document), source)
        elif schema is None and isinstance(document.get("context"), dict) \
                and isinstance(document.get("results"), list):
            run = Run(document_key(document), "train", document["context"],
                      {"name": "train"}, [], _training_rows(document), source)
        else:
            expected = ", ".join(map(repr, (RESULTS_SCHEMA, *REGRESS_SCHEMAS)))
            raise ValueError(f"{where}: not a grubench report (schema {schema!r}; expected "
                             f"{expected} or a training.json)")
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{where}: a grubench report with a malformed entry "
                         f"({type(error).__name__}: {error})") from None
    return run


def read(path: str | Path) -> Run:
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    return parse(document, str(path))


def find(paths) -> list[Path]:
    """The report files among ``paths``: files as given, folders searched for
    :data:`FILE_NAMES`; ValueError for a path that does not exist or holds none."""
    found = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            inside = sorted(p for name in FILE_NAMES for p in path.rglob(name))
            if not inside:
                raise ValueError(f"{path} holds no grubench report "
                                 f"({', '.join(FILE_NAMES)})")
            found.extend(inside)
        else:
            raise ValueError(f"{path} does not exist")
    return list(dict.fromkeys(found))
