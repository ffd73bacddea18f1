"""Running a suite: cases to workers, rows to a pandas DataFrame.

``run_suite(...)`` measures every case of a suite on the selected backends, one worker
process per (backend, threads), and returns one row per case. At each thread count the
backends' workers take turns case by case (case 1 on every backend, then case 2, ...), so a
drift in the machine's speed during a run weighs on every backend of a case alike, and
ratios between backends stay side by side; one worker measures at a time (two would share
the cores), the others wait on their pipes (their OpenMP pools passive; an OpenBLAS pool at
threads > 1 may still spin briefly after its last call). Row statuses:

* ``ok``: measured;
* ``error``: the backend raised (reason = the exception);
* ``crashed`` / ``timeout``: the worker died or hung (reason says how); the run goes on
  with a fresh worker;
* ``unavailable``: a backend named explicitly that cannot run here (reason = why). The
  default selection leaves unavailable backends out and lists them in ``attrs["notes"]``;
* ``unsupported``: a mode, dtype or network the backend cannot run (training on an
  inference-only library): declared in its registry entry, or raised as
  NotImplementedError;
* ``skipped``: not attempted: too large for the available memory (checked before
  anything is allocated), or a slow backend above its suite's size cap (the ``numpy``
  oracle times only small cases).

What the numbers mean (choices made here):

* ``compile_s``: the case's first call in its worker, JIT and caches included; a kernel
  already compiled for an earlier case of the same worker compiles no more.
* ``median_s`` etc.: grubench.timing (warm-up, then at least ``min_runs`` runs and
  ``min_time`` seconds); ``unstable`` when IQR/median > 10%.
* ``peak_bytes``: grubench.memory, one extra call after timing; ``expected_alloc_bytes``
  is what that call should allocate (Case.expected_bytes less Case.input_bytes).
* accuracy: against the float64 reference (grubench.accuracy), computed once per
  (case, seed) by a reference worker while the case's worker waits, up to a FLOP
  cap and within the case timeout (else ``note`` says why).
* a backend whose entry ignores lengths (``torch-cpu-padded``: the padded batch, every
  sequence run to T) runs only the variable-length cases (on full-length ones it is its
  unpadded twin), and its accuracy is taken against the reference run to T, which is
  what it computes (the row's note says so): ignoring lengths is its definition, not an
  error.
* ``gflops`` counts the input projection (Case.flops); ``gflops_recurrent`` is
  DeepBench's recurrent-only figure; ``gemm_fraction`` divides by the GEMM ceiling the
  same worker measured; ``speedup`` = baseline median / median on the same case.
* The ``numpy`` backend is the exact oracle, a step-at-a-time loop: suites time it only
  on small cases (``Suite.slow_backends``) so it cannot eat the default run's 2 minutes.

Ctrl-C, SIGTERM and SIGHUP stop the run and keep the rows measured so far
(``attrs["interrupted"]``; ``attrs["exit_code"]`` = 128 + the signal's number); the report
is written whatever the moment, and no worker or scratch folder is left behind
(grubench.interrupts).
``attrs`` also holds ``machine`` (grubench.machine.context) and ``suite``.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pandas as pd

from grubench import backends as registry
from grubench import interrupts, machine, report, suites
from grubench.accuracy import ReferenceCache, ReferenceSkipped
from grubench.case import NETWORK_DEFAULTS, Case, Task, network_fields
from grubench.files import check_writable_dir, exclusive_dir
from grubench.kernels.contract import available_memory_bytes, format_bytes
from grubench.progress import Progress
from grubench.schema import CASE_KEY, COLUMNS
from grubench.worker import Worker, WorkerFailed

#: Memory a case may plan to use, as a fraction of what is available now.
MEMORY_HEADROOM = 0.8


def select_backends(suite: suites.Suite, names: list[str] | None) -> tuple[list[str], list[str]]:
    """(backend names to run, notes). Explicit names are validated (ValueError with the
    valid names) and kept even when unavailable; the default selection is the suite's
    list, else every registered backend on the suite's device, available here."""
    registry.load_plugins()
    valid = registry.names()
    if names:
        return list(suites.check_names("backend", names, valid)), []
    candidates = suite.backends or [n for n in valid
                                    if suite.device in (None, registry.get(n).device)]
    chosen, notes = [], []
    for name in candidates:
        backend = registry.get(name)
        if backend.available:
            chosen.append(name)
        else:
            notes.append(f"{name} left out: {backend.why_unavailable}")
    return chosen, notes


