"""The command line: parsing, exit codes and messages for user mistakes (no traceback),
the plug-in hook, and `python -m grubench run --suite quick` end to end."""
import json
import re
import subprocess
import sys
import types

import pytest

from grubench import cli, commands

COMMANDS = ("run", "compare-cells", "list", "show")


def run_main(capsys, *argv):
    """(exit status, stdout, stderr) of cli.main, argparse's own exits included."""
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(capsys, command):
    status, out, _ = run_main(capsys, command, "--help")
    assert status == 0 and out.startswith(f"usage: grubench {command}")


def test_top_level_help_lists_commands(capsys):
    status, out, _ = run_main(capsys, "--help")
    assert status == 0 and all(c in out for c in COMMANDS)


@pytest.mark.parametrize("argv, message", [
    (["run", "--backends", "nope"], "unknown backend 'nope'; valid names: numpy, torch-cpu"),
    (["run", "--suite", "nope"], "unknown suite 'nope'; valid names: quick, default"),
    (["run", "--cells", "gru,rnn"], "unknown cell 'rnn'; valid names: gru, lstm"),
    (["run", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["run", "--size", "100,1,64"], "size '100,1,64' must be four comma-separated integers"),
    (["run", "--size", "100,1,6x4,64"], "I='6x4' is not an integer"),
    (["run", "--threads", "0"], "'0' must be a finite number > 0"),
    (["run", "--threads", "100000"], "'100000' must be <= "),
    (["run", "--min-time", "inf"], "'inf' must be a finite number > 0"),
    (["run", "--min-time", "4000"], "'4000' must be <= 3600"),
    (["run", "--timeout", "nan"], "'nan' must be a finite number > 0"),
    (["run", "--suite", "deepbench", "--scale", "inf"], "'inf' must be a finite number > 0"),
    (["run", "--backends", "numpy,numpy"], "backend 'numpy' given more than once"),
    (["run", "--baseline", "nope"], "unknown baseline backend 'nope'"),
    (["compare-cells", "--backends", "nope"], "unknown backend 'nope'"),
    (["run", "--out", "/sys/grubench-out"], "cannot write to output directory /sys/grubench-out"),
    (["show", "/nonexistent/results.json"], "cannot read /nonexistent/results.json"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["run", "--layers", "0"], "argument --layers: '0' must be a finite number > 0"),
    (["run", "--layers", "two"], "argument --layers: 'two' is not a number"),
    (["run", "--lengths", "ragged"], "argument --lengths: unknown lengths 'ragged'; valid "
                                     "names: full, uniform, sorted, short-tail, any"),
    (["run", "--bidirectional=yes"], "ignored explicit argument 'yes'"),
])
def test_user_mistakes_exit_2_with_a_clear_message(capsys, argv, message):
    status, out, err = run_main(capsys, *argv)
    assert status == 2
    assert message in err
    assert "Traceback" not in err + out


def test_corrupt_results_file_for_show(capsys, tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text("{truncated")
    status, _, err = run_main(capsys, "show", str(bad))
    assert status == 2 and "is not valid JSON" in err


def test_no_arguments_means_run_default_suite(capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(commands, "handle_run", lambda args: seen.append(args) or 0)
    assert run_main(capsys, )[0] == 0
    assert seen[0].suite == "default" and seen[0].out == "reports/latest"
    run_main(capsys, "--backends", "numpy", "--size", "1,2,3,4", "--size", "5,6,7,8",
             "--threads", "1", "2", "--mode", "both")
    args = seen[1]
    assert args.backends == ("numpy",) and args.size == [(1, 2, 3, 4), (5, 6, 7, 8)]
    assert args.threads == [1, 2] and args.mode == "both"


def test_command_modules_hook(capsys, monkeypatch):
    module = types.ModuleType("grubench_test_command")

    def add_subcommand(subparsers):
        parser = subparsers.add_parser("hello", help="say hello")
        parser.add_argument("--name", default="world")
        parser.set_defaults(handler=lambda args: print(f"hello {args.name}") or 3)

    module.add_subcommand = add_subcommand
    monkeypatch.setitem(sys.modules, "grubench_test_command", module)
    monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "grubench_test_command"])
    status, out, _ = run_main(capsys, "hello", "--name", "gru")
    assert status == 3 and out == "hello gru\n"
    assert "hello" in run_main(capsys, "--help")[1]


def test_list_shows_backends_and_suites(capsys):
    status, out, _ = run_main(capsys, "list")
    assert status == 0
    assert "torch-cpu" in out and "numpy" in out and "(available)" in out
    assert re.search(r"onnxruntime .*does not run: training, float64\)", out)
    assert "quick:" in out and "100,1,64,64" in out


@pytest.mark.slow
def test_quick_suite_end_to_end(tmp_path):
    """`python -m grubench run --suite quick` in a fresh process: tables, files, exit 0."""
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "grubench", "run", "--suite", "quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "gru reset_after · inference · float32 · 1 thread · median time" in done.stdout
    assert "] 1/" in done.stderr                     # the progress bar
    document = json.loads((out / "results.json").read_text())
    # the harness's own backends must measure; another backend's failure (its own tests
    # guard it) must show as a row with a reason, never break the run
    for result in document["results"]:
        if result["backend"] in ("numpy", "torch-cpu"):
            assert result["status"] == "ok", result
        else:
            assert result["status"] == "ok" or result["reason"], result
    for name in ("results.csv", "report.md", "time_by_size.png"):
        assert (out / name).stat().st_size > 0
    shown = subprocess.run([sys.executable, "-m", "grubench", "show", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "GRU vs LSTM" in shown.stdout


def test_compare_cells_side_by_side(capsys, monkeypatch, tmp_path):
    from fake_backends import install

    install(monkeypatch)
    status, out, _ = run_main(capsys, "compare-cells", "--backends", "fake-ok", "--size",
                              "3,2,4,5", "--min-runs", "1", "--min-time", "0.001",
                              "--out", str(tmp_path), "--no-progress")
    assert status == 0
    assert "GRU vs LSTM" in out
    row = next(line for line in out.splitlines() if line.startswith("  fake-ok | 3,2,4,5"))
    assert "165 / 220" in row                  # parameters 3*5*(4+5+2) vs 4*5*(4+5+2)
    assert row.count("x)") == 3                # LSTM/GRU ratios: inference, training, memory
    assert "GRU vs LSTM" in (tmp_path / "report.md").read_text()
    verdict = "GRU vs LSTM: does the usual claim hold here? (per backend)"
    assert verdict in out and verdict in (tmp_path / "report.md").read_text()
    assert ["parameters: GRU has fewer", "holds: LSTM/GRU 1.33x"] in [
        [cell.strip() for cell in line.split("|")] for line in out.splitlines()]


def test_compare_cells_judges_training_results_and_show_repeats_them(capsys, monkeypatch,
                                                                     tmp_path):
    from fake_backends import install

    install(monkeypatch)
    runs = [dict(dataset="toy", cell=cell, backend="numba-cpu", threads=1, hidden=8,
                 epochs=3, batch=4, lr=0.01, seed=seed, test_accuracy=accuracy,
                 epoch_seconds=[1.0, seconds, seconds * 1.01, seconds * 0.99])
            for cell, accuracy, seconds in (("gru", 0.9, 0.2), ("lstm", 0.91, 0.3))
            for seed, accuracy in ((0, accuracy), (1, accuracy + 0.02))]
    for seed in (0, 1):
        folder = tmp_path / f"train-{seed}"
        folder.mkdir()
        (folder / "training.json").write_text(json.dumps(
            {"context": {}, "results": [r for r in runs if r["seed"] == seed]}))
    out_dir = tmp_path / "out"
    status, out, err = run_main(capsys, "compare-cells", "--backends", "fake-ok", "--size",
                                "3,2,4,5", "--min-runs", "3", "--min-time", "0.001",
                                "--out", str(out_dir), "--no-progress", "--training",
                                str(tmp_path / "train-0"), "--training",
                                str(tmp_path / "train-1" / "training.json"))
    assert status == 0, err
    for text in (out, (out_dir / "report.md").read_text()):
        assert "time per epoch (toy): GRU faster" in text
        assert "task accuracy (toy): similar" in text
    assert "GRU 0.2 s vs LSTM 0.3 s: 1.50x faster" in out
    assert "mean (min-max) over 2 seeds" in out
    status, shown, _ = run_main(capsys, "show", str(out_dir))
    assert status == 0 and "time per epoch (toy): GRU faster" in shown


def test_compare_cells_checks_training_files_before_measuring(capsys, tmp_path):
    status, out, err = run_main(capsys, "compare-cells", "--training",
                                str(tmp_path / "nope.json"), "--out", str(tmp_path))
    assert status == 2
    assert err.strip() == f"grubench: error: cannot read {tmp_path / 'nope.json'}: No such " \
                          f"file or directory"
    assert out == "" and not (tmp_path / "results.json").exists()


def test_a_run_with_nothing_available_exits_1(capsys, monkeypatch, tmp_path):
    from fake_backends import install

    install(monkeypatch)
    toml = tmp_path / "none.toml"
    toml.write_text('backends = ["fake-unavailable"]\nsizes = [[2, 1, 2, 2]]\n')
    status, out, err = run_main(capsys, "run", "--suite", str(toml), "--out", str(tmp_path))
    assert status == 1, err
    assert "note: fake-unavailable left out: fake reason it cannot run" in out
    assert "nothing was measured" in err


def test_a_run_where_every_case_fails_exits_1(capsys, tmp_path):
    status, out, err = run_main(capsys, "run", "--backends", "numpy", "--size", "2,1,2,2",
                                "--mode", "inference", "--cells", "gru", "--timeout",
                                "0.001", "--out", str(tmp_path), "--no-progress")
    assert status == 1, err
    assert "nothing was measured: every case ended timeout (1)" in err


def test_scale_is_refused_outside_deepbench(capsys, tmp_path):
    status, _, err = run_main(capsys, "run", "--suite", "quick", "--scale", "0.5",
                              "--out", str(tmp_path))
    assert status == 2
    assert "suite 'quick' does not take it" in err


@pytest.mark.parametrize("argv", [["run", "--sizes", "1"], ["run", "--mode", "fast"], ["bogus"]])
def test_an_argparse_error_is_one_line_without_the_usage_block(capsys, argv):
    status, out, err = run_main(capsys, *argv)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("grubench: error: ")
    assert "usage:" not in err and "--help" in err

# ---------------------------------------------------------------- exit codes of every command

TINY_RUN = ("--size", "2,1,2,2", "--min-runs", "1", "--min-time", "0.001", "--no-progress")


@pytest.fixture
def reaching_run_suite(monkeypatch):
    """Every call of runner.run_suite, recorded as (keyword arguments, returned frame) on
    its way through: the command line's parsing reaches the real run."""
    from grubench import runner

    calls = []
    real = runner.run_suite

    def record(*args, **kwargs):
        frame = real(*args, **kwargs)
        calls.append((kwargs, frame))
        return frame

    monkeypatch.setattr(runner, "run_suite", record)
    return calls


def interrupt_every_request(monkeypatch):
    """Ctrl-C while the first case is measured."""
    from grubench import runner

    def interrupted(self, message, timeout):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.Worker, "request", interrupted)


@pytest.mark.parametrize("command", ["run", "compare-cells"])
def test_mode_both_and_variant_both_reach_the_run(capsys, monkeypatch, tmp_path,
                                                 reaching_run_suite, command):
    from fake_backends import install

    install(monkeypatch)
    status, out, err = run_main(capsys, command, "--backends", "fake-ok", "--mode", "both",
                                "--variant", "both", "--out", str(tmp_path), *TINY_RUN)
    assert status == 0, err
    assert f"; report: {tmp_path}/report.md (results.json" in out
    (kwargs, frame), = reaching_run_suite
    assert kwargs["modes"] == ("inference", "training")
    assert kwargs["variants"] == ("reset_after", "reset_before")
    gru = frame[frame["cell"] == "gru"]
    assert sorted(zip(gru["variant"], gru["mode"])) == [
        ("reset_after", "inference"), ("reset_after", "training"),
        ("reset_before", "inference"), ("reset_before", "training")]
    assert set(frame["status"]) == {"ok"}


def test_a_single_mode_and_variant_reach_the_run_alone(capsys, monkeypatch, tmp_path,
                                                       reaching_run_suite):
    from fake_backends import install

    install(monkeypatch)
    status, _, err = run_main(capsys, "run", "--backends", "fake-ok", "--mode", "training",
                              "--variant", "reset_before", "--cells", "gru", "--out",
                              str(tmp_path), *TINY_RUN)
    assert status == 0, err
    (kwargs, frame), = reaching_run_suite
    assert kwargs["modes"] == ("training",) and kwargs["variants"] == ("reset_before",)
    assert list(zip(frame["variant"], frame["mode"])) == [("reset_before", "training")]


def test_network_options_reach_the_run(capsys, monkeypatch, tmp_path, reaching_run_suite):
    from fake_backends import install

    install(monkeypatch)
    status, out, err = run_main(capsys, "run", "--backends", "fake-ok,fake-padded",
                                "--cells", "gru", "--mode", "training", "--layers", "2",
                                "--bidirectional", "--lengths", "uniform", "--out",
                                str(tmp_path), *TINY_RUN)
    assert status == 0, err
    (kwargs, frame), = reaching_run_suite
    assert (kwargs["layers"], kwargs["directions"], kwargs["lengths"]) == (2, 2, "uniform")
    assert list(zip(frame["backend"], frame["layers"], frame["directions"],
                    frame["lengths"], frame["status"])) == [
        ("fake-ok", 2, 2, "uniform", "ok"), ("fake-padded", 2, 2, "uniform", "ok")]
    assert "2,1,2,2 (2 layers, bidirectional, lengths uniform)" in out
    assert "variable lengths · median time (ms)" in out
    # left out, the suite's own network (the default: one full-length layer)
    status, _, err = run_main(capsys, "run", "--backends", "fake-ok", "--cells", "gru",
                              "--mode", "inference", "--out", str(tmp_path), *TINY_RUN)
    assert status == 0, err
    kwargs, frame = reaching_run_suite[-1]
    assert (kwargs["layers"], kwargs["directions"], kwargs["lengths"]) == (None, None, None)
    assert list(zip(frame["layers"], frame["directions"], frame["lengths"])) == [
        (1, 1, "full")]


@pytest.mark.parametrize("command", ["run", "compare-cells"])
def test_ctrl_c_during_a_run_exits_130_and_keeps_the_report(capsys, monkeypatch, tmp_path,
                                                            command):
    from fake_backends import install

    install(monkeypatch)
    interrupt_every_request(monkeypatch)
    status, _, err = run_main(capsys, command, "--backends", "fake-ok", "--out",
                              str(tmp_path), *TINY_RUN)
    assert status == 130
    assert "interrupted: the cases measured so far are kept" in err
    assert json.loads((tmp_path / "results.json").read_text())["interrupted"] is True


def test_compare_cells_where_every_case_fails_exits_1(capsys, monkeypatch, tmp_path):
    from fake_backends import install

    install(monkeypatch)
    status, _, err = run_main(capsys, "compare-cells", "--backends", "fake-raise", "--mode",
                              "inference", "--out", str(tmp_path), *TINY_RUN)
    assert status == 1
    assert "nothing was measured: every case ended error (2)" in err


@pytest.mark.parametrize("argv, interrupted", [
    (["list"], "grubench.backends.load_plugins"),
    (["show", "results.json"], "grubench.report.load_results"),
    (["regress", "--update", "--baseline", "b.json"], "grubench.regress.measure"),
    (["train", "--dataset", "japanese-vowels", "--cells", "gru", "--epochs", "1",
      "--backends", "numpy"], "grubench.training.runner.run_in_worker"),
])
def test_ctrl_c_in_any_command_exits_130(capsys, monkeypatch, tmp_path, argv, interrupted):
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(interrupted, ctrl_c)
    monkeypatch.chdir(tmp_path)            # train's report folder, show's results.json
    status, _, err = run_main(capsys, *argv)
    assert status == 130
    assert "grubench: interrupted" in err and "Traceback" not in err


def test_list_exits_2_on_an_unknown_option(capsys):
    assert run_main(capsys, "list", "--bogus")[0] == 2


@pytest.fixture
def saved_report(tmp_path):
    """A results.json of two measured GRU/LSTM training rows, written by the report."""
    import pandas as pd

    from grubench import report, runner

    rows = [dict(backend="torch-cpu", cell=cell, variant=variant, mode="training", T=10, B=2,
                 I=4, H=8, dtype="float32", threads=1, status="ok", median_s=median,
                 iqr_s=0.0, min_s=median, runs=3, unstable=False, compile_s=0.25,
                 peak_bytes=2 ** 20, rel_err=1e-7, gemm_gflops=0.01, baseline="torch-cpu")
            for cell, variant, median in (("gru", "reset_after", 8e-3), ("lstm", "-", 2e-2))]
    report.write_report(runner.add_derived(pd.DataFrame(rows)), tmp_path)
    return tmp_path


def test_show_prints_the_metrics_asked_for(capsys, saved_report):
    status, out, _ = run_main(capsys, "show", str(saved_report), "--metrics", "gflops,compile")
    assert status == 0
    assert "throughput, input projection counted (GFLOP/s)" in out
    assert "first call (compile) (s)" in out
    assert "median time" not in out and "peak memory" not in out
    cells = [[c.strip() for c in line.split("|")] for line in out.splitlines()
             if line.startswith("  torch-cpu")]
    # GRU: 34560 FLOPs in 8 ms = 0.00432 GFLOP/s, 43% of a 0.01 GFLOP/s ceiling;
    # LSTM: 46080 FLOPs in 20 ms = 0.0023 GFLOP/s (23%); then compile times, then GRU vs LSTM
    assert cells == [["torch-cpu", "0.00432 (43%)"], ["torch-cpu", "0.0023 (23%)"],
                     ["torch-cpu", "0.25"], ["torch-cpu", "0.25"],
                     ["torch-cpu", "10,2,4,8", "336 / 448", "-", "8 / 20 (2.50x)",
                      "1 / 1 (1.00x)", "1.0e-07 / 1.0e-07"]]


def test_show_without_metrics_prints_time_memory_and_accuracy(capsys, saved_report):
    status, out, _ = run_main(capsys, "show", str(saved_report))
    assert status == 0
    assert "median time (ms)" in out and "peak memory" in out and "relative error" in out
    assert "throughput" not in out and "first call" not in out


def test_show_refuses_an_unknown_metric(capsys, saved_report):
    status, _, err = run_main(capsys, "show", str(saved_report), "--metrics", "speed")
    assert status == 2 and "unknown metric 'speed'" in err


# ---------------------------------------------------------------- cli.main's exit codes

@pytest.fixture
def raising_command(monkeypatch):
    """A `raise` command whose handler raises what the test puts in ``raised[0]`` (or
    returns it, when it is not an exception)."""
    raised = [None]
    module = types.ModuleType("grubench_test_raise")

    def handle(args):
        if isinstance(raised[0], BaseException):
            raise raised[0]
        return raised[0]

    module.add_subcommand = lambda subparsers: subparsers.add_parser(
        "raise").set_defaults(handler=handle)
    monkeypatch.setitem(sys.modules, "grubench_test_raise", module)
    monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "grubench_test_raise"])
    return raised


