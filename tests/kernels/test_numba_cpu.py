"""The numba-cpu backend against the float64 reference: every function over seeded shapes,
the gate approximations over their whole input range, the BLAS wrapper, NaN/Inf,
determinism and the float32 accuracy targets."""

import hashlib
import json
import os
import platform
import re
import subprocess
import sys

import numba
import numpy as np
import pytest
import scipy

from grubench import tolerances
from grubench.kernels import numba_cpu, reference
from grubench.kernels.numba_cpu import blas, drivers, gates, jit, pointwise, products, tiles
from grubench.kernels.numba_cpu import team as teams
from grubench.kernels.contract import validate
from llvmlite import binding as llvm
from oracle import assert_matches_reference, reference_step

pytestmark = pytest.mark.skipif(not numba_cpu.availability()[0],
                                reason=str(numba_cpu.availability()[1]))


def make_args(cell, T, B, I, H, dtype, *, reset_after=True, lengths=None, seed=0):
    """Seeded inputs of O(1) size, with upstream gradients."""
    rng = np.random.default_rng(seed)
    G = 3 if cell == "gru" else 4

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    scale = 1 / np.sqrt(H)
    grads = dict(dy=normal(T, B, H), dh_n=normal(B, H))
    if cell == "lstm":
        grads["dc_n"] = normal(B, H)
    return validate(cell, normal(T, B, I), normal(B, H),
                    normal(B, H) if cell == "lstm" else None,
                    normal(G * H, I, scale=scale), normal(G * H, H, scale=scale),
                    normal(G * H, scale=scale), normal(G * H, scale=scale),
                    reset_after=reset_after, lengths=lengths, **grads)


@pytest.fixture
def team_of(monkeypatch):
    """team_of(n): runs after it share every step among n threads, however small (n may
    exceed the cores: the team is numba-cpu's own threads)."""
    def team_of(threads):
        monkeypatch.setattr(numba_cpu, "team_size", lambda args: threads)
    return team_of


def run(args):
    """Outputs of forward, and (outputs, grads) of a training step (the team's size is
    team_size's, or team_of's)."""
    prepared = numba_cpu.prepare(args)
    return prepared.forward(), prepared.training_step()


def test_team_size_is_numbas_thread_count_past_the_step_threshold(monkeypatch):
    monkeypatch.setattr(numba, "get_num_threads", lambda: 5)
    large = make_args("gru", 2, 16, 3, 128, "float32")
    assert numba_cpu.team_size(large) == 5
    assert numba_cpu.team_size(make_args("gru", 2, 1, 3, 256, "float32")) == 5   # B < 4
    assert numba_cpu.team_size(make_args("gru", 2, 1, 3, 8, "float32")) == 1     # small
    monkeypatch.setattr(teams, "TEAM_MIN_STEP_FLOPS", 2 * 16 * 128 * 384 + 1)
    assert numba_cpu.team_size(large) == 1


# (cell, T, B, I, H, reset_after, lengths): T = 1, B = 1, H = 13 (no multiple of any SIMD
# width), I != H, lengths holding 0 and T. The products' tiles: B < 4 (one tile of all
# rows), B >= 4 (tiles of 4 rows, B = 5 or 6 with an overlapping last one), H not a
# multiple of PANEL_COLS (a partial last panel), H > PANEL_COLS (several panels). Teams
# split units while B < 4 * workers, and sequences from there (B = 9, 12, 13).
SHAPES = [
    ("gru", 3, 5, 8, 130, True, [3, 0, 1, 3, 2]),
    ("gru", 3, 6, 8, 130, False, [3, 2, 0, 3, 1, 3]),
    ("gru", 3, 5, 8, 43, False, None),
    ("lstm", 3, 5, 8, 130, True, [3, 0, 1, 3, 2]),
    ("lstm", 2, 6, 7, 43, True, None),
    ("gru", 1, 1, 3, 5, True, None),
    ("gru", 6, 1, 7, 13, True, [6]),
    ("gru", 5, 4, 9, 13, True, [0, 5, 2, 5]),
    ("gru", 1, 3, 4, 6, False, None),
    ("gru", 6, 1, 7, 13, False, [0]),
    ("gru", 5, 5, 3, 17, False, [5, 0, 3, 1, 5]),
    ("gru", 4, 2, 16, 16, True, [4, 0]),
    ("lstm", 1, 1, 3, 5, True, None),
    ("lstm", 6, 1, 7, 13, True, [3]),
    ("lstm", 5, 4, 9, 13, True, [0, 5, 2, 5]),
    ("lstm", 4, 2, 16, 16, True, [4, 0]),
    ("gru", 3, 9, 5, 40, True, [3, 0, 1, 3, 2, 3, 3, 1, 2]),
    ("gru", 4, 12, 6, 20, False, [4, 4, 0, 1, 2, 3, 4, 4, 1, 0, 3, 4]),
    ("lstm", 3, 13, 5, 36, True, [3, 0, 1, 3, 2, 3, 3, 1, 2, 0, 3, 3, 1]),
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s[:6])))
def test_matches_reference(shape, dtype, threads, team_of):
    team_of(threads)
    cell, T, B, I, H, reset_after, lengths = shape
    args = make_args(cell, T, B, I, H, dtype, reset_after=reset_after, lengths=lengths,
                     seed=T * B + H)
    forward_outputs, (outputs, grads) = run(args)
    for inference, got in zip(forward_outputs, outputs, strict=True):
        assert np.array_equal(inference, got)          # inference = training forward
    assert_matches_reference(outputs, grads, args)


