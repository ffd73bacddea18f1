"""The numba-cuda backend (and its tiled matmul) against the float64 reference.

Without a GPU these tests run on the CUDA simulator: NUMBA_ENABLE_CUDASIM=1 is set here
unless the variable is already set or a GPU is present, so on a GPU machine the same tests
run the real kernels. Simulated kernels are slow (each thread is a Python thread), so the
sizes are tiny and the launch shapes are shrunk until every case spans several matmul
tiles, pointwise blocks and persistent slices (with a tail slice). The simulator runs one
block per cooperative grid, so there the persistent kernel runs 1 block x 3 slices; on a
GPU ``test_persistent_spans_several_blocks`` checks the multi-block grid sync.
"""
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path


def _gpu_present() -> bool:
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


if "NUMBA_ENABLE_CUDASIM" not in os.environ and not _gpu_present():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    from numba.core import config as _numba_config
    _numba_config.reload_config()   # numba may have read its config before we set it

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from grubench import backends, tolerances  # noqa: E402
from grubench.kernels import cuda_matmul, numba_cuda, reference  # noqa: E402
from grubench.kernels.cuda_matmul import CudaKernelError, Tile  # noqa: E402
from grubench.case import Case  # noqa: E402
from oracle import assert_matches_reference, reference_step  # noqa: E402

AVAILABLE, WHY = numba_cuda.availability()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"numba-cuda unavailable: {WHY}")
cuda = cuda_matmul.cuda
SIMULATED = numba_cuda.simulator_enabled()

# 4x4-output tiles of 2x2 threads and K slices of 2: H=5 gives 4 column tiles of 3H=15,
# I=3 two K slices. Per-step products: 1x4 tiles (B=2 is two row tiles), K slices of 3 (a
# ragged last slice of H=5). Pointwise blocks of 4 threads: B*H=10 spans 3 blocks.
# Persistent slices of 2 units: H=5 is 3 slices, the last one half empty; 2 lanes per dot
# product and 1 batch entry per thread (B=2: two batch groups).
SMALL = numba_cuda.CudaConfig(tile=Tile(threads_m=2, threads_n=2, per_thread_m=2,
                                        per_thread_n=2, tile_k=2),
                              step_tile=Tile(threads_m=1, threads_n=2, per_thread_m=1,
                                             per_thread_n=2, tile_k=3),
                              pointwise_threads=4, persistent_threads=8, persistent_ksplit=2,
                              persistent_units=2, persistent_batch_per_thread=1)


def small(path: str, **changes) -> numba_cuda.CudaConfig:
    return replace(SMALL, path=path, **changes)


# ---------------------------------------------------------------------------- matmul

@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_matmul_matches_numpy_across_tiles(trans_a, trans_b):
    rng = np.random.default_rng(1)
    M, K, N = 5, 7, 6    # not multiples of the 4x4 tile or the K slice of 2
    a = rng.standard_normal((K, M) if trans_a else (M, K))
    b = rng.standard_normal((N, K) if trans_b else (K, N))
    bias, c = rng.standard_normal(N), rng.standard_normal((M, N))
    want = (a.T if trans_a else a) @ (b.T if trans_b else b)
    out = cuda.to_device(c)
    cuda_matmul.matmul(cuda.to_device(a), cuda.to_device(b), out, trans_a=trans_a,
                       trans_b=trans_b, tile=SMALL.tile)
    assert tolerances.FLOAT64.allclose(out.copy_to_host(), want)
    cuda_matmul.matmul(cuda.to_device(a), cuda.to_device(b), out, trans_a=trans_a,
                       trans_b=trans_b, tile=SMALL.tile, accumulate=True,
                       bias=cuda.to_device(bias))
    assert tolerances.FLOAT64.allclose(out.copy_to_host(), 2 * want + bias)


def test_step_tiles_shrink_with_the_batch():
    assert numba_cuda.step_tile_for(1).tile_m == 4
    assert numba_cuda.step_tile_for(64).tile_m == 32
    assert numba_cuda.step_tile_for(65) == Tile()


def test_matmul_rejects_mismatched_shapes():
    a, b, c = (cuda.to_device(np.zeros(s)) for s in [(2, 3), (4, 5), (2, 5)])
    with pytest.raises(ValueError, match="dx product: op\\(a\\) is 2x3, op\\(b\\) is 4x5"):
        cuda_matmul.matmul(a, b, c, name="dx product")


