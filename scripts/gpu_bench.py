"""numba-cuda against torch-cuda (cuDNN) at DeepBench's sizes, timed with CUDA events.

Self-contained (it needs only numpy, numba(-cuda), torch and the grubench checkout on
PYTHONPATH): the harness may not be on the GPU image. For every size it prepares both
backends from the same seeded float32 inputs (device-resident; no host transfer inside the
timed region), warms up (numba compiles there), then times ``forward()`` and, at the
training sizes, ``training_step()`` with grubench.timing's loop on a clock that reads CUDA
events: the median of at least 3 and at most ``--max-reps`` repetitions, until
``--rep-seconds`` seconds of GPU time. TF32 is off in torch (matmul and cuDNN). It also
reports the numba-cuda error against the float64 NumPy reference (grubench.accuracy:
forward y, and the largest relative error over all gradients at the training sizes).
Sizes are grubench.case.Case objects with I = H; the header is the harness's machine
context (grubench.machine) plus the CUDA libraries' versions.

Any failure in one size is recorded and the next size runs; results.json and results.md
are rewritten after every size, so a run cut short still leaves what it measured. Sizes
that would start after ``--budget-s`` seconds are listed as skipped.

    PYTHONPATH=. python scripts/gpu_bench.py --out "$OUT"          # on a GPU
    PYTHONPATH=. python scripts/gpu_bench.py --tiny --out /tmp/x   # simulator smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

if "--tiny" in sys.argv and "NUMBA_ENABLE_CUDASIM" not in os.environ:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"    # before numba.cuda is imported

from grubench import accuracy, machine, timing, tolerances  # noqa: E402
from grubench.case import Case  # noqa: E402
from grubench.files import write_atomic  # noqa: E402
from grubench.kernels import cuda_matmul, numba_cuda, torch_nn  # noqa: E402
from grubench.kernels.cells import CELLS  # noqa: E402
from grubench.kernels.cuda_matmul import Tile  # noqa: E402


def size_case(cell: str, T: int, N: int, H: int, training: bool) -> Case:
    """DeepBench's (T, N, H) with I = H, float32; a training case is also timed forward."""
    return Case(cell, T, N, H, H, mode="training" if training else "inference")


def deepbench_cases() -> list[Case]:
    """DeepBench inference sizes at T=25 first, then the training sizes, then T=187, so a
    run cut short still covers every kind of size; every cell at each."""
    inference = [(T, N, H) for T in (25, 187) for H in (512, 1024, 1536) for N in (1, 2, 4)]
    training = [(100, 32, 512), (100, 64, 1024)]
    sizes = ([(*s, False) for s in inference if s[0] == 25] + [(*s, True) for s in training]
             + [(*s, False) for s in inference if s[0] == 187])
    return [size_case(cell, *size) for size in sizes for cell in CELLS]


def tiny_cases() -> list[Case]:
    return [size_case("gru", 2, 1, 4, False), size_case("lstm", 2, 2, 4, True)]


def modes(case: Case) -> list[str]:
    """What is timed: forward, and at a training case also training_step."""
    return ["forward"] + (["training"] if case.training else [])


# ------------------------------------------------------------------------------- timing

def event_clock(new_event):
    """A clock for grubench.timing that reads the GPU's time: seconds from an origin event
    to a freshly recorded one, once the GPU has reached it. ``new_event()`` makes a timing
    event (numba's and torch's share the record/synchronize/elapsed_time API, in ms)."""
    origin = new_event()
    origin.record()

    def now() -> float:
        event = new_event()
        event.record()
        event.synchronize()
        return origin.elapsed_time(event) / 1e3

    return now


def numba_clock():
    from numba import cuda
    return event_clock(cuda.event)


def torch_clock():
    import torch
    return event_clock(lambda: torch.cuda.Event(enable_timing=True))


def median_ms(run, synchronize, clock, max_reps: int, rep_seconds: float) -> dict:
    """One warm-up call (numba compiles, cuDNN picks its algorithms), then
    grubench.timing.measure on ``clock``."""
    samples = timing.measure(run, synchronize, min_runs=min(3, max_reps), min_time=rep_seconds,
                             warmup_time=0.0, max_runs=max_reps, clock=clock)
    stats = timing.summarize(samples)
    return {"median_ms": stats.median_s * 1e3, "min_ms": stats.min_s * 1e3, "reps": stats.runs}


# ------------------------------------------------------------------------------- one size