@pytest.mark.parametrize("cell, reset_after", [("gru", True), ("gru", False),
                                               ("lstm", True)])
def test_float32_meets_the_relative_error_targets(cell, reset_after):
    args = make_args(cell, 40, 8, 48, 64, "float32", reset_after=reset_after, seed=3)
    want_outputs, want_grads = reference_step(args)
    _forward, (outputs, grads) = run(args)
    for got, want in zip(outputs, want_outputs):
        max_abs, rel = tolerances.errors(got, want)
        assert rel <= tolerances.FORWARD_REL_ERR_TARGET
        assert max_abs <= tolerances.FLOAT32_FORWARD.atol
    for name, want in want_grads.items():
        assert tolerances.errors(grads[name], want)[1] <= tolerances.GRADIENT_REL_ERR_TARGET


@pytest.mark.parametrize("cell, reset_after", [("gru", True), ("gru", False),
                                               ("lstm", True)])
def test_forward_in_pieces_of_steps_gives_forward_bit_for_bit(cell, reset_after):
    lengths = np.array([9, 0, 4, 6, 5])
    args = make_args(cell, 9, 5, 7, 33, "float32", reset_after=reset_after,
                     lengths=lengths)
    prepared = numba_cpu.prepare(args)
    want = prepared.forward()
    states, ys = (args.h0, args.c0), []
    for start, stop in ((0, 4), (4, 5), (5, 9)):
        outputs = prepared.forward_steps(args.x[start:stop], *states,
                                         np.clip(lengths - start, 0, stop - start))
        ys.append(outputs[0])
        states = (outputs[1], outputs[2] if cell == "lstm" else None)
    np.testing.assert_array_equal(np.concatenate(ys), want[0])
    for got, expected in zip(states, want[1:]):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("change, error, message", [
    (dict(x=lambda a: a.x[:, :2]), ValueError, r"x has shape \(4, 2, 3\); expected \(t, 3, 3\)"),
    (dict(x=lambda a: np.zeros((5, 3, 3), np.float32)), ValueError, "1 <= t <= T = 4"),
    (dict(x=lambda a: a.x.astype(np.float64)), TypeError, "x has dtype float64"),
    (dict(x=lambda a: np.asfortranarray(a.x)), ValueError, "x must be C-contiguous"),
    (dict(h0=lambda a: a.h0[:2]), ValueError, r"h0 has shape \(2, 5\)"),
    (dict(c0=lambda a: a.h0), TypeError, "c0 is an LSTM state"),
    (dict(lengths=lambda a: np.array([1, 5, 2])), ValueError, "lengths must lie in"),
])
def test_forward_steps_names_a_bad_argument(change, error, message):
    args = make_args("gru", 4, 3, 3, 5, "float32")
    given = dict(x=args.x, h0=args.h0, c0=None, lengths=None)
    given.update({name: make(args) for name, make in change.items()})
    with pytest.raises(error, match=message):
        numba_cpu.prepare(args).forward_steps(**given)


def test_all_sequences_empty_keep_their_state():
    args = make_args("lstm", 3, 2, 4, 5, "float64", lengths=[0, 0])
    (y, h_n, c_n), (_outputs, grads) = run(args)
    assert not y.any()
    assert np.array_equal(h_n, args.h0) and np.array_equal(c_n, args.c0)
    assert np.array_equal(grads["h0"], args.dh_n) and np.array_equal(grads["c0"], args.dc_n)
    assert not grads["w_hh"].any() and not grads["x"].any()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cell, B", [("gru", 1), ("gru", 6), ("lstm", 6), ("gru", 9)])
def test_repeated_runs_are_bit_identical(cell, B, threads, team_of):
    team_of(threads)
    args = make_args(cell, 7, B, 24, 40, "float32", lengths=[7, 3, 0, 7, 5, 1, 7, 2, 6][:B])
    prepared = numba_cpu.prepare(args)
    first = prepared.training_step()
    again = prepared.training_step()
    fresh = numba_cpu.prepare(args).training_step()
    for other in (again, fresh):
        for got, want in zip(other[0], first[0]):
            assert np.array_equal(got, want)
        for name in first[1]:
            assert np.array_equal(other[1][name], first[1][name])


#: sha256 prefixes of every array TRAINING_STEPS_SCRIPT writes, compiled afresh, per machine
BITS_FILE = os.path.join(os.path.dirname(__file__), "numba_cpu_bits.json")