def skip_reason(suite: suites.Suite, backend: str, case: Case) -> str | None:
    """Why a case is not attempted (too large for memory, over a slow backend's cap), or
    None."""
    need = case.expected_bytes()
    have = available_memory_bytes()
    if need > MEMORY_HEADROOM * have:
        return (f"too large for memory: needs about {format_bytes(need)}, "
                f"{format_bytes(have)} available")
    cap = suite.slow_backends.get(backend)
    if cap is not None and case.flops() > cap:
        return (f"{backend} is timed only up to {cap:.0e} FLOPs in suite {suite.name} "
                f"(it is the slow reference)")
    return None


def case_row(backend: str, case: Case, threads: int, suite: suites.Suite,
             context: dict) -> dict:
    """A results row before measuring: what is measured, where, and at which commit."""
    return dict(Task(case, backend, threads).as_row(), seed=suite.seed, baseline=suite.baseline,
                machine=machine.short_name(context), commit=context.get("commit"))


def show_progress(progress: Progress, row: dict, where: str = "") -> None:
    """One row done: the progress line names it and its outcome."""
    outcome = row["status"]
    if outcome == "ok":
        outcome = f"{row['median_s'] * 1e3:.3g} ms"
    case = Case.from_row(row)
    network = "".join(f" {part}" for part in case.network_parts())
    progress.update(f"{where}{row['backend']} t{row['threads']} {row['cell']} {row['mode']} "
                    f"{case.label()}{network}", outcome)


def _measure_backend(backend: str, threads: int, cases, suite: suites.Suite,
                     references: ReferenceCache, log_dir: Path, progress: Progress,
                     context: dict):
    """Rows of one backend at one thread count; a generator so that Ctrl-C keeps the
    rows already yielded."""
    worker = None
    version = None
    try:
        for case in cases:
            row = case_row(backend, case, threads, suite, context)
            entry = registry.get(backend).entry
            unsupported = entry.why_unsupported(case.mode, case.dtype, case.is_network)
            reason = skip_reason(suite, backend, case)
            if unsupported:
                row.update(status="unsupported", reason=unsupported)
            elif reason:
                row.update(status="skipped", reason=reason)
            else:
                try:
                    if worker is None:
                        worker = Worker(backend, threads, log_dir / f"{backend}-{threads}.log",
                                        suite.case_timeout)
                        version = worker.hello.get("backend_version")
                        if worker.hello.get("code_paths"):        # under --isa
                            version = f"{version} [{worker.hello['code_paths']}]"
                    if not worker.hello["available"]:
                        row.update(status="unavailable", reason=worker.hello["reason"])
                    else:
                        try:
                            reference = str(references.ensure(case, suite.seed,
                                                              entry.ignores_lengths))
                            if entry.ignores_lengths:
                                row["note"] = IGNORES_LENGTHS_NOTE
                        except ReferenceSkipped as skipped:
                            reference, row["note"] = None, str(skipped)
                        row.update(worker.request(
                            dict(case=row, seed=suite.seed, reference=reference,
                                 min_runs=suite.min_runs, min_time=suite.min_time),
                            suite.case_timeout))
                except WorkerFailed as failure:
                    worker = None
                    row.update(status=failure.status, reason=failure.reason)
            row["backend_version"] = version
            show_progress(progress, row)
            yield row
    finally:
        if worker is not None:
            worker.close(kill=True)


def close_all(streams) -> None:
    for stream in streams:
        stream.close()


IGNORES_LENGTHS_NOTE = ("ignores lengths (every sequence run to T): accuracy against the "
                        "reference run to T")


def runs(backend: str, case: Case) -> bool:
    """Whether ``backend`` has a row for ``case``: a backend that ignores lengths has one
    only for variable-length cases."""
    return case.variable_lengths or not registry.get(backend).entry.ignores_lengths