@pytest.mark.parametrize("error", [ValueError("bad size"), cli.UsageError("bad size"),
                                   PermissionError("bad size"), NotADirectoryError("bad size"),
                                   FileNotFoundError("bad size")])
def test_a_users_mistake_raised_by_a_command_exits_2_in_one_line(capsys, raising_command,
                                                                  error):
    raising_command[0] = error
    assert run_main(capsys, "raise") == (2, "", "grubench: error: bad size\n")


def test_ctrl_c_exits_130_and_a_handler_without_a_code_exits_0(capsys, raising_command):
    raising_command[0] = KeyboardInterrupt()
    assert run_main(capsys, "raise") == (130, "", "grubench: interrupted\n")
    raising_command[0] = None
    assert run_main(capsys, "raise") == (0, "", "")


def test_a_programming_error_is_not_passed_off_as_a_users_mistake(capsys, raising_command):
    raising_command[0] = TypeError("a bug")
    with pytest.raises(TypeError):
        cli.main(["raise"])


def test_help_is_not_taken_for_runs_options(capsys, monkeypatch):
    monkeypatch.setattr(commands, "handle_run", lambda args: pytest.fail("run was started"))
    for argv in (["-h"], ["--help"]):
        status, out, _ = run_main(capsys, *argv)
        assert status == 0 and out.startswith("usage: grubench [-h] COMMAND")