def machine_key() -> str:
    """What a kernel's bits depend on besides its code: the CPU LLVM compiles for, numba
    (its LLVM) and the OpenBLAS the wide weight gradients call (SciPy's)."""
    return f"{llvm.get_host_cpu_name()} numba {numba.__version__} scipy {scipy.__version__}"


#: a training step of each cell, float32, with lengths in [0, T], written to the .npz
#: named by argv[1]; prints the kernels' cache (hits, misses) as JSON
TRAINING_STEPS_SCRIPT = """
import json, sys
import numpy as np
from grubench.kernels import numba_cpu
from grubench.kernels.numba_cpu import drivers
from grubench.case import Case
results = {}
for cell, variant in (("gru", "reset_after"), ("gru", "reset_before"), ("lstm", None)):
    args = Case(cell, 7, 6, 24, 40, variant=variant, mode="training",
                variable_lengths=True).make_args(seed=3)
    outputs, grads = numba_cpu.prepare(args).training_step()
    results.update({f"{cell}-{variant}-out{i}": out for i, out in enumerate(outputs)})
    results.update({f"{cell}-{variant}-{name}": grad for name, grad in grads.items()})
np.savez(sys.argv[1], **results)
kernels = [drivers.gru_forward_kernel, drivers.gru_backward_kernel,
           drivers.lstm_forward_kernel, drivers.lstm_backward_kernel]
print(json.dumps([sum(sum(getattr(kernel.stats, counts).values()) for kernel in kernels)
                  for counts in ("cache_hits", "cache_misses")]))
"""


