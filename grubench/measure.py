"""Measuring one case inside a worker process (the "case" and "reference" requests of
grubench.handlers): what each results row's measured columns come from."""
from __future__ import annotations

from grubench import accuracy, memory, timing
from grubench.case import Case
from grubench.prepare import prepare_case


def run_case(backend, request: dict, state: dict) -> dict:
    """Measure one case in this process: compile call, accuracy, timing, memory (by the
    counter the backend's registry entry declares). A stacked or bidirectional case runs
    as its backend runs networks (grubench.prepare)."""
    case = Case.from_row(request["case"])
    prepared = prepare_case(backend, case, request["seed"])
    call = prepared.training_step if case.training else prepared.forward

    row: dict = {}
    row["compile_s"], result = timing.time_call(call, prepared.synchronize)
    if request.get("reference"):
        arrays = accuracy.named_arrays(case.cell, prepared.to_numpy(result), case.training)
        row["max_abs_err"], row["rel_err"], row["worst_output"] = accuracy.compare(
            arrays, accuracy.load(request["reference"]))
    del result

    samples = timing.measure(call, prepared.synchronize, min_runs=request["min_runs"],
                             min_time=request["min_time"])
    stats = timing.summarize(samples)
    row.update(median_s=stats.median_s, iqr_s=stats.iqr_s, min_s=stats.min_s,
               runs=stats.runs, unstable=stats.unstable, samples_s=samples)
    counter = backend.entry.memory
    row["peak_bytes"] = memory.peak_bytes(lambda: (call(), prepared.synchronize()), counter)
    row["peak_counter"] = counter
    row["rss_bytes"] = memory.rss_bytes()
    row["saved_bytes"] = prepared.saved_bytes if case.training else None
    ceilings = state.setdefault("gemm_gflops", {})     # one per dtype and worker
    if case.dtype not in ceilings:
        ceilings[case.dtype] = timing.gemm_ceiling_gflops(case.dtype)
    row["gemm_gflops"] = ceilings[case.dtype]
    row["status"] = "ok"
    return row


def run_reference(_backend, request: dict, _state: dict) -> dict:
    """The float64 reference of a case into request["path"] (grubench.accuracy): a
    worker computes it, so the runner can bound it by the case timeout and kill it."""
    accuracy.write_reference(request["path"], Case.from_row(request["case"]), request["seed"],
                             ignore_lengths=request.get("ignore_lengths", False))
    return dict(status="ok")