def test_an_argparse_error_names_the_commands_help(capsys):
    status, out, err = run_main(capsys, "run", "--mode", "fast")
    assert (status, out) == (2, "")
    assert err.startswith("grubench: error: argument --mode: invalid choice: 'fast'")
    assert err.endswith(" (see `grubench run --help`)\n")


def test_without_arguments_main_reads_the_command_line(capsys, monkeypatch, raising_command):
    monkeypatch.setattr(commands, "handle_run", lambda args: pytest.fail("run was started"))
    monkeypatch.setattr(sys, "argv", ["grubench", "raise"])
    raising_command[0] = 7
    assert cli.main() == 7


def test_compare_cells_prints_its_time_table_and_records_the_run_unless_told_not_to(
        capsys, monkeypatch, tmp_path):
    from fake_backends import install

    from grubench.history import store

    install(monkeypatch)
    db_url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    monkeypatch.setenv(store.ENV, db_url)
    argv = ("compare-cells", "--backends", "fake-ok", "--mode", "inference", "--out",
            str(tmp_path / "out"), *TINY_RUN)
    status, out, err = run_main(capsys, *argv)
    assert status == 0, err
    assert "median time (" in out
    assert "peak memory" not in out.split("[ GRU vs LSTM")[0]    # the time table alone
    opened = store.Store(db_url, write=False)
    assert opened.counts()[0] == 1
    assert run_main(capsys, *argv, "--no-history")[0] == 0
    assert opened.counts()[0] == 1