@pytest.fixture(scope="module")
def fresh_and_cached_runs(tmp_path_factory):
    """TRAINING_STEPS_SCRIPT run twice on a new cache folder: the first process compiles
    and fills the cache, the next loads it. Their (hits, misses) and results."""
    folder = tmp_path_factory.mktemp("numba-cache")
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(folder / "cache"))
    cache_use, results = {}, {}
    for run in ("compiled", "cached"):
        done = subprocess.run([sys.executable, "-c", TRAINING_STEPS_SCRIPT,
                               str(folder / f"{run}.npz")], env=environment,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        cache_use[run] = json.loads(done.stdout.splitlines()[-1])
        results[run] = dict(np.load(folder / f"{run}.npz"))
    return cache_use, results


@pytest.mark.slow
def test_a_fresh_compile_and_the_cache_give_the_same_bits(fresh_and_cached_runs):
    """Their results must match bit for bit. They once did not: a helper's product fused
    into an FMA where the helper was inlined late, and not where it was compiled apart."""
    cache_use, results = fresh_and_cached_runs
    assert cache_use == {"compiled": [0, 4], "cached": [4, 0]}   # (hits, misses)
    compiled, cached = results["compiled"], results["cached"]
    assert list(compiled) == list(cached)
    for name in compiled:
        assert np.array_equal(compiled[name], cached[name]), name


@pytest.mark.slow
def test_a_fresh_compile_gives_the_bits_recorded_on_this_machine(fresh_and_cached_runs):
    """A refactoring leaves every result bit-identical. Bits differ across CPUs (vector
    width, FMA), numba's LLVM and OpenBLAS, so they are recorded per machine; a change that
    means to alter them records them again with GRUBENCH_RECORD_KERNEL_BITS=1. Compiled
    afresh in a fixed order: which helpers a process compiles first, or loads from a cache
    another process wrote, can change how LLVM contracts a multiply-add."""
    _cache_use, results = fresh_and_cached_runs
    bits = {name: hashlib.sha256(array.tobytes()).hexdigest()[:16]
            for name, array in results["compiled"].items()}
    with open(BITS_FILE) as file:
        recorded = json.load(file)
    if os.environ.get("GRUBENCH_RECORD_KERNEL_BITS"):
        recorded[machine_key()] = bits
        with open(BITS_FILE, "w") as file:
            json.dump(recorded, file, indent=1, sort_keys=True)
            file.write("\n")
    if machine_key() not in recorded:
        pytest.skip(f"no bits recorded for {machine_key()}")
    assert bits == recorded[machine_key()]


@pytest.mark.slow
@pytest.mark.skipif(tiles.TILE == tiles.TILE_SHAPES["ymm"],
                    reason="needs a CPU whose tile differs from AVX2's (AVX-512)")
def test_a_cache_filled_for_one_target_is_not_served_to_another(tmp_path):
    """The tile's shape follows numba's target CPU, and numba keys every cache entry on
    that target (its CPU name and features): kernels compiled with this CPU's tile are
    compiled again for Haswell's, never loaded."""
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    cache_use = []
    for target in ({}, dict(NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="")):
        done = subprocess.run([sys.executable, "-c", TRAINING_STEPS_SCRIPT,
                               str(tmp_path / "out.npz")], env={**environment, **target},
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        cache_use.append(json.loads(done.stdout.splitlines()[-1]))
    assert cache_use == [[0, 4], [0, 4]]              # (hits, misses): both compiled


def test_a_cache_entry_is_stale_once_any_module_of_the_package_changes(tmp_path):
    """A compiled kernel holds the code of the helpers it calls from other modules, so its
    entry's stamp covers the source of every module, not only its own file's."""
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text("x = 1\n")
    before = jit.package_source_hash.__wrapped__(tmp_path)
    (tmp_path / "b.py").write_text("x = 2\n")
    assert jit.package_source_hash.__wrapped__(tmp_path) != before
    if not jit.CACHE:
        pytest.skip("numba has no usable cache folder here")
    for kernel in (drivers.gru_forward_kernel, pointwise.gru_step_rows, gates.tanh_for):
        stamp = kernel._cache._cache_file._source_stamp
        assert stamp[1] == jit.package_source_hash(), kernel


@pytest.mark.parametrize("cell, reset_after, width", [("gru", True, 4), ("gru", False, 3),
                                                      ("lstm", True, 5)])
def test_saved_bytes_are_the_activations_only(cell, reset_after, width):
    args = make_args(cell, 5, 3, 4, 6, "float32", reset_after=reset_after)
    prepared = numba_cpu.prepare(args)
    prepared.training_step()
    assert prepared.saved_bytes == 5 * 3 * width * 6 * 4


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_propagate_like_the_reference(cell, bad):
    args = make_args(cell, 4, 3, 5, 6, "float64", lengths=[4, 2, 0])
    args.x[1, 0, 2] = bad
    args.x[3, 1, 0] = bad                  # past sequence 1's length: must not leak
    want_outputs, want_grads = reference.prepare(args).training_step()
    forward_outputs, (outputs, grads) = run(args)
    for got, want in zip(outputs, want_outputs):
        assert np.array_equal(np.isnan(got), np.isnan(want))
        assert np.allclose(got, want, rtol=1e-10, atol=1e-12, equal_nan=True)
    for name in ("h0", "w_hh", "b_ih"):
        assert np.array_equal(np.isnan(grads[name]), np.isnan(want_grads[name])), name


# ------------------------------------------------------------------ gate approximations

def float32_sweep():
    """Every 61st float32 bit pattern (positive and negative, ~70M values) plus specials."""
    bits = np.arange(0, 2**32, 61, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 9.02, -9.02, 9.0201, 1e-40,
                         np.finfo(np.float32).max, -np.finfo(np.float32).max], np.float32)
    return np.concatenate([values[~np.isnan(values)], specials])


@pytest.fixture(scope="module")
def sweep():
    return float32_sweep()


#: the float32 gate math's error bounds over the sweep, in float32 ulps of the true value:
#: the float32 roundings of the rational's two polynomials, up to ~5 where tanh nears 1
#: (measured max 5.6, mean 0.04); sigmoid = 0.5 + 0.5 tanh(x/2) adds a rounding of 0.5
#: and, where it is small, 0.5 tanh's absolute error (measured max 1.7e-7 < 2**-22)
TANH_ULPS, SIGMOID_ULPS, SIGMOID_ABS = 6, 3, 2.0**-22


def test_float32_tanh_is_within_its_ulp_bound_everywhere(sweep):
    got = np.empty_like(sweep)
    gates.tanh_for(sweep, got)
    want = np.tanh(sweep.astype(np.float64))
    finite = ~np.isnan(want)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ulp = np.spacing(np.abs(want[finite]).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(got[finite] - want[finite]) <= TANH_ULPS * ulp)
    assert np.all(np.abs(got[finite]) <= 1)
    assert got[sweep == np.inf][0] == 1 and got[sweep == -np.inf][0] == -1


def test_float32_sigmoid_is_within_its_bound_everywhere(sweep):
    got = np.empty_like(sweep)
    gates.sigmoid_for(sweep, got)
    want = reference.sigmoid(sweep.astype(np.float64))
    finite = ~np.isnan(want)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ulp = np.spacing(want[finite].astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(got[finite] - want[finite]) <= SIGMOID_ULPS * ulp + SIGMOID_ABS)
    assert np.all((got[finite] >= 0) & (got[finite] <= 1))
    assert got[sweep == np.inf][0] == 1 and got[sweep == -np.inf][0] == 0


def test_float64_gates_are_libm_exact():
    """libm's tanh, to a few float64 ulps (fused multiply-adds round differently)."""
    values = np.concatenate([np.linspace(-40, 40, 100_001), [np.inf, -np.inf, np.nan]])
    got = np.empty_like(values)
    gates.tanh_for(values, got)
    assert np.allclose(got, np.tanh(values), rtol=1e-15, atol=0, equal_nan=True)
    gates.sigmoid_for(values, got)
    assert np.allclose(got, reference.sigmoid(values), rtol=1e-15, atol=1e-16,
                       equal_nan=True)


def llvm_host_features() -> dict:
    import llvmlite.binding as llvm
    return llvm.get_host_cpu_features()


def host_has_avx() -> bool:
    """The assembly tests read x86 AVX mnemonics and ymm/zmm registers."""
    return platform.machine().lower() in ("x86_64", "amd64") and bool(
        llvm_host_features().get("avx", False))


#: Tests that read x86 AVX assembly: elsewhere the loops compile to other instructions.
needs_avx = pytest.mark.skipif(not host_has_avx(),
                               reason=f"reads x86 AVX assembly; this CPU is "
                                      f"{platform.machine()} without AVX")


def uncached_twin(function, *arguments):
    """``function`` compiled again, uncached, with its own options and compiler, for these
    arguments' types: numba shows no code of cached functions. (numba keeps a
    dispatcher's compiler class on its private ``_compiler`` only.)"""
    twin = numba.jit(**dict(function.targetoptions, cache=False),
                     pipeline_class=function._compiler.pipeline_class)(function.py_func)
    twin(*arguments)
    return twin


def assembly(function, *arguments):
    """``function``'s assembly for these arguments' types, one instruction per line."""
    twin = uncached_twin(function, *arguments)
    return twin.inspect_asm(twin.signatures[0]).splitlines()


#: floating-point arithmetic and conversion mnemonics (AT&T syntax; ps/pd ends them);
#: data moves are left out: a scalar loop may copy with vector registers too
FLOAT_OPS = ("vfmadd", "vfmsub", "vfnmadd", "vfnmsub", "vmul", "vadd", "vsub", "vdiv",
             "vmax", "vmin", "vcmp", "vcvt")


def packed_instructions(function, *arguments, suffixes=("ps", "pd")):
    """Packed (ymm/zmm) floating-point arithmetic in ``function``'s assembly."""
    packed = []
    for line in assembly(function, *arguments):
        mnemonic = line.split()[0] if line.split() else ""
        if ("ymm" in line or "zmm" in line) and mnemonic.startswith(FLOAT_OPS) \
                and mnemonic.endswith(suffixes):
            packed.append(line)
    return packed


@needs_avx
def test_float32_gate_loop_vectorizes():
    """The reason the approximation exists: packed single-precision divisions in the
    loop. It breaks if error_model='numpy' or the fastmath flags are dropped, or if any
    of its constants is a float64 (the loop would then run in float64)."""
    values = np.zeros(4, np.float32)
    assert any("vdivps" in line for line in packed_instructions(gates.tanh_for, values,
                                                                 values.copy()))


def row_function_cases():
    """(function, arguments) of every pointwise loop over one worker's units: one step's
    (B, width) arrays, sequences 1..2 of step 1 (sequence 2 past its length), units
    16..H."""
    B, H, f32 = 3, 40, np.float32
    lengths, t, seqs = np.array([2, 2, 1]), 1, slice(1, 3)

    def rows(width, dtype=f32):
        return np.zeros((B, width * H), dtype)

    def bias(width):
        return np.zeros(width * H, f32)

    return {
        "gru_reset_rows": (pointwise.gru_reset_rows, rows(3), rows(3), bias(3), rows(1),
                           rows(1), rows(4), seqs, 16, H),
        "gru_step_rows": (pointwise.gru_step_rows, rows(3), rows(3), bias(3), bias(1), True,
                          rows(1), rows(1), rows(1), rows(4), lengths, t, seqs, 16, H),
        "gru_backward_rows": (pointwise.gru_backward_rows, rows(1), rows(4), rows(1), True,
                              rows(1, float), rows(3), rows(3), rows(1), lengths, t, seqs,
                              16, H),
        "gru_reset_backward_rows": (pointwise.gru_reset_backward_rows, rows(1), rows(3),
                                    rows(1), rows(1, float), rows(3), lengths, t, seqs, 16,
                                    H),
        "lstm_step_rows": (pointwise.lstm_step_rows, rows(4), rows(4), bias(4), rows(1),
                           rows(1), rows(1), rows(1), rows(5), lengths, t, seqs, 16, H),
        "lstm_backward_rows": (pointwise.lstm_backward_rows, rows(1), rows(5), rows(5),
                               4 * H, rows(1, float), rows(1, float), rows(4), lengths, t,
                               seqs, 16, H),
        "add_rows": (pointwise.add_rows, rows(1, float), rows(1), lengths, t, False, 16, H),
    }


@pytest.mark.parametrize("name", list(row_function_cases()))
@needs_avx
def test_pointwise_loops_over_a_workers_units_vectorize(name):
    """Loops from a runtime start vectorize only in the form the module describes
    (unit offsets, start marked nonnegative); otherwise they run scalar, 4x slower."""
    function, *arguments = row_function_cases()[name]
    assert len(packed_instructions(function, *arguments)) >= 8


def optimized_body(function, *arguments):
    """The LLVM IR of ``function`` itself (its ``define`` line to the closing brace),
    optimized, for these arguments' types."""
    twin = uncached_twin(function, *arguments)
    llvm = twin.inspect_llvm(twin.signatures[0])
    start = next(match.start() for match in re.finditer(r"^define .*$", llvm, re.M)
                 if function.__name__ in match.group())
    return llvm[start:llvm.index("\n}\n", start)]


@pytest.mark.parametrize("name", list(row_function_cases()))
def test_pointwise_functions_mark_their_arrays_non_overlapping(name):
    """Every array's data pointer is ``noalias``, so LLVM runs no overlap checks before
    the vectorized loops (DISJOINT_JIT). Each array reaches LLVM as several arguments;
    its data pointer is the one named ``arg.<name>.4``."""
    function, *arguments = row_function_cases()[name]
    definition = optimized_body(function, *arguments).splitlines()[0]
    names = function.py_func.__code__.co_varnames
    arrays = [name for name, value in zip(names, arguments) if isinstance(value, np.ndarray)]
    for array in arrays:
        assert re.search(rf"ptr noalias [^,]*%arg\.{array}\.4\b", definition), array


@pytest.mark.parametrize("name", list(row_function_cases()))
def test_pointwise_functions_update_no_reference_count(name):
    """Their meminfo pointers are noalias too, and views of one array (saved[t] and
    saved[t-1], both halves of the states) share one count: updating it through two of
    them would break that promise. A row view, or a call LLVM does not inline, brings
    these updates (they also cost an atomic per sequence on a line all workers share)."""
    function, *arguments = row_function_cases()[name]
    body = optimized_body(function, *arguments)
    assert "NRT_incref" not in body and "NRT_decref" not in body


@pytest.mark.parametrize("name", ["gru_reset_rows", "gru_step_rows", "lstm_step_rows"])
@needs_avx
def test_float32_forward_rows_stay_in_float32(name):
    """The forward's gate math runs in 16-lane float32 vectors: no conversion to float64
    and no packed float64 arithmetic (a float64 bias or constant would bring both)."""
    function, *arguments = row_function_cases()[name]
    lines = assembly(function, *arguments)
    assert not any("vcvtps2pd" in line for line in lines)
    assert not packed_instructions(function, *arguments, suffixes=("pd",))
    assert len(packed_instructions(function, *arguments, suffixes=("ps",))) >= 20


@pytest.mark.parametrize("cell, reset_after", [("gru", True), ("gru", False),
                                               ("lstm", True)])
def test_prepared_biases_have_the_cases_dtype(cell, reset_after):
    """A float64 bias would turn a float32 problem's gate math into float64."""
    for dtype in ("float32", "float64"):
        prepared = numba_cpu.prepare(make_args(cell, 3, 2, 4, 5, dtype,
                                               reset_after=reset_after))
        assert prepared.bias.dtype == np.dtype(dtype)
        if cell == "gru":
            assert prepared.b_hn.dtype == np.dtype(dtype)


# ------------------------------------------------------------------------- products

@numba.njit
def call_matmul_nt(a, k0, K, panels, block, unit, N, out, out_col):
    products.matmul_nt(a, k0, K, panels, block, unit, N, out, out_col)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B", [1, 2, 3, 4, 5, 7, 8, 9])
def test_matmul_nt_matches_numpy_on_every_tile_and_panel_path(B, dtype):
    """Row tiles (B < PANEL_ROWS in one tile; full tiles and an overlapping last one),
    whole and partial panels (R = 40 = 32 + 8), a block other than the first, a depth
    offset k0, and outputs written only inside their columns."""
    rng = np.random.default_rng(B)
    blocks, R, depth = 2, 40, 37
    weights = rng.standard_normal((blocks, R, depth)).astype(dtype)
    panels = tiles.pack_panels(weights)
    a = rng.standard_normal((B, depth + 3)).astype(dtype)
    tolerance = tolerances.forward_tolerance(dtype)
    for block, unit, N, k0, K in [(0, 0, 40, 0, 37), (1, 32, 8, 2, 35), (1, 0, 33, 5, 1),
                                  (1, 0, 0, 0, 37)]:
        out = np.full((B, 50), np.nan, dtype)
        call_matmul_nt(a, k0, K, panels, block, unit, N, out, 3)
        want = a[:, k0:k0 + K].astype(np.float64) @ weights[block, unit:unit + N,
                                                           k0:k0 + K].T.astype(np.float64)
        tolerance.assert_close(out[:, 3:3 + N], want, f"block {block}, units {unit}+{N}")
        assert np.isnan(out[:, :3]).all() and np.isnan(out[:, 3 + N:]).all()


@pytest.mark.parametrize("arguments, why", [
    ((0, 38, 0, 0, 8, 3), "operands out of bounds"),        # depth past a's columns
    ((0, 8, 0, 0, 48, 3), "operands out of bounds"),        # columns past out's
    ((0, 8, 0, 16, 8, 3), "rows out of the weight panels"),  # unit not a panel boundary
    ((0, 8, 2, 0, 8, 3), "rows out of the weight panels"),   # no such block
    ((0, 8, 0, 32, 40, 3), "rows out of the weight panels"),  # rows past the block's
])
def test_matmul_nt_refuses_out_of_bounds_operands(arguments, why):
    """Its micro-kernel reads and writes through raw pointers: bounds are checked first."""
    k0, K, block, unit, N, out_col = arguments
    panels = tiles.pack_panels(np.zeros((2, 40, 37)))
    with pytest.raises(ValueError, match=why):
        call_matmul_nt(np.zeros((5, 37)), k0, K, panels, block, unit, N, np.zeros((5, 50)),
                       out_col)


def host_has_fma() -> bool:
    return host_has_avx() and bool(llvm_host_features().get("fma", False))


@pytest.mark.skipif(not host_has_fma(), reason="the CPU has no x86 fused multiply-add")
def test_panel_tiles_compile_to_packed_fused_multiply_adds():
    """The micro-kernel's vector IR must become packed FMAs, not scalar or library calls."""
    twin = numba.njit(cache=False)(call_matmul_nt.py_func)
    panels = tiles.pack_panels(np.zeros((1, 32, 8), np.float32))
    twin(np.zeros((4, 8), np.float32), 0, 8, panels, 0, 0, 32, np.zeros((4, 32), np.float32),
         0)
    assembly = twin.inspect_asm(twin.signatures[0])
    assert any("vfmadd" in line and "ps" in line and ("ymm" in line or "zmm" in line)
               for line in assembly.splitlines())


#: the assembly of matmul_nt and weight_gradient (float32, every row count of a tile)
#: compiled for numba's target of the process, printed as JSON with the target's tile
TILE_ASSEMBLY_SCRIPT = """
import json
import numba, numpy as np
from grubench.kernels.numba_cpu import products, tiles
def matmul(a, panels, out):
    products.matmul_nt(a, 0, a.shape[1], panels, 0, 0, out.shape[1], out, 0)
def gradient(d, x, out):
    products.weight_gradient((0, 1, np.zeros(8, np.int64)), d, x, out, False)
listing = []
for function, arguments in (
        (matmul, (np.zeros((8, 8), np.float32), tiles.pack_panels(np.zeros((1, 32, 8), np.float32)),
                  np.zeros((8, 32), np.float32))),
        (gradient, (np.zeros((8, 16), np.float32), np.zeros((8, 32), np.float32),
                    np.zeros((16, 32), np.float32)))):
    twin = numba.njit(cache=False)(function)
    twin(*arguments)
    listing += twin.inspect_asm(twin.signatures[0]).splitlines()
print(json.dumps({"tile": list(tiles.TILE), "assembly": listing}))
"""

LABEL = re.compile(r"^\.?[\w.$]+:$")


def fma_loops(assembly):
    """The innermost loops (a label, then a jump back to it with no label between) that
    run fused multiply-adds: the micro-kernels' depth loops, as LLVM unrolled them."""
    labels, loops = {}, []
    for i, line in enumerate(assembly):
        text = line.strip()
        if LABEL.match(text):
            labels[text[:-1]] = i
        jump = re.match(r"^j\w+\s+(\S+)$", text)
        if jump and jump.group(1) in labels:
            body = [line.strip() for line in assembly[labels[jump.group(1)] + 1:i]]
            if not any(LABEL.match(line) for line in body) \
                    and any(line.startswith("vfmadd") for line in body):
                loops.append(body)
    return loops


def vector_stack_traffic(loop):
    """A loop's vector loads and stores on the stack: spilled accumulators or panel
    vectors (the tiles keep all of theirs in registers)."""
    return [line for line in loop if "(%rsp)" in line and re.search(r"%[xyz]mm", line)]


@pytest.mark.skipif(not (host_has_fma() and llvm_host_features().get("avx2", False)),
                    reason="reads x86 AVX2 assembly; this CPU has no AVX2 and FMA")
@pytest.mark.parametrize("target", ["haswell", "host"])
def test_tiles_keep_their_accumulators_in_registers(target):
    """Each tile's depth loop runs on registers only: the target's tile shape
    (tiles.TILE_SHAPES) fits its vector registers, here compiled for AVX2 (Haswell: 16
    ymm registers, no zmm) and for this CPU. The AVX-512 shape compiled for AVX2 spilled
    4 accumulators in every 4-row tile."""
    env = dict(os.environ)
    if target == "haswell":
        env.update(NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="")
    done = subprocess.run([sys.executable, "-c", TILE_ASSEMBLY_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assembly = result["assembly"]
    if target == "haswell":
        assert tuple(result["tile"]) == tiles.TILE_SHAPES["ymm"]
        assert not any("zmm" in line for line in assembly)
    loops = fma_loops(assembly)
    # matmul_nt's tiles of 1-8 rows and the gradient's of 6 and 4 rows
    assert len(loops) >= 4
    assert [vector_stack_traffic(loop) for loop in loops] == [[] for _ in loops]


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_gemm_takes_transposed_views_and_column_blocks(beta):
    rng = np.random.default_rng(0)
    big = rng.standard_normal((7, 12))
    a = big[:, 2:7]                                 # column block (7, 5)
    b = rng.standard_normal((9, 5)).T               # transposed view (5, 9)
    c = rng.standard_normal((7, 9))
    want = a @ b + beta * c
    blas.gemm(a, b, c, beta)
    assert np.allclose(c, want, rtol=1e-13, atol=1e-13)
    empty = np.ones((3, 2))
    blas.gemm(np.zeros((3, 0)), np.zeros((0, 2)), empty, 0.0)
    assert not empty.any()


def test_gemm_refuses_operands_without_a_contiguous_axis():
    strided = np.zeros((6, 6))[::2, ::2]
    with pytest.raises(ValueError, match="neither contiguous rows nor columns"):
        blas.gemm(strided, np.zeros((3, 3)), np.zeros((3, 3)), 0.0)
    with pytest.raises(ValueError, match="shapes do not match"):
        blas.gemm(np.zeros((3, 2)), np.zeros((3, 3)), np.zeros((3, 3)), 0.0)


@numba.njit(nogil=True)
def call_weight_gradient(team, d, x, out, accumulate):
    products.weight_gradient(team, d, x, out, accumulate)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("accumulate", [False, True])
def test_weight_gradient_matches_numpy_on_every_tile_and_chunk_path(accumulate, dtype,
                                                                     workers):
    """Depth chunks (M past GRADIENT_DEPTH), row blocks and their 1-3 row tails (N = 19,
    40), whole panels and the BLAS columns past them (K = 7, 40, 70), products too wide
    for the tiles (K = 130, all BLAS), d as a column block of a wider array, and each
    worker's part of out only."""
    rng = np.random.default_rng(7)
    tolerance = tolerances.forward_tolerance(dtype)
    depth = products.GRADIENT_DEPTH
    assert products.GRADIENT_MAX_COLUMNS < 130
    for M, N, K in [(1, 5, 32), (depth + 2, 40, 70), (2 * depth + 44, 19, 64), (5, 3, 7),
                    (depth + 1, 2, 40), (depth + 3, 33, 130)]:
        wide = rng.standard_normal((M, N + 5)).astype(dtype)
        d = wide[:, 3:3 + N]
        x = rng.standard_normal((M, K)).astype(dtype)
        out = rng.standard_normal((N, K)).astype(dtype)
        want = d.astype(np.float64).T @ x.astype(np.float64)
        if accumulate:
            want += out
        teams.run_team(workers, call_weight_gradient, d, x, out, accumulate)
        tolerance.assert_close(out, want, f"M, N, K = {M}, {N}, {K}")


def test_weight_gradient_refuses_mismatched_operands():
    """Its micro-kernel reads and writes through raw pointers: shapes are checked first."""
    sync = teams.aligned_empty(8, np.int64)
    team = (0, 1, sync)
    with pytest.raises(ValueError, match="shapes do not match"):
        call_weight_gradient(team, np.zeros((6, 4)), np.zeros((5, 32)), np.zeros((4, 32)),
                             False)
    with pytest.raises(ValueError, match="shapes do not match"):
        call_weight_gradient(team, np.zeros((5, 4)), np.zeros((5, 32)), np.zeros((4, 33)),
                             False)
    with pytest.raises(ValueError, match="contiguous rows"):
        call_weight_gradient(team, np.zeros((5, 4)), np.zeros((64, 5)).T, np.zeros((4, 64)),
                             False)


def test_a_run_leaves_the_blas_it_calls_on_one_thread():
    """The team's threads are the only ones: a BLAS pool woken beside them spins."""
    library = blas._numba_blas()
    if library is None:
        pytest.skip("threadpoolctl does not see the OpenBLAS numba calls")
    pinned = library.get_num_threads()
    try:
        library.set_num_threads(2)
        numba_cpu.prepare(make_args("gru", 3, 2, 4, 8, "float32")).forward()
        assert library.get_num_threads() == 1
    finally:
        library.set_num_threads(pinned)


@pytest.mark.parametrize("failing_worker", [0, 1])
def test_a_failing_worker_raises_instead_of_leaving_the_team_waiting(failing_worker):
    """Run in a subprocess with a timeout: without the abort flag the team hangs."""
    code = f"""
import numba, pytest
from grubench.kernels.numba_cpu import team as teams

@numba.njit(nogil=True)
def kernel(team, failing_worker):
    if team[0] == failing_worker:
        raise ValueError("worker failed")
    for _ in range(3):
        teams.barrier(team)

with pytest.raises(ValueError, match="worker failed"):
    teams.run_team(2, kernel, {failing_worker})
teams.run_team(2, kernel, -1)       # the module's threads are usable again
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