def row_order(suite: suites.Suite, chosen: list[str], cases) -> list[tuple]:
    """(threads, case, backend) of each row :func:`measure_here` yields, in its order."""
    return [(threads, case, backend) for threads in suite.threads for case in cases
            for backend in chosen if runs(backend, case)]


def measure_here(suite: suites.Suite, chosen: list[str], cases, context: dict,
                 progress: Progress):
    """Rows of ``cases`` on every backend in ``chosen`` at each of the suite's thread
    counts (in :func:`row_order`), measured on this machine: one worker per (backend,
    threads), the backends taking turns case by case. A generator (close it to end the
    workers early); the local run and a cluster node (grubench.cluster) both measure
    through it."""
    with tempfile.TemporaryDirectory(prefix="grubench-") as scratch:
        interrupts.remove_on_exit(scratch)      # even when a second signal ends the run
        references = ReferenceCache(scratch, timeout=suite.case_timeout)
        try:
            for n_threads in suite.threads:
                streams = {backend: _measure_backend(
                    backend, n_threads, [c for c in cases if runs(backend, c)], suite,
                    references, Path(scratch), progress, context) for backend in chosen}
                try:
                    for case in cases:          # each stream: one row per case it runs
                        for backend, stream in streams.items():
                            if runs(backend, case):
                                yield next(stream)
                finally:
                    close_all(streams.values())         # their workers
        finally:
            references.close()


def add_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """Analytic and derived columns: parameters, expected bytes, FLOPs, GFLOP/s (input
    projection counted, Case.flops; DeepBench's recurrent-only figure as
    gflops_recurrent), fraction of the worker's GEMM ceiling, timesteps/s and speedup
    against the row's baseline backend on the same case (baseline median / median)."""
    frame = frame.copy()
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    network = [network_fields(row) for row in          # rows made without them
               frame[list(NETWORK_DEFAULTS)].to_dict("records")]
    for name in NETWORK_DEFAULTS:
        frame[name] = pd.Series([fields[name] for fields in network], index=frame.index,
                                dtype=object)
    cases = [Case.from_row(row) for _, row in frame.iterrows()]
    frame["parameters"] = [c.parameter_count for c in cases]
    frame["expected_bytes"] = [c.expected_bytes() for c in cases]
    frame["expected_alloc_bytes"] = [c.expected_bytes() - c.input_bytes() for c in cases]
    frame["flops"] = [c.flops() for c in cases]
    recurrent = pd.Series([c.recurrent_flops() * (3 if c.training else 1) for c in cases],
                          index=frame.index)
    median = pd.to_numeric(frame["median_s"], errors="coerce")
    frame["gflops"] = frame["flops"] / median / 1e9
    frame["gflops_recurrent"] = recurrent / median / 1e9
    frame["gemm_fraction"] = frame["gflops"] / pd.to_numeric(frame["gemm_gflops"],
                                                             errors="coerce")
    frame["timesteps_per_s"] = frame["T"] / median
    baseline_rows = frame[(frame["backend"] == frame["baseline"]) & (frame["status"] == "ok")]
    # a ratio is taken on one machine: rows of a run over several machines (grubench.cluster)
    # find their baseline on their own machine
    def key(r):
        return (*(r[k] for k in CASE_KEY), r["machine"])
    baseline_median = {key(r): r["median_s"] for _, r in baseline_rows.iterrows()}
    frame["speedup"] = [baseline_median.get(key(r), float("nan"))
                        / m for (_, r), m in zip(frame.iterrows(), median)]
    return frame[list(COLUMNS)]