def errors_vs_reference(prepared, case: Case, seed: int) -> dict:
    """The relative error of y (forward) and, in training, the worst gradient's, against
    the float64 reference of the same inputs."""
    want = accuracy.compute_reference(case, seed)
    call = prepared.training_step if case.training else prepared.forward
    got = accuracy.named_arrays(case.cell, prepared.to_numpy(call()), case.training)
    result = {"forward_rel_err": tolerances.errors(got["y"], want["y"])[1]}
    if case.training:
        gradients = [name for name in want if name.startswith("grad_")]
        _, worst_rel, worst = accuracy.compare({n: got[n] for n in gradients},
                                               {n: want[n] for n in gradients})
        result.update(grad_rel_err=worst_rel, grad_worst=worst.removeprefix("grad_"))
    return result


def time_modes(prepared, case: Case, clock, options) -> dict:
    """{mode: median_ms(...)} for each of the case's modes on ``prepared``."""
    return {mode: median_ms(prepared.forward if mode == "forward" else prepared.training_step,
                            prepared.synchronize, clock, options.max_reps, options.rep_seconds)
            for mode in modes(case)}


def measure_case(case: Case, options, torch_ok: bool, seed: int = 0) -> dict:
    args = case.make_args(seed)
    row = case.as_row()
    try:
        prepared = numba_cuda.prepare(args)
        row["numba_path"] = prepared.path
        row["numba_path_reason"] = prepared.path_reason
        for mode, timed in time_modes(prepared, case, numba_clock(), options).items():
            row[f"numba_{mode}"] = timed
        row.update(errors_vs_reference(prepared, case, seed))
        other = "stepwise" if prepared.path == "persistent" else "persistent"
        del prepared
    except Exception as error:
        row["numba_error"] = f"{type(error).__name__}: {error}"
        traceback.print_exc()
        other = None
    if other and options.other_path:
        try:   # the path auto did not pick, to check where the automatic choice switches
            prepared = numba_cuda.prepare(args, numba_cuda.CudaConfig(path=other))
            row["other_path"] = other
            for mode, timed in time_modes(prepared, case, numba_clock(), options).items():
                row[f"other_{mode}"] = timed
            del prepared
        except Exception as error:
            row["other_path"] = f"{other}: {type(error).__name__}: {str(error)[:200]}"
    if torch_ok:
        try:
            import torch
            prepared = torch_nn.prepare(args, device="cuda")
            for mode, timed in time_modes(prepared, case, torch_clock(), options).items():
                row[f"torch_{mode}"] = timed
            del prepared
            torch.cuda.empty_cache()
        except Exception as error:
            row["torch_error"] = f"{type(error).__name__}: {error}"
            traceback.print_exc()
    for mode in modes(case):
        numba_t, torch_t = row.get(f"numba_{mode}"), row.get(f"torch_{mode}")
        if numba_t and torch_t and numba_t["median_ms"] > 0:
            row[f"speed_{mode}"] = torch_t["median_ms"] / numba_t["median_ms"]
    return row


# ------------------------------------------------------------------------------- matmul

MATMUL_TILES = {"64x64 (16x16 thr, 4x4 each)": Tile(),
                "128x128 (16x16 thr, 8x8 each)": Tile(16, 16, 8, 8, 8),
                "32x32 (16x16 thr, 2x2 each)": Tile(16, 16, 2, 2, 16),
                "4x64 (step tile, N<=4)": numba_cuda.step_tile_for(4)}

# (label, M, K, N, trans_b): the products of a GRU training step at (T, N, H) = (100, 64, 1024)
# and of an inference step at N=4
MATMUL_SHAPES = [("input projection x @ w_ih.T", 6400, 1024, 3072, True),
                 ("dx = dgates @ w_ih", 6400, 3072, 1024, False),
                 ("recurrent N=64: h @ w_hh.T", 64, 1024, 3072, True),
                 ("recurrent N=4: h @ w_hh.T", 4, 1024, 3072, True)]
TINY_MATMUL_SHAPES = [("tiny", 5, 3, 7, True)]


