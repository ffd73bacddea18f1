"""grubench tune: every case of a suite tuned in pinned workers, the choices stored."""
import json

import pytest

from grubench import cli, tuning
from grubench.kernels.numba_cpu import mkl

needs_mkl = pytest.mark.skipif(mkl.library()[0] is None, reason="numba-cpu tunes only with MKL")


@needs_mkl
def test_tune_stores_a_choice_per_case_and_force_measures_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(tuning.DIR_ENV, str(tmp_path))
    tuning.machine_cache.cache_clear()
    argv = ["tune", "--suite", "quick", "--backends", "numba-cpu,torch-cpu"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "  numba-cpu | gru/reset_after/training/4,16,32/float32/t1  | product |" in out
    assert "torch-cpu" not in out                   # nothing of torch-cpu is tunable
    [path] = tmp_path.glob("tuning-*.json")
    first = json.loads(path.read_text())["choices"]["numba-cpu"]["product"]
    assert len(first) == 8                          # quick: 2 sizes x 2 cells x 2 modes
    assert all(set(c["seconds"]) == {"tiles", "mkl"} and c["value"] in c["seconds"]
               for c in first.values())
    assert cli.main(argv) == 0                      # stored: read back, not measured
    assert json.loads(path.read_text())["choices"]["numba-cpu"]["product"] == first
    assert cli.main([*argv, "--force"]) == 0
    again = json.loads(path.read_text())["choices"]["numba-cpu"]["product"]
    assert all(again[k]["seconds"] != first[k]["seconds"] for k in first)
    tuning.machine_cache.cache_clear()


def test_tune_with_tuning_off_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv(tuning.DIR_ENV, "off")
    assert cli.main(["tune", "--suite", "quick"]) == 2
    assert "tuning is off (GRUBENCH_TUNING_DIR=off)" in capsys.readouterr().err