def test_every_case_option_reaches_the_run(capsys, monkeypatch, tmp_path, reaching_run_suite):
    from fake_backends import install

    install(monkeypatch)
    status, _, err = run_main(capsys, "run", "--backends", "fake-ok", "--mode", "inference",
                              "--cells", "gru", "--dtype", "float64", "--size", "2,1,2,2",
                              "--threads", "1", "--min-runs", "3", "--min-time", "0.001",
                              "--timeout", "30", "--baseline", "numpy", "--out",
                              str(tmp_path), "--no-progress")
    assert status == 0, err
    (kwargs, frame), = reaching_run_suite
    assert {k: kwargs[k] for k in ("backends", "cells", "modes", "dtype", "sizes", "threads",
                                   "min_runs", "min_time", "case_timeout", "baseline",
                                   "scale", "out", "progress")} == dict(
        backends=("fake-ok",), cells=("gru",), modes=("inference",), dtype="float64",
        sizes=[(2, 1, 2, 2)], threads=[1], min_runs=3, min_time=0.001, case_timeout=30.0,
        baseline="numpy", scale=1.0, out=str(tmp_path), progress=False)
    assert set(frame["dtype"]) == {"float64"} and set(frame["baseline"]) == {"numpy"}
    assert (frame["runs"] >= 3).all()