def measure_matmuls(options, torch_ok: bool) -> list[dict]:
    """The tiled matmul at each tile shape against torch.matmul (TF32 off), float32."""
    from numba import cuda
    rows = []
    rng = np.random.default_rng(0)
    tiles = ({"tiny 4x4": Tile(2, 2, 2, 2, 2)} if options.tiny else MATMUL_TILES)
    for label, M, K, N, trans_b in TINY_MATMUL_SHAPES if options.tiny else MATMUL_SHAPES:
        a = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((N, K) if trans_b else (K, N), dtype=np.float32)
        row = {"product": label, "M": M, "K": K, "N": N}
        flops = 2.0 * M * N * K
        want = None
        if torch_ok:
            import torch
            ta, tb = torch.as_tensor(a, device="cuda"), torch.as_tensor(b, device="cuda")
            tc = torch.empty((M, N), device="cuda")
            op = tb.t() if trans_b else tb
            timed = median_ms(lambda: torch.matmul(ta, op, out=tc), torch.cuda.synchronize,
                              torch_clock(), options.max_reps, options.rep_seconds)
            row["torch"] = {**timed, "tflops": flops / timed["median_ms"] / 1e9}
            want = tc.cpu().numpy().astype(np.float64)
        da, db = cuda.to_device(a), cuda.to_device(b)
        dc = cuda.device_array((M, N), np.float32)
        for name, tile in tiles.items():
            try:
                timed = median_ms(
                    lambda: cuda_matmul.matmul(da, db, dc, trans_b=trans_b, tile=tile),
                    cuda.synchronize, numba_clock(), options.max_reps, options.rep_seconds)
                if timed["median_ms"] > 0:
                    timed["tflops"] = flops / timed["median_ms"] / 1e9
                if want is not None:
                    timed["rel_err_vs_torch"] = tolerances.errors(dc.copy_to_host(), want)[1]
                row[name] = timed
            except Exception as error:
                row[name] = {"error": f"{type(error).__name__}: {error}"}
        rows.append(row)
        print(f"matmul {label}: " + ", ".join(
            f"{k}={v.get('tflops', v.get('error', '?'))}" for k, v in row.items()
            if isinstance(v, dict)), flush=True)
    return rows


def matmul_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    tiles = [k for k in rows[0] if isinstance(rows[0][k], dict) and k != "torch"]
    lines = ["", "## Tiled matmul (float32) vs torch.matmul, TFLOP/s (median ms)", "",
             "| product | M | K | N | torch | " + " | ".join(tiles) + " |",
             "|---|---|---|---|---|" + "---|" * len(tiles)]

    def cell(entry):
        if not entry:
            return "-"
        if "error" in entry:
            return entry["error"][:60]
        return f"{entry.get('tflops', float('nan')):.1f} ({entry['median_ms']:.3f})"

    for row in rows:
        lines.append(f"| {row['product']} | {row['M']} | {row['K']} | {row['N']} "
                     f"| {cell(row.get('torch'))} | "
                     + " | ".join(cell(row.get(t)) for t in tiles) + " |")
    return lines


# ------------------------------------------------------------------------------- context

