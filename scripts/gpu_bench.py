"""numba-cuda against torch-cuda (cuDNN) at DeepBench's sizes, timed with CUDA events.

Self-contained (it needs only numpy, numba(-cuda), torch and the grubench checkout on
PYTHONPATH): the harness may not be on the GPU image. For every size it prepares both
backends from the same seeded float32 inputs (device-resident; no host transfer inside the
timed region), warms up (numba compiles there), then times ``forward()`` and, at the
training sizes, ``training_step()`` with CUDA events: the median of up to ``--max-reps``
repetitions or ``--rep-seconds`` seconds. TF32 is off in torch (matmul and cuDNN). It
also reports the numba-cuda error against the float64 NumPy reference (forward y, and the
largest relative error over all gradients at the training sizes).

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
import platform
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

if "--tiny" in sys.argv and "NUMBA_ENABLE_CUDASIM" not in os.environ:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"    # before numba.cuda is imported

from grubench import tolerances  # noqa: E402
from grubench.files import write_atomic  # noqa: E402
from grubench.kernels import cuda_matmul, numba_cuda, reference, torch_nn  # noqa: E402
from grubench.kernels.cuda_matmul import Tile  # noqa: E402
from grubench.kernels.contract import validate  # noqa: E402
from grubench.problems import Problem  # noqa: E402


@dataclass(frozen=True)
class Case:
    cell: str
    T: int
    N: int
    H: int
    training: bool     # also time training_step (and check gradients)

    def problem(self) -> Problem:
        return Problem(self.cell, self.T, self.N, self.H, self.H, dtype="float32")


def issue4_cases() -> list[Case]:
    """DeepBench inference sizes at T=25 first, then the training sizes, then T=187, so a
    run cut short still covers every kind of size."""
    inference = [(T, N, H) for T in (25, 187) for H in (512, 1024, 1536) for N in (1, 2, 4)]
    training = [(100, 32, 512), (100, 64, 1024)]
    cases = []
    for T, N, H in [s for s in inference if s[0] == 25]:
        cases += [Case(cell, T, N, H, False) for cell in ("gru", "lstm")]
    for T, N, H in training:
        cases += [Case(cell, T, N, H, True) for cell in ("gru", "lstm")]
    for T, N, H in [s for s in inference if s[0] == 187]:
        cases += [Case(cell, T, N, H, False) for cell in ("gru", "lstm")]
    return cases


def tiny_cases() -> list[Case]:
    return [Case("gru", 2, 1, 4, False), Case("lstm", 2, 2, 4, True)]


# ------------------------------------------------------------------------------- timing

class EventClock:
    """GPU time between two recorded CUDA events (numba's and torch's share this API)."""

    def __init__(self, start, end):
        self.start, self.end = start, end

    def begin(self):
        self.start.record()

    def stop(self) -> float:
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end)


def NumbaClock() -> EventClock:  # noqa: N802 - reads as the class it stands for
    from numba import cuda
    return EventClock(cuda.event(), cuda.event())


def TorchClock() -> EventClock:  # noqa: N802
    import torch
    return EventClock(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))


def median_ms(run, synchronize, clock, max_reps: int, rep_seconds: float) -> dict:
    run()                       # warm-up: compiles numba kernels, picks cuDNN algorithms
    synchronize()
    times = []
    deadline = time.perf_counter() + rep_seconds
    while len(times) < max_reps and (len(times) < 3 or time.perf_counter() < deadline):
        clock.begin()
        run()
        times.append(clock.stop())
    return {"median_ms": statistics.median(times), "min_ms": min(times), "reps": len(times)}


# ------------------------------------------------------------------------------- one size

def as_float64(args):
    def cast(a):
        return None if a is None else a.astype(np.float64)
    return validate(args.cell, cast(args.x), cast(args.h0), cast(args.c0), cast(args.w_ih),
                    cast(args.w_hh), cast(args.b_ih), cast(args.b_hh),
                    reset_after=args.reset_after, dy=cast(args.dy), dh_n=cast(args.dh_n),
                    dc_n=cast(args.dc_n))


def accuracy(prepared, args, training: bool) -> dict:
    exact = reference.prepare(as_float64(args))
    if training:
        want_outputs, want_grads = exact.training_step()
        outputs, grads = prepared.to_numpy(prepared.training_step())
        grad_errors = {k: tolerances.errors(grads[k], want_grads[k])[1] for k in want_grads}
        worst = max(grad_errors, key=grad_errors.get)
        result = {"grad_rel_err": grad_errors[worst], "grad_worst": worst}
    else:
        want_outputs = exact.forward()
        outputs, result = prepared.to_numpy(prepared.forward()), {}
    result["forward_rel_err"] = tolerances.errors(outputs[0], want_outputs[0])[1]
    return result


def measure_case(case: Case, options, torch_ok: bool) -> dict:
    args = case.problem().make_args(seed=0, with_grads=True)
    row = {**asdict(case)}
    modes = ["forward"] + (["training"] if case.training else [])
    try:
        prepared = numba_cuda.prepare(args)
        row["numba_path"] = prepared.path
        row["numba_path_reason"] = prepared.path_reason
        clock = NumbaClock()
        for mode in modes:
            run = prepared.forward if mode == "forward" else prepared.training_step
            row[f"numba_{mode}"] = median_ms(run, prepared.synchronize, clock,
                                             options.max_reps, options.rep_seconds)
        row.update(accuracy(prepared, args, case.training))
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
            for mode in modes:
                run = prepared.forward if mode == "forward" else prepared.training_step
                row[f"other_{mode}"] = median_ms(run, prepared.synchronize, NumbaClock(),
                                                 options.max_reps, options.rep_seconds)
            del prepared
        except Exception as error:
            row["other_path"] = f"{other}: {type(error).__name__}: {str(error)[:200]}"
    if torch_ok:
        try:
            import torch
            prepared = torch_nn.prepare(args, device="cuda")
            clock = TorchClock()
            for mode in modes:
                run = prepared.forward if mode == "forward" else prepared.training_step
                row[f"torch_{mode}"] = median_ms(run, prepared.synchronize, clock,
                                                 options.max_reps, options.rep_seconds)
            del prepared
            torch.cuda.empty_cache()
        except Exception as error:
            row["torch_error"] = f"{type(error).__name__}: {error}"
            traceback.print_exc()
    for mode in modes:
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
            timing = median_ms(lambda: torch.matmul(ta, op, out=tc), torch.cuda.synchronize,
                               TorchClock(), options.max_reps, options.rep_seconds)
            row["torch"] = {**timing, "tflops": flops / timing["median_ms"] / 1e9}
            want = tc.cpu().numpy().astype(np.float64)
        da, db = cuda.to_device(a), cuda.to_device(b)
        dc = cuda.device_array((M, N), np.float32)
        for name, tile in tiles.items():
            try:
                timing = median_ms(
                    lambda: cuda_matmul.matmul(da, db, dc, trans_b=trans_b, tile=tile),
                    cuda.synchronize, NumbaClock(), options.max_reps, options.rep_seconds)
                if timing["median_ms"] > 0:
                    timing["tflops"] = flops / timing["median_ms"] / 1e9
                if want is not None:
                    timing["rel_err_vs_torch"] = tolerances.errors(dc.copy_to_host(), want)[1]
                row[name] = timing
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
    import numba
    from importlib.metadata import PackageNotFoundError, version
    env = {"python": platform.python_version(), "numba": numba.__version__,
           "numba_cuda_backend": numba_cuda.version() if numba_cuda.availability()[0]
           else numba_cuda.availability()[1]}
    try:
        env["numba-cuda"] = version("numba-cuda")
    except PackageNotFoundError:
        env["numba-cuda"] = "not installed (numba's built-in numba.cuda)"
    try:
        import torch
        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
            env["cudnn"] = torch.backends.cudnn.version()
    except ImportError as error:
        env["torch"] = f"missing: {error}"
    try:
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                                "--format=csv,noheader"], capture_output=True, text=True,
                               timeout=20)
        if query.returncode == 0 and query.stdout.strip():
            name, driver = [s.strip() for s in query.stdout.splitlines()[0].split(",")]
            env.update(gpu=name, driver=driver)
    except (OSError, subprocess.SubprocessError):
        env.setdefault("driver", "unknown (no nvidia-smi)")
    try:
        from numba import cuda
        if not numba_cuda.simulator_enabled():
            env["cuda_driver_api"] = ".".join(map(str, cuda.cudadrv.driver.driver.get_version()))
            env["cuda_runtime_numba"] = ".".join(map(str, cuda.runtime.get_version()))
    except Exception as error:
        env["cuda_version_error"] = f"{type(error).__name__}: {error}"
    env["tf32"] = "off (torch.backends.cuda.matmul.allow_tf32 = cudnn.allow_tf32 = False)"
    return env


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
             "| " + " | ".join(f"{k}: {v}" for k, v in env.items()) + " |", "",
             "Median of CUDA-event times per call (ms); speed = torch / numba-cuda "
             "(> 1: numba-cuda faster). rel err: ||out - ref|| / ||ref|| against float64.", "",
             "| cell | mode | T | N | H | numba path | numba-cuda ms | torch-cuda ms | speed "
             "| other path ms | fwd rel err | grad rel err | error |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        modes = ["forward"] + (["training"] if row["training"] else [])
        for mode in modes:
            speed = row.get(f"speed_{mode}")
            errors = "; ".join(row[k] for k in ("numba_error", "torch_error") if k in row)
            grad = row.get("grad_rel_err") if mode == "training" else None
            lines.append(
                f"| {row['cell']} | {mode} | {row['T']} | {row['N']} | {row['H']} "
                f"| {row.get('numba_path', '-')} | {fmt_ms(row.get(f'numba_{mode}'))} "
                f"| {fmt_ms(row.get(f'torch_{mode}'))} "
                f"| {'-' if speed is None else f'{speed:.2f}x'} "
                f"| {other_cell(row, mode)} "
                f"| {row.get('forward_rel_err', float('nan')):.1e} "
                f"| {'-' if grad is None else f'{grad:.1e}'} | {errors[:120]} |")
    if skipped:
        lines += ["", "Skipped (time budget): " + ", ".join(
            f"{c.cell} T={c.T} N={c.N} H={c.H}" for c in skipped)]
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
    env["torch_cuda_available"] = torch_ok if torch_ok else torch_why
    rows, skipped, matmuls = [], [], []
    cases = tiny_cases() if options.tiny else issue4_cases()

    def save(pending):
        write_atomic(out / "results.json", json.dumps(
            {"environment": env, "results": rows, "matmul": matmuls,
             "skipped": [asdict(c) for c in pending]}, indent=1, default=str))
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
            rows.append({**asdict(case), "numba_error": f"unavailable: {why}"})
        else:
            rows.append(measure_case(case, options, torch_ok))
        print(f"[{time.perf_counter() - started:6.1f}s] {case}: {summary(rows[-1])}",
              flush=True)
        save(cases[index + 1:])
    save(skipped)
    print(markdown(env, rows, skipped, matmuls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