def test_column_sum_adds_rows():
    a = np.arange(15.0).reshape(5, 3)
    out = cuda.to_device(np.ones(3))
    cuda_matmul.column_sum(cuda.to_device(a), out, accumulate=True, threads=2)
    np.testing.assert_array_equal(out.copy_to_host(), a.sum(axis=0) + 1)


# ---------------------------------------------------------------------------- the backend

CASES = [
    Case("gru", 3, 2, 3, 5, dtype="float64"),
    Case("gru", 3, 2, 3, 5, dtype="float64", variant="reset_before", variable_lengths=True),
    Case("lstm", 3, 2, 3, 5, dtype="float64", variable_lengths=True),
    Case("gru", 3, 2, 3, 5, dtype="float32", variable_lengths=True),
    Case("lstm", 3, 2, 3, 5, dtype="float32"),
]


def case_id(p: Case) -> str:
    variant = "" if p.cell == "lstm" else ("-after" if p.reset_after else "-before")
    return f"{p.cell}{variant}-{'lengths' if p.variable_lengths else 'full'}-{p.dtype}"


def make_args(case: Case):
    args = case.make_args(seed=5, with_grads=True)
    if case.variable_lengths:      # an empty, a partial and a full sequence
        args.lengths[:] = np.resize([0, case.T - 1, case.T], case.B)
    return args


def assert_steps_match_reference(prepared, args, steps=1):
    expected = reference_step(args)
    for _ in range(steps):              # buffers are reused: later steps must agree too
        outputs, grads = prepared.to_numpy(prepared.training_step())
        assert_matches_reference(outputs, grads, args, expected)
    assert_matches_reference(prepared.to_numpy(prepared.forward()), None, args, expected)