def plan(suite: str | suites.Suite = "default", *, backends: list[str] | None = None,
         cells=None, variants=None, modes=None, sizes=None, dtype: str | None = None,
         threads=None, min_runs: int | None = None, min_time: float | None = None,
         baseline: str | None = None, scale: float = 1.0, case_timeout: float | None = None,
         layers: int | None = None, directions: int | None = None, lengths: str | None = None
         ) -> tuple[suites.Suite, list[str], list[str]]:
    """What a run measures: the suite (a built-in name, a .toml path or a
    :class:`grubench.suites.Suite`) with the keyword arguments' overrides, validated; the
    backends to run; the run's notes."""
    if not isinstance(suite, suites.Suite):
        suite = suites.get(suite, scale=scale)
    if cells is not None:
        suites.check_names("cell", cells, suites.CELLS)
    if variants is not None:
        suites.check_names("variant", variants, suites.VARIANTS)
    if modes is not None:
        suites.check_names("mode", modes, suites.MODES)
    if dtype is not None:
        suites.check_names("dtype", [dtype], suites.DTYPES)
    suites.check_network(layers, directions, lengths)
    suite = suite.with_overrides(cells=cells, variants=variants, modes=modes, sizes=sizes,
                                 layers=layers, directions=directions, lengths=lengths,
                                 dtype=dtype, threads=tuple(threads) if threads else None,
                                 min_runs=min_runs, min_time=min_time, baseline=baseline,
                                 case_timeout=case_timeout)
    chosen, notes = select_backends(suite, backends)
    if not any(case.variable_lengths for case in suite.cases()):
        notes += [f"{name} has no cases: it runs only variable-length cases (--lengths)"
                  for name in chosen if registry.get(name).entry.ignores_lengths]
    suites.check_names("baseline backend", [suite.baseline], registry.names())
    if suite.baseline not in chosen:
        notes.append(f"no speedups: the baseline {suite.baseline} is not among the backends run")
    return suite, chosen, notes


def holding(out: str | Path | None):
    """The report folder ``out`` checked writable and held for the run (a second run into
    it is refused: grubench.files.exclusive_dir); nothing to hold without one."""
    return contextlib.nullcontext() if out is None else exclusive_dir(check_writable_dir(out))


def run_suite(suite: str | suites.Suite = "default", *, out: str | Path | None = None,
              progress: bool = True, **settings) -> pd.DataFrame:
    """Measure a suite on this machine; returns one row per case (columns
    :data:`COLUMNS`). ``suite`` and ``settings``: :func:`plan`'s.

    With ``out``, the folder is checked writable before anything is measured, held for
    the run (:func:`holding`) and receives the report files
    (grubench.report.write_report); a report that cannot be written (a full disk) leaves
    the files already there whole and says why in ``attrs["report_error"]``. On a Ray
    cluster's nodes instead: grubench.cluster.run_suite."""
    suite, chosen, notes = plan(suite, **settings)
    with holding(out):
        return _run(suite, chosen, notes, out, progress)


def _run(suite: suites.Suite, chosen: list[str], notes: list[str], out, progress: bool
         ) -> pd.DataFrame:
    context = machine.context()
    cases = suite.cases()
    bar = Progress(len(row_order(suite, chosen, cases)), enabled=progress)
    rows: list[dict] = []
    interrupted = False
    with interrupts.handled() as signals:
        measured = measure_here(suite, chosen, cases, context, bar)
        try:
            with interrupts.raising():
                for row in measured:
                    rows.append(row)
        except KeyboardInterrupt as stop:
            interrupted = True
            by = f" by {stop}" if isinstance(stop, interrupts.Interrupted) else ""
            notes.append(f"interrupted{by} after {len(rows)} of {bar.total} cases")
        finally:
            measured.close()        # its workers and scratch folder
            bar.finish()
        frame = results_frame(rows, suite, context, notes, interrupted)
        if out is not None:
            try:
                report.write_report(frame, out)     # a signal now waits until it is written
            except OSError as error:    # a full disk, a quota: the tables still print
                frame.attrs["report_error"] = (f"cannot write the report to {out}: "
                                               f"{error.strerror or error}")
    # The exit status a command gives: 128 + the signal that stopped the run, if any.
    frame.attrs["exit_code"] = signals.exit_code
    return frame


def results_frame(rows: list[dict], suite: suites.Suite, context: dict, notes: list[str],
                  interrupted: bool) -> pd.DataFrame:
    """The rows as a DataFrame with the derived columns and the run's attrs."""
    frame = add_derived(pd.DataFrame(rows, columns=list(COLUMNS)))
    frame.attrs.update(machine=context, notes=notes, interrupted=interrupted,
                       suite=dict(name=suite.name, description=suite.description,
                                  baseline=suite.baseline, min_runs=suite.min_runs,
                                  min_time=suite.min_time, threads=list(suite.threads)))
    return frame
