"""grubench model: the swap of every torch.nn.GRU/LSTM for grubench.nn's, the results
against torch's within grubench.tolerances, the errors (one line, exit 2) and the command
end to end (workers, report files)."""
import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import grubench.nn as gnn  # noqa: E402
import model_factories  # noqa: E402
from grubench import cli, modelbench  # noqa: E402
from grubench.kernels import numba_cpu  # noqa: E402
from grubench.modelbench import ModelError  # noqa: E402

pytestmark = pytest.mark.skipif(not numba_cpu.availability()[0],
                                reason=str(numba_cpu.availability()[1]))

FACTORIES = "tests.model_factories"


def test_swap_replaces_every_gru_and_lstm_at_any_depth_and_keeps_shared_ones_shared():
    module, _ = model_factories.nested()
    swapped, paths = modelbench.swap_recurrent(module)
    assert swapped is module
    assert paths == ["stack.0", "stack.1", "inner.first", "inner.again"]
    assert type(module.stack[0]) is gnn.GRU and type(module.stack[1]) is gnn.LSTM
    assert type(module.inner.first) is gnn.GRU
    assert module.inner.again is module.inner.first
    assert module.stack[0].num_layers == 2 and module.stack[0].bidirectional
    assert not any(type(m) in (torch.nn.GRU, torch.nn.LSTM) for m in module.modules())


def test_swap_of_a_model_that_is_one_gru_returns_the_copy():
    module, _ = model_factories.tiny()
    swapped, paths = modelbench.swap_recurrent(module, backend="numpy")
    assert paths == [""] and type(swapped) is gnn.GRU and swapped.backend_name == "numpy"
    assert torch.equal(swapped.weight_hh_l0_reverse, module.weight_hh_l0_reverse)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_swapped_model_matches_torch_outputs_and_every_gradient(dtype, tmp_path):
    torch.manual_seed(0)
    module, x = model_factories.nested(dtype)
    theirs = modelbench._Runner(copy.deepcopy(module), (x,), seed=0)
    ours = modelbench._Runner(modelbench.swap_recurrent(module)[0], (x,), seed=0)
    np.savez(tmp_path / "theirs.npz", **theirs.results(training=True))
    np.savez(tmp_path / "ours.npz", **ours.results(training=True))
    compared = modelbench.compare(tmp_path / "ours.npz", tmp_path / "theirs.npz")
    names = {row["name"] for row in compared}
    assert {"output 0", "output 1", "output 2", "grad input 0"} <= names
    assert {f"grad {name}" for name, _ in module.named_parameters()} <= names
    bad = [row for row in compared if not row["within"]]
    assert not bad, bad
    worst = max(row["rel_err"] for row in compared)
    assert worst < (1e-10 if dtype == "float64" else 1e-4)


def test_compare_flags_a_result_beyond_the_tolerance(tmp_path):
    ok = np.linspace(1, 2, 12, dtype=np.float32).reshape(3, 4)
    np.savez(tmp_path / "theirs.npz", **{"output 0": ok, "grad w": ok})
    np.savez(tmp_path / "ours.npz", **{"output 0": ok * (1 + 1e-3), "grad w": ok})
    rows = {r["name"]: r for r in modelbench.compare(tmp_path / "ours.npz",
                                                     tmp_path / "theirs.npz")}
    assert not rows["output 0"]["within"] and rows["grad w"]["within"]
    assert rows["output 0"]["rel_err"] == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize("text", ["tests.model_factories", "tests.model_factories:",
                                  ":tiny", "tests/model_factories:tiny", "a b:c"])
def test_factory_must_be_a_dotted_path(text):
    with pytest.raises(ModelError, match="dotted path"):
        modelbench.parse_factory(text)


@pytest.mark.parametrize("factory, message", [
    ("no_such_package.models:make", "cannot import 'no_such_package.models'"),
    (f"{FACTORIES}:missing", "has no 'missing'"),
    (f"{FACTORIES}:NOT_CALLABLE", "is a int, not a callable"),
    (f"{FACTORIES}:raises", "raised RuntimeError: no data here"),
    (f"{FACTORIES}:module_only", "must return \\(module, example_inputs\\)"),
])
def test_factory_errors_name_the_problem(factory, message):
    with pytest.raises(ModelError, match=message):
        modelbench.build(factory, {}, seed=0)


def test_a_model_without_gru_or_lstm_and_an_unsupported_argument_are_errors():
    with pytest.raises(ModelError, match="no torch.nn.GRU or torch.nn.LSTM inside"):
        modelbench.swap_recurrent(model_factories.no_recurrent()[0])
    with pytest.raises(ModelError, match="^0: proj_size=2 is not supported"):
        modelbench.swap_recurrent(model_factories.projected()[0])

    class MyGRU(torch.nn.GRU):
        pass
    with pytest.raises(ModelError, match="MyGRU, a subclass of torch.nn.GRU"):
        modelbench.swap_recurrent(torch.nn.Sequential(MyGRU(2, 3)))


def test_params_are_python_literals_or_text():
    assert modelbench.parse_param("batch=32") == ("batch", 32)
    assert modelbench.parse_param("bidirectional=False") == ("bidirectional", False)
    assert modelbench.parse_param("cell=lstm") == ("cell", "lstm")
    with pytest.raises(ModelError, match="NAME=VALUE"):
        modelbench.parse_param("32")


def run_cli(capsys, *argv):
    code = cli.main(["model", *argv, "--min-runs", "1", "--min-time", "0.01"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_command_times_both_versions_and_writes_the_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(modelbench.Path(__file__).parents[1])   # the worker imports tests.*
    code, out, err = run_cli(capsys, f"{FACTORIES}:tiny", "--overhead", "--out",
                             str(tmp_path))
    assert code == 0, err
    document = json.loads((tmp_path / "model.json").read_text())
    variants = [row["variant"] for row in document["results"]]
    assert variants == ["grubench.nn", "torch.nn"]
    ours, theirs = document["results"]
    assert ours["recurrent"] == [""] and theirs["recurrent"] is None
    assert 0 < ours["networks_share"] and theirs["networks_share"] is None
    assert all(row["median_s"] > 0 and row["runs"] >= 1 for row in document["results"])
    assert document["context"]["commit"] and document["settings"]["threads"] == 1
    assert all(row["within"] for row in document["compared"])
    assert "speedup vs torch.nn" in (tmp_path / "model.md").read_text()
    assert "speedup vs torch.nn" in out


@pytest.mark.parametrize("factory, message", [
    ("nocolon", "FACTORY must be a dotted path"),
    pytest.param(f"{FACTORIES}:raises", "raised RuntimeError: no data here",
                 marks=pytest.mark.slow),
    pytest.param(f"{FACTORIES}:no_recurrent", "no torch.nn.GRU or torch.nn.LSTM inside",
                 marks=pytest.mark.slow),
    pytest.param(f"{FACTORIES}:projected", "proj_size=2 is not supported",
                 marks=pytest.mark.slow),
])
def test_command_errors_are_one_line_and_exit_2(factory, message, tmp_path, capsys,
                                                monkeypatch):
    monkeypatch.chdir(modelbench.Path(__file__).parents[1])
    code, _out, err = run_cli(capsys, factory, "--out", str(tmp_path))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "model.json").exists()