@pytest.mark.parametrize("path", ["stepwise", "persistent"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_training_step_and_forward_match_reference(case, path):
    args = make_args(case)
    prepared = numba_cuda.prepare(args, small(path))
    assert prepared.path == path
    assert_steps_match_reference(prepared, args)


def test_repeated_steps_reuse_buffers_correctly():
    args = make_args(Case("gru", 3, 2, 3, 5, dtype="float64", variant="reset_before"))
    assert_steps_match_reference(numba_cuda.prepare(args, small("auto")), args, steps=2)


def test_auto_path_persistent_for_small_batch_stepwise_beyond():
    args = make_args(Case("gru", 2, 2, 3, 5, dtype="float64"))
    prepared = numba_cuda.prepare(args, small("auto"))
    assert prepared.path == "persistent"
    if SIMULATED:
        assert prepared.path_reason.startswith("1 blocks x 3 slices of 2 units")
    wide = make_args(Case("gru", 2, 3, 3, 5, dtype="float64"))
    prepared = numba_cuda.prepare(wide, small("auto", persistent_max_batch=2))
    assert prepared.path == "stepwise"
    assert prepared.path_reason == "batch 3 > persistent_max_batch 2"


def test_forced_persistent_serves_a_larger_batch():
    args = make_args(Case("lstm", 2, 3, 3, 5, dtype="float64", variable_lengths=True))
    prepared = numba_cuda.prepare(args, small("persistent", persistent_max_batch=2,
                                              persistent_batch_per_thread=2))
    # shared arrays sized for 4; batch groups of 2 and 1
    assert (prepared.plan.max_batch, prepared.plan.batch_per_thread) == (4, 2)
    assert_steps_match_reference(prepared, args)


def test_default_config_sizes_slices_to_shared_memory():
    args = make_args(Case("lstm", 2, 1, 3, 4, dtype="float32"))
    prepared = numba_cuda.prepare(args, numba_cuda.CudaConfig())   # the GPU's defaults
    assert prepared.path == "persistent"
    assert prepared.plan.units == 4     # all of H fits 48 KiB: 4 gates x 4 units x 4 floats
    assert prepared.plan.ksplit == 16   # 16 rows x 16 lanes fill the 256 threads
    tiny_budget = numba_cuda.CudaConfig(shared_memory_bytes=100, path="auto")
    prepared = numba_cuda.prepare(args, tiny_budget)
    assert prepared.path == "stepwise"
    assert "do not fit 100 bytes of shared memory" in prepared.path_reason
    with pytest.raises(ValueError, match="persistent kernel cannot run this problem"):
        numba_cuda.prepare(args, numba_cuda.CudaConfig(shared_memory_bytes=100,
                                                       path="persistent"))


def test_persistent_build_failure_falls_back_to_stepwise(monkeypatch):
    def no_devrt(*_args):
        raise OSError("libcudadevrt.a not found")

    monkeypatch.setattr(numba_cuda, "cooperative_block_limit", no_devrt)
    prepared = numba_cuda.prepare(make_args(Case("gru", 2, 1, 3, 4)))
    assert prepared.path == "stepwise"
    assert prepared.path_reason == ("persistent kernel does not build: OSError: "
                                    "libcudadevrt.a not found")


@pytest.mark.skipif(SIMULATED, reason="the simulator runs one block per cooperative grid")
def test_persistent_spans_several_blocks():
    args = make_args(Case("gru", 3, 2, 3, 5, dtype="float64", variant="reset_before",
                             variable_lengths=True))
    prepared = numba_cuda.prepare(args, small("persistent"))
    assert prepared.plan.blocks == 3 and prepared.plan.slices_per_block == 1
    assert_steps_match_reference(prepared, args)


def test_convenience_api_forward():
    args = make_args(Case("lstm", 2, 2, 3, 4, dtype="float64"))
    y, h_n, c_n = numba_cuda.lstm_forward(args.x, args.h0, args.c0, args.w_ih, args.w_hh,
                                          args.b_ih, args.b_hh)
    want = reference.lstm_forward(args.x, args.h0, args.c0, args.w_ih, args.w_hh,
                                  args.b_ih, args.b_hh)
    for got, expected in zip((y, h_n, c_n), want, strict=True):
        assert tolerances.FLOAT64.allclose(got, expected)


def test_bad_input_is_rejected_before_any_kernel():
    args = make_args(Case("gru", 2, 1, 3, 4))
    with pytest.raises(TypeError, match="all arrays must share one dtype"):
        numba_cuda.gru_forward(args.x.astype(np.float64), args.h0, args.w_ih, args.w_hh,
                               args.b_ih, args.b_hh)
    with pytest.raises(ValueError, match="path must be one of"):
        numba_cuda.CudaConfig(path="fast")


def test_problem_too_large_for_device_memory_fails_before_allocating(monkeypatch):
    class TinyContext:
        def get_memory_info(self):
            return 1024, 1024

    monkeypatch.setattr(cuda, "current_context", lambda: TinyContext())
    args = make_args(Case("gru", 2, 1, 3, 4))
    with pytest.raises(MemoryError, match=r"needs about [\d.]+ KiB of GPU memory; "
                                          r"1.0 KiB is free"):
        numba_cuda.prepare(args)


def test_kernel_failure_names_the_kernel():
    @cuda.jit
    def fill(a):
        a[cuda.grid(1)] = 1.0

    with pytest.raises(CudaKernelError, match="CUDA kernel 'probe' failed"):
        cuda_matmul.launch("probe", fill, (1, 1), "not an array")


@pytest.mark.slow
@pytest.mark.skipif(not SIMULATED, reason="on a GPU the other tests compile the kernels")
def test_kernels_compile_to_ptx_for_h100():
    """The simulator never compiles: check typing and lowering with NVVM (where installed,
    the cuda-ptx extra), and that float32 kernels do no float64 arithmetic."""
    script = Path(__file__).parents[2] / "scripts" / "check_ptx.py"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    run = subprocess.run([sys.executable, str(script), "--dtype", "float32"], env=env,
                         capture_output=True, text=True, timeout=600)
    if run.returncode == 77:
        why = run.stdout.strip().splitlines()[-1]
        if os.environ.get("GRUBENCH_REQUIRE_PTX") == "1":    # a job that installed cuda-ptx
            pytest.fail(f"GRUBENCH_REQUIRE_PTX=1 but nothing was checked: {why}")
        pytest.skip(why)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_registered_as_cuda_backend():
    backend = backends.get("numba-cuda")
    assert backend.device == "cuda"
    assert backend.available


def test_unavailable_without_gpu_or_simulator_says_why():
    if _gpu_present():
        pytest.skip("a GPU is present")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    code = ("from grubench.kernels import numba_cuda as m; ok, why = m.availability(); "
            "print(ok); print(why)")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    ok, why = run.stdout.splitlines()[:2]
    assert ok == "False" and "NUMBA_ENABLE_CUDASIM" in why
