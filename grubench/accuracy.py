"""Accuracy of a case: its outputs (and, in training, every gradient) against the float64
NumPy reference on the same inputs cast to float64.

The reference is slow (one NumPy step at a time), so it is computed once per
(case, seed) into a cache folder that every worker of a run reads, and only for
cases of at most ``REFERENCE_MAX_FLOPS`` training FLOPs: above that the row's
accuracy is left empty and its note says why. (Truncating T would compare a different
case from the one timed; a cap keeps every reported error exact.) Its own worker
computes it, bounded by the case timeout like the case itself: FLOPs do not bound its
time (a long sequence of tiny steps costs Python's per-step overhead).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path

import numpy as np

from grubench.files import write_atomic
from grubench import backends
from grubench.case import Case
from grubench.kernels.cells import cell
from grubench.kernels.contract import RNNArgs
from grubench.prepare import case_inputs, prepare_inputs
from grubench.tolerances import (FLOAT64, FORWARD_REL_ERR_TARGET, GRADIENT_REL_ERR_TARGET,
                                  errors)

#: Largest case (Case.flops(training=True)) whose float64 reference is computed:
#: about 1 to 3 s of NumPy per case on one core of this machine.
REFERENCE_MAX_FLOPS = 6e10

_ARRAY_FIELDS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "dy", "dh_n", "dc_n")


def as_float64(args):
    """The same inputs (RNNArgs) cast to float64."""
    cast = {name: getattr(args, name).astype(np.float64) for name in _ARRAY_FIELDS
            if getattr(args, name) is not None}
    return dataclasses.replace(args, **cast)


def named_arrays(cell_name: str, result, training: bool) -> dict[str, np.ndarray]:
    """A NumPy result of forward() (outputs) or training_step() ((outputs, grads)) as
    {"y", "h_n"[, "c_n"], "grad_x", "grad_h0", ...} (the cell's outputs, CellSpec.outputs)."""
    outputs, grads = result if training else (result, {})
    named = dict(zip(cell(cell_name).outputs, outputs))
    named.update({f"grad_{key}": value for key, value in grads.items()})
    return named


def compare(arrays: dict[str, np.ndarray], reference: dict[str, np.ndarray]
            ) -> tuple[float, float, str]:
    """(largest max-abs error, largest relative error, name of the array with the largest
    relative error) over the reference's arrays."""
    missing = sorted(set(reference) - set(arrays))
    if missing:
        raise ValueError(f"result lacks {', '.join(missing)}")
    worst_abs, worst_rel, worst_name = 0.0, -1.0, ""
    for name, ref in reference.items():
        max_abs, rel = errors(arrays[name], ref)
        worst_abs = max(worst_abs, max_abs)
        if rel > worst_rel:
            worst_rel, worst_name = rel, name
    return worst_abs, worst_rel, worst_name


def rel_err_target(dtype: str, training: bool) -> float:
    """The relative error a case should stay under (grubench.tolerances): float32 has the
    project's targets, forward and, when gradients are compared too, gradient; float64 has
    the float64-vs-float64 tolerance."""
    if np.dtype(dtype) == np.float64:
        return FLOAT64.rtol
    return GRADIENT_REL_ERR_TARGET if training else FORWARD_REL_ERR_TARGET


def compute_reference(case: Case, seed: int, ignore_lengths: bool = False
                      ) -> dict[str, np.ndarray]:
    """The float64 reference arrays of a case's inputs (``case.make_args(seed)``; without
    their lengths when ``ignore_lengths``, for a backend that runs every sequence to T).
    A stacked or bidirectional case: the NumPy reference's kernels in a Network."""
    inputs = case_inputs(case, seed, ignore_lengths)
    inputs = as_float64(inputs) if isinstance(inputs, RNNArgs) else inputs.astype(np.float64)
    prepared = prepare_inputs(backends.get("numpy"), inputs)
    result = prepared.training_step() if case.training else prepared.forward()
    return named_arrays(case.cell, prepared.to_numpy(result), case.training)


class ReferenceSkipped(RuntimeError):
    """No reference for this case; the message is the row's note."""


class ReferenceCache:
    """Reference arrays as .npz files in ``directory``, each computed on first request by a
    worker of its own (the ``numpy`` backend, one thread) within ``timeout`` seconds, the
    case timeout: a reference that takes longer is killed, and its cases get a note
    instead of an accuracy. ``close()`` ends the worker."""

    def __init__(self, directory: str | Path, max_flops: float = REFERENCE_MAX_FLOPS,
                 timeout: float = 300.0):
        self.directory = Path(directory)
        self.max_flops = max_flops
        self.timeout = timeout
        self._worker = None
        self._failed: dict[Path, str] = {}      # path -> why its reference is missing

    def skip_reason(self, case: Case) -> str | None:
        if case.flops(training=True) > self.max_flops:
            return (f"accuracy not measured: the float64 reference is computed only up to "
                    f"{self.max_flops:.0e} training FLOPs")
        return None

    def path(self, case: Case, seed: int, ignore_lengths: bool = False) -> Path:
        key = f"{case.key}/seed{seed}{'/to-T' if ignore_lengths else ''}".encode()
        return self.directory / f"reference-{hashlib.sha1(key).hexdigest()[:16]}.npz"

    def ensure(self, case: Case, seed: int, ignore_lengths: bool = False) -> Path:
        """The path of the reference file (of :func:`compute_reference`), computing it if
        it is not cached yet; ReferenceSkipped (with the note) when the case is above the
        FLOP cap or its reference failed or took longer than the timeout."""
        from grubench.worker import Worker, WorkerFailed

        note = self.skip_reason(case)
        path = self.path(case, seed, ignore_lengths)
        note = note or self._failed.get(path)
        if note:
            raise ReferenceSkipped(note)
        if not path.exists():
            try:
                if self._worker is None:
                    self._worker = Worker("numpy", 1, self.directory / "reference.log",
                                          self.timeout)
                reply = self._worker.request(
                    dict(kind="reference", case=case.as_row(), seed=seed,
                         path=str(path), ignore_lengths=ignore_lengths), self.timeout)
                if reply["status"] != "ok":
                    raise WorkerFailed(reply["status"], reply["reason"])
            except WorkerFailed as failure:
                if self._worker is not None and failure.status in ("timeout", "crashed"):
                    self._worker = None         # it was killed or died: a fresh one next
                how = (f"took longer than the case timeout ({self.timeout:g} s)"
                       if failure.status == "timeout" else f"failed: {failure.reason}")
                self._failed[path] = f"accuracy not measured: the float64 reference {how}"
                raise ReferenceSkipped(self._failed[path]) from None
        return path

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None


def write_reference(path: str | Path, case: Case, seed: int, ignore_lengths: bool = False
                    ) -> None:
    """Compute a case's reference (one BLAS thread) and write it atomically."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        arrays = compute_reference(case, seed, ignore_lengths)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def load(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}
