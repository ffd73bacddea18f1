"""scripts/gpu_bench.py's pieces that run without a GPU: its sizes as Cases, the CUDA-event
clock under grubench.timing's loop, the errors against the float64 reference (lengths
kept), the report's rows. Like tests/kernels/test_numba_cuda.py it runs numba's CUDA
simulator when no GPU is present; the timed run itself needs a GPU (scripts/gpu_check.sh)."""
import importlib.util
import os
from pathlib import Path

import pytest

GPU_PRESENT = Path("/proc/driver/nvidia/gpus").is_dir() and any(
    Path("/proc/driver/nvidia/gpus").iterdir())
if "NUMBA_ENABLE_CUDASIM" not in os.environ and not GPU_PRESENT:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    from numba.core import config as _numba_config
    _numba_config.reload_config()   # numba may have read its config before we set it

from grubench import backends, tolerances  # noqa: E402
from grubench.case import Case  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_bench.py"


@pytest.fixture(scope="module")
def gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help(gpu_bench, capsys):
    with pytest.raises(SystemExit) as done:
        gpu_bench.main(["--help"])
    assert done.value.code == 0 and "--tiny" in capsys.readouterr().out


def test_deepbench_sizes_are_cases_with_input_size_h(gpu_bench):
    cases = gpu_bench.deepbench_cases()
    assert len(cases) == 2 * (18 + 2)          # every cell at 18 inference, 2 training sizes
    assert all(c.I == c.H and c.dtype == "float32" for c in cases)
    assert {(c.T, c.B, c.H) for c in cases if c.training} == {(100, 32, 512), (100, 64, 1024)}
    assert cases[0].T == 25 and cases[-1].T == 187      # short sequences first
    assert gpu_bench.modes(cases[0]) == ["forward"]
    assert gpu_bench.modes(Case("gru", 2, 1, 4, 4, mode="training")) == ["forward", "training"]


class FakeGPU:
    """Events on a fake device clock that each run() advances by 2 ms."""

    def __init__(self):
        self.now_ms = 0.0

    def event(self):
        gpu = self

        class Event:
            def record(self):
                self.at = gpu.now_ms

            def synchronize(self):
                pass

            def elapsed_time(self, later):
                return later.at - self.at

        return Event()

    def run(self):
        self.now_ms += 2.0


def test_event_clock_times_gpu_work_with_the_harness_loop(gpu_bench):
    gpu = FakeGPU()
    timed = gpu_bench.median_ms(gpu.run, lambda: None, gpu_bench.event_clock(gpu.event),
                                max_reps=10, rep_seconds=0.007)
    # 2 ms a call: the 4th sample passes 7 ms of GPU time
    assert timed == {"median_ms": 2.0, "min_ms": 2.0, "reps": 4}
    capped = gpu_bench.median_ms(gpu.run, lambda: None, gpu_bench.event_clock(gpu.event),
                                 max_reps=3, rep_seconds=1.0)
    assert capped["reps"] == 3


@pytest.mark.parametrize("case", [
    Case("lstm", 4, 3, 5, 5, mode="training", variable_lengths=True),
    Case("gru", 4, 3, 5, 5, variant="reset_before", variable_lengths=True),
], ids=lambda c: c.key)
def test_errors_against_the_reference_keep_lengths(gpu_bench, case):
    """A float32 run of the same inputs is within float32's tolerances of the reference;
    a reference that dropped the lengths (the script's old copy of as_float64) is not."""
    prepared = backends.get("numpy").prepare(case.make_args(0))
    errors = gpu_bench.errors_vs_reference(prepared, case, seed=0)
    assert errors["forward_rel_err"] < tolerances.FLOAT32_FORWARD.rtol
    if case.training:
        assert errors["grad_rel_err"] < tolerances.FLOAT32_GRADIENT.rtol
        assert errors["grad_worst"] in case.make_args(0).inputs()
    else:
        assert "grad_rel_err" not in errors


def test_markdown_rows_read_the_case_fields(gpu_bench):
    case = Case("lstm", 2, 2, 4, 4, mode="training")
    row = {**case.as_row(), "numba_path": "persistent",
           "numba_forward": {"median_ms": 2.0}, "torch_forward": {"median_ms": 3.0},
           "speed_forward": 1.5, "numba_training": {"median_ms": 4.0},
           "forward_rel_err": 1e-7, "grad_rel_err": 2e-6}
    env = {"hostname": "h", "cpu_model": "CPU X", "cores": 2, "gpus": [], "versions": {},
           "commit": "abc", "gpu_run": {"tf32": "off"}}
    text = gpu_bench.markdown(env, [row], [case], [])
    assert "| lstm | forward | 2 | 2 | 4 | persistent | 2.000 | 3.000 | 1.50x |" in text
    assert "| lstm | training | 2 | 2 | 4 | persistent | 4.000 | - | - |" in text
    assert "GPU: none" in text and "tf32: off" in text
    assert "Skipped (time budget): lstm T=2 N=2 H=4" in text