def environment() -> dict:
    """The harness's machine context (CPU, GPUs and driver per nvidia-smi, library versions,
    commit), plus under "gpu_run" what only a GPU run has: numba's CUDA backend, cuDNN,
    CUDA versions."""
    env = {"numba_cuda_backend": (numba_cuda.version() if numba_cuda.availability()[0]
                                  else numba_cuda.availability()[1])}
    try:
        import torch
        env["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            env["cudnn"] = torch.backends.cudnn.version()
    except ImportError as error:
        env["torch_cuda"] = f"torch missing: {error}"
    try:
        from numba import cuda
        if not numba_cuda.simulator_enabled():
            env["cuda_driver_api"] = ".".join(map(str, cuda.cudadrv.driver.driver.get_version()))
            env["cuda_runtime_numba"] = ".".join(map(str, cuda.runtime.get_version()))
    except Exception as error:
        env["cuda_version_error"] = f"{type(error).__name__}: {error}"
    env["tf32"] = "off (torch.backends.cuda.matmul.allow_tf32 = cudnn.allow_tf32 = False)"
    return {**machine.context(), "gpu_run": env}


def header(env: dict) -> str:
    """The environment as one Markdown table row: the machine's short name, its GPUs,
    the versions, then the GPU run's own fields."""
    gpus = "; ".join(f"{g['name']} (driver {g['driver']})" for g in env["gpus"]) or "none"
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    return "| " + " | ".join([machine.short_name(env), f"GPU: {gpus}", versions,
                              f"commit {env['commit']}",
                              *(f"{k}: {v}" for k, v in env["gpu_run"].items())]) + " |"


def fmt_ms(entry) -> str:
    return "-" if not entry else f"{entry['median_ms']:.3f}"


def other_cell(row: dict, mode: str) -> str:
    """The path auto did not pick: 'stepwise 1.234', or why it could not run."""
    if "other_path" not in row:
        return "-"
    timing = row.get(f"other_{mode}")
    return f"{row['other_path']} {fmt_ms(timing)}" if timing else row["other_path"][:80]


def markdown(env: dict, rows: list[dict], skipped: list[Case], matmuls: list[dict]) -> str:
    lines = ["# numba-cuda vs torch-cuda (cuDNN), float32, TF32 off", "",
             header(env), "",
             "Median of CUDA-event times per call (ms); speed = torch / numba-cuda "
             "(> 1: numba-cuda faster). rel err: ||out - ref|| / ||ref|| against float64.", "",
             "| cell | mode | T | N | H | numba path | numba-cuda ms | torch-cuda ms | speed "
             "| other path ms | fwd rel err | grad rel err | error |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for mode in modes(Case.from_row(row)):
            speed = row.get(f"speed_{mode}")
            errors = "; ".join(row[k] for k in ("numba_error", "torch_error") if k in row)
            grad = row.get("grad_rel_err") if mode == "training" else None
            lines.append(
                f"| {row['cell']} | {mode} | {row['T']} | {row['B']} | {row['H']} "
                f"| {row.get('numba_path', '-')} | {fmt_ms(row.get(f'numba_{mode}'))} "
                f"| {fmt_ms(row.get(f'torch_{mode}'))} "
                f"| {'-' if speed is None else f'{speed:.2f}x'} "
                f"| {other_cell(row, mode)} "
                f"| {row.get('forward_rel_err', float('nan')):.1e} "
                f"| {'-' if grad is None else f'{grad:.1e}'} | {errors[:120]} |")
    if skipped:
        lines += ["", "Skipped (time budget): " + ", ".join(
            f"{c.cell} T={c.T} N={c.B} H={c.H}" for c in skipped)]
    lines += matmul_markdown(matmuls)
    return "\n".join(lines) + "\n"


def summary(row: dict) -> str:
    """One progress line: path, medians, speeds and errors of a measured size."""
    keys = ("numba_path", "numba_forward", "torch_forward", "speed_forward", "numba_training",
            "torch_training", "speed_training", "other_path", "other_forward",
            "other_training", "numba_error", "torch_error")
    return ", ".join(f"{k}={row[k]}" for k in keys if k in row)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu_out"))
    parser.add_argument("--tiny", action="store_true",
                        help="two tiny sizes (runs on the CUDA simulator without a GPU)")
    parser.add_argument("--budget-s", type=float, default=270.0,
                        help="start no new size after this many seconds")
    parser.add_argument("--max-reps", type=int, default=30)
    parser.add_argument("--rep-seconds", type=float, default=0.5)
    parser.add_argument("--no-matmul", action="store_true",
                        help="skip the matmul-vs-torch section")
    parser.add_argument("--no-other-path", dest="other_path", action="store_false",
                        help="time only the path numba-cuda picks automatically")
    options = parser.parse_args(argv)
    if options.tiny:    # the simulator's events read 0 s: no GPU time ever ends the loop
        options.max_reps = min(options.max_reps, 3)
    # numba warns that tiny grids under-use the GPU: true of the pointwise kernels at N=1
    warnings.filterwarnings("ignore", message=".*under-utilization.*")
    started = time.perf_counter()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    ok, why = numba_cuda.availability()
    torch_ok, torch_why = torch_nn.availability("cuda")
    if torch_ok:
        import torch
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    env = environment()
    env["gpu_run"]["torch_cuda_available"] = torch_ok if torch_ok else torch_why
    rows, skipped, matmuls = [], [], []
    cases = tiny_cases() if options.tiny else deepbench_cases()

    def save(pending):
        write_atomic(out / "results.json", json.dumps(
            {"environment": env, "results": rows, "matmul": matmuls,
             "skipped": [c.as_row() for c in pending]}, indent=1, default=str))
        write_atomic(out / "results.md", markdown(env, rows, pending, matmuls))

    if ok and not options.no_matmul:
        try:
            matmuls = measure_matmuls(options, torch_ok)
        except Exception:
            traceback.print_exc()
        save(cases)
    for index, case in enumerate(cases):
        if time.perf_counter() - started > options.budget_s:
            skipped = cases[index:]
            break
        if not ok:
            rows.append({**case.as_row(), "numba_error": f"unavailable: {why}"})
        else:
            rows.append(measure_case(case, options, torch_ok))
        print(f"[{time.perf_counter() - started:6.1f}s] {case.key}: {summary(rows[-1])}",
              flush=True)
        save(cases[index + 1:])
    save(skipped)
    print(markdown(env, rows, skipped, matmuls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