def test_the_last_line_gives_the_runs_seconds_by_the_commands_clock(capsys, monkeypatch,
                                                                     tmp_path):
    """The run's duration is the command's clock at the end minus at the start (12.5 s
    here, from a clock replaced in grubench.commands only: the workers' timing keeps
    the real one)."""
    import types

    from fake_backends import install
    from grubench import commands

    install(monkeypatch)
    readings = iter([100.0, 112.5])
    monkeypatch.setattr(commands, "time", types.SimpleNamespace(
        monotonic=lambda: next(readings)))
    status, out, err = run_main(capsys, "run", "--backends", "fake-ok", "--mode", "inference",
                                "--cells", "gru", "--size", "2,1,2,2", "--min-runs", "3",
                                "--min-time", "0.001", "--out", str(tmp_path),
                                "--no-progress")
    assert status == 0, err
    assert f"cases in 12.5 s; report: {tmp_path}/report.md" in out


def test_without_mode_or_variant_the_suites_own_reach_the_run(capsys, monkeypatch, tmp_path,
                                                             reaching_run_suite):
    """No --mode/--variant: run_suite gets None and keeps each group's modes and
    variants (a suite's inference-only group stays inference only)."""
    from fake_backends import install

    install(monkeypatch)
    status, _, err = run_main(capsys, "run", "--backends", "fake-ok", "--cells", "gru",
                              "--size", "2,1,2,2", "--min-runs", "3", "--min-time", "0.001",
                              "--out", str(tmp_path), "--no-progress")
    assert status == 0, err
    (kwargs, _), = reaching_run_suite
    assert kwargs["modes"] is None and kwargs["variants"] is None
