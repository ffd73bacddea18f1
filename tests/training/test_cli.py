"""grubench train end to end: a tiny run writes its reports; user mistakes exit 2 with one
line naming the problem, no traceback, and no report."""
import json

import numpy as np

import pytest

from grubench.cli import main

TINY = ["train", "--dataset", "japanese-vowels", "--cells", "gru", "--epochs", "1",
        "--hidden", "4", "--backends", "numpy,torch-autograd"]


@pytest.mark.slow
def test_tiny_run_writes_the_reports(tmp_path, capsys):
    assert main(TINY + ["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "japanese-vowels | gru  | numpy" in out and "torch-autograd" in out
    results = json.loads((tmp_path / "training.json").read_text())["results"]
    assert [r["backend"] for r in results] == ["numpy", "torch-autograd"]
    assert results[0]["parameters"] == results[1]["parameters"] == 3 * 4 * (12 + 4 + 2) + 9 * 5
    assert {p.name for p in tmp_path.iterdir()} == {"training.md", "training.csv",
                                                   "training.json", "training_curves.png"}


@pytest.mark.slow
def test_stacked_bidirectional_run_records_layers_and_directions(tmp_path, capsys):
    assert main(TINY + ["--layers", "2", "--bidirectional", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "training.json").read_text())["results"]
    assert [(r["layers"], r["directions"]) for r in results] == [(2, 2), (2, 2)]
    recurrent = 2 * 3 * 4 * (12 + 4 + 2) + 2 * 3 * 4 * (8 + 4 + 2)
    assert results[0]["parameters"] == results[1]["parameters"] == recurrent + 9 * 9
    assert "2 layers, bidirectional" in (tmp_path / "training.md").read_text()


@pytest.mark.parametrize("arguments, message", [
    (["--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["--data", "{tmp}/missing.npz"], "missing.npz: no such file or folder"),
    (["--data", "{tmp}"], "no reviews in"),
    (["--cells", "gru,rnn"], "unknown cell 'rnn'"),
    (["--backends", "numpy,fortran"], "unknown backend 'fortran'"),
    (["--backends", "onnxruntime"], "backend 'onnxruntime' cannot train: ONNX Runtime runs"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--layers", "0"], "--layers must be positive"),
    (["--backends", "numba-cuda"], "backend 'numba-cuda' runs on cuda"),
    (["--lr", "nan"], "--lr must be positive, got nan"),
    (["--threads", "two"], "--threads must be a comma list of integers"),
    (["--out", "{tmp}/file.txt"], "exists and is not a directory"),
    (["--hidden", "100000000"], "--hidden 100000000 needs at least"),
])
def test_user_mistakes_exit_2_with_a_message(tmp_path, capsys, arguments, message):
    (tmp_path / "file.txt").write_text("not a folder")
    arguments = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    out_dir = tmp_path / "reports"
    status = main(["train", "--out", str(out_dir)] + arguments)
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and "Traceback" not in err
    assert not out_dir.exists() or not any(out_dir.iterdir())


@pytest.mark.slow
def test_imdb_npz_path_trains_with_an_embedding(tmp_path, capsys):
    reviews = np.empty(8, dtype=object)
    for i in range(8):
        reviews[i] = list(range(1, 3 + i))
    path = tmp_path / "imdb.npz"
    np.savez(path, x_train=reviews, y_train=np.arange(8) % 2, x_test=reviews[:4],
             y_test=np.arange(4) % 2)
    assert main(["train", "--data", str(path), "--cells", "lstm", "--epochs", "1",
                 "--hidden", "4", "--embed", "3", "--backends", "numpy",
                 "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "training.json").read_text())["results"][0]
    assert result["dataset"] == "imdb"
    # embedding 10,000 x 3, LSTM 4*4*(3+4+2), one sigmoid unit on 4 states
    assert result["parameters"] == 10_000 * 3 + 4 * 4 * (3 + 4 + 2) + 5
    assert "imdb" in capsys.readouterr().out


def test_default_backends_fall_back_to_numpy_without_numba(monkeypatch, capsys):
    from grubench import backends
    from grubench.training import cli

    assert cli.default_backends()[1] == "torch-autograd"
    monkeypatch.setattr(backends, "names", lambda: ["numpy", "torch-cpu"])
    assert cli.default_backends() == ["numpy", "torch-autograd"]
    assert "numba-cpu is unavailable" in capsys.readouterr().out


def test_a_crashing_training_worker_exits_2_and_writes_no_report(tmp_path, capsys,
                                                                 monkeypatch):
    # every Python started from now on aborts at start-up: the training worker dies
    crash = tmp_path / "crash"
    crash.mkdir()
    (crash / "sitecustomize.py").write_text("import os\nos.abort()\n")
    monkeypatch.setenv("PYTHONPATH", str(crash))
    out_dir = tmp_path / "reports"
    status = main(TINY + ["--out", str(out_dir)])
    err = capsys.readouterr().err
    assert status == 2
    assert "the training worker died (signal SIGABRT)" in err and "Traceback" not in err
    assert not out_dir.exists() or not any(out_dir.iterdir())


@pytest.mark.parametrize("backend, message", [
    ("torch-autograd", "backend 'torch-autograd' is unavailable: torch is missing here"),
    ("fake-unavailable", "backend 'fake-unavailable' is unavailable: fake reason it cannot run"),
])
def test_an_unavailable_backend_exits_2_before_training(tmp_path, capsys, monkeypatch,
                                                        backend, message):
    from fake_backends import install
    from grubench.training import runner, torch_model
    from grubench.backends import load_plugins

    install(monkeypatch)
    load_plugins()
    monkeypatch.setattr(torch_model, "availability", lambda: (False, "torch is missing here"))
    monkeypatch.setattr(runner, "run_in_worker",
                        lambda *a: pytest.fail("a worker started for an unavailable backend"))
    status = main(["train", "--dataset", "japanese-vowels", "--backends", f"numpy,{backend}",
                   "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err
