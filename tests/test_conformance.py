"""Conformance: every registered backend, through the oracle checks.

Each backend the registry lists (plugins loaded through GRUBENCH_PLUGINS included) runs
every cell in every variant its spec declares, in float32 and float64, with full-length
sequences and with lengths holding an empty, a full and a partial sequence. Its forward
outputs, and in training every gradient as well, are compared with the float64 NumPy
reference on the same inputs within the dtype's tolerance (grubench.tolerances).

What a backend runs is asked of its registry entry (``Entry.why_unsupported``), never
decided here by its name: a case it declares unsupported, or a backend unavailable on this
machine, is skipped with the registry's reason. So a new backend is tested by registering
it. Without a GPU the numba-cuda backend runs on numba's CUDA simulator (tests/conftest.py
sets NUMBA_ENABLE_CUDASIM=1), which is why the sizes are tiny.
"""
import functools

import numpy as np
import pytest

from grubench import backends
from grubench.case import DTYPES, MODES, Case
from grubench.kernels.cells import CELLS
from grubench.backends import load_plugins
from grubench.kernels.contract import validate
from tests.kernels.oracle import assert_matches_reference, reference_step

T, B, I, H = 5, 3, 4, 6     # noqa: E741 - the conventional size names
SEED = 11
#: Sequence lengths: None (every sequence is T long), and an empty, a full and a partial one.
LENGTHS = {"full": None, "lengths": (0, T, 2)}
VARIANTS = [(spec.name, variant) for spec in CELLS.values() for variant in spec.variants]


def registered_backends() -> list[str]:
    load_plugins()
    return backends.names()


def variant_id(cell_variant) -> str:
    cell, variant = cell_variant
    return cell if len(CELLS[cell].variants) == 1 else f"{cell}-{variant}"


def make_args(cell: str, variant: str, dtype: str, lengths: str):
    """A training call's inputs (upstream gradients included) of the given case."""
    args = Case(cell, T, B, I, H, variant=variant, mode="training",
                dtype=dtype).make_args(seed=SEED)
    return validate(cell, args.x, args.h0, args.c0, args.w_ih, args.w_hh, args.b_ih,
                    args.b_hh, reset_after=args.reset_after, lengths=LENGTHS[lengths],
                    dy=args.dy, dh_n=args.dh_n, dc_n=args.dc_n)


@functools.cache
def expected(cell: str, variant: str, dtype: str, lengths: str):
    """(outputs, grads) of the float64 reference, computed once per case."""
    return reference_step(make_args(cell, variant, dtype, lengths))


def run(prepared, call):
    result = call()
    prepared.synchronize()
    return prepared.to_numpy(result)


@pytest.mark.parametrize("lengths", list(LENGTHS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell, variant", VARIANTS, ids=[variant_id(v) for v in VARIANTS])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", registered_backends())
def test_backend_matches_the_reference(name, mode, cell, variant, dtype, lengths):
    backend = backends.get(name)
    if not backend.available:
        pytest.skip(f"{name} is unavailable here: {backend.why_unavailable}")
    why = backend.entry.why_unsupported(mode, dtype)
    if why:
        pytest.skip(f"{name} declares {mode} in {dtype} unsupported: {why}")
    args = make_args(cell, variant, dtype, lengths)
    prepared = backend.prepare(args)
    if mode == "training":
        outputs, grads = run(prepared, prepared.training_step)
    else:
        outputs, grads = run(prepared, prepared.forward), None
    assert_matches_reference(outputs, grads, args, expected(cell, variant, dtype, lengths))


def test_the_cases_hold_an_empty_a_full_and_a_partial_sequence():
    """The lengths case is what it claims, after validation (which zeroes the padding)."""
    args = make_args("gru", "reset_after", "float64", "lengths")
    assert list(args.lengths) == [0, T, 2]
    assert not args.x[:, 0].any() and args.x[:, 1].all() and not args.x[2:, 2].any()
    assert np.array_equal(args.dy[2:, 2], np.zeros((T - 2, H)))
