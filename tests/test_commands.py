"""grubench/commands.py's pieces on their own: the argument types' checks and messages,
the --cluster options, the --isa environment, and how a run's end becomes an exit code
and its last lines (test_cli.py runs the same commands through the command line)."""
import argparse
import os

import pandas as pd
import pytest

from grubench import commands, isa


# ---------------------------------------------------------------- the exit code of a run

def frame(statuses, **attrs):
    result = pd.DataFrame({"status": list(statuses)})
    result.attrs.update(attrs)
    return result


def finish(capsys, result, seconds=2.345, out="reports/x"):
    code = commands._finish(result, seconds, out)
    printed = capsys.readouterr()
    return code, printed.out, printed.err


SUMMARY = "\n{n} cases in 2.3 s; report: reports/x/report.md (results.json, results.csv, plots)\n"


def test_a_measured_run_exits_0_and_names_its_report(capsys):
    assert finish(capsys, frame(["ok", "error"])) == (0, SUMMARY.format(n=2), "")


def test_a_report_that_could_not_be_written_exits_1_before_the_summary(capsys):
    code, out, err = finish(capsys, frame(["ok"], report_error="disk full"))
    assert (code, out) == (1, "")
    assert err == "grubench: error: disk full (files already there are left whole)\n"


def test_nothing_available_exits_1(capsys):
    code, out, err = finish(capsys, frame([]))
    assert (code, out) == (1, SUMMARY.format(n=0))
    assert err == ("grubench: nothing was measured: no selected backend is available here "
                   "(see the notes above)\n")


def test_every_case_failing_exits_1_with_the_count_of_each_ending(capsys):
    code, out, err = finish(capsys, frame(["error", "timeout", "error"]))
    assert (code, out) == (1, SUMMARY.format(n=3))
    assert err == ("grubench: nothing was measured: every case ended error (2), timeout (1) "
                   "(reasons in the tables above)\n")


@pytest.mark.parametrize("statuses", [[], ["error"], ["ok"]])
def test_an_interrupted_run_exits_130_whatever_it_measured(capsys, statuses):
    code, _, err = finish(capsys, frame(statuses, interrupted=True))
    assert code == 130
    assert err == "interrupted: the cases measured so far are kept\n"


def test_an_interrupted_run_keeps_the_signals_exit_code(capsys):
    assert finish(capsys, frame(["ok"], interrupted=True, exit_code=143))[0] == 143


def test_a_signal_after_the_report_keeps_its_exit_code(capsys):
    code, out, err = finish(capsys, frame(["ok"], exit_code=143))
    assert (code, out) == (143, SUMMARY.format(n=1))
    assert err == ("stopped by a signal after every case was measured and the report "
                   "written\n")


# ---------------------------------------------------------------- argument types

def test_positive_numbers_and_their_limit():
    threads = commands._positive(int, 4, " (CPUs)")
    assert threads("4") == 4 and threads("1") == 1                 # the limit is inclusive
    for text, message in [("x", "'x' is not a number"),
                          ("0", "'0' must be a finite number > 0"),
                          ("-2", "'-2' must be a finite number > 0"),
                          ("5", "'5' must be <= 4 (CPUs)")]:
        with pytest.raises(argparse.ArgumentTypeError) as error:
            threads(text)
        assert str(error.value) == message
    assert commands._positive(float)("1e9") == 1e9                  # no limit without one
    with pytest.raises(argparse.ArgumentTypeError) as error:      # a limit without a reason
        commands._positive(float, 3600)("4000")
    assert str(error.value) == "'4000' must be <= 3600"
    with pytest.raises(argparse.ArgumentTypeError, match="'inf' must be a finite number > 0"):
        commands._positive(float)("inf")


def test_comma_lists():
    backends = commands._comma_list("backend")
    assert backends(" a, b ,,c ") == ("a", "b", "c")
    for text, message in [(" , ", "expected comma-separated backend names"),
                          ("b,a,b,a,c", "backend 'a', 'b' given more than once")]:
        with pytest.raises(argparse.ArgumentTypeError) as error:
            backends(text)
        assert str(error.value) == message
    cells = commands._comma_list("cell", ("gru", "lstm"))
    assert cells("lstm") == ("lstm",)
    with pytest.raises(argparse.ArgumentTypeError, match="unknown cell 'rnn'; valid names: "
                                                         "gru, lstm"):
        cells("gru,rnn")


def test_both_means_every_choice():
    both = commands._both(("inference", "training"))
    assert both("both") == both(None) == ("inference", "training")
    assert both("training") == ("training",)


# ---------------------------------------------------------------- --cluster and --isa

def test_cluster_options():
    args = argparse.Namespace
    assert commands._cluster_options(args()) == {}
    assert commands._cluster_options(args(cluster=None, placement=None, nodes=None)) == {}
    assert commands._cluster_options(args(cluster="auto", placement=None, nodes=None)) == {
        "address": "auto", "placement": "spread", "nodes": None}
    assert commands._cluster_options(args(cluster="local:2", placement="each",
                                          nodes="gpu")) == {
        "address": "local:2", "placement": "each", "nodes": "gpu"}
    for alone in (dict(placement="each"), dict(nodes="gpu")):
        with pytest.raises(ValueError) as error:
            commands._cluster_options(args(cluster=None, **{"placement": None,
                                                            "nodes": None, **alone}))
        assert str(error.value) == "--spread, --each and --nodes need --cluster ADDRESS"


def test_isa_restricted_sets_the_workers_environment_and_puts_it_back(monkeypatch):
    env = isa.worker_env("avx2", {})
    names = sorted(env)
    assert names                                  # the restriction sets something
    kept, dropped = names[0], names[1:]
    monkeypatch.setenv(kept, "before")
    for name in dropped:
        monkeypatch.delenv(name, raising=False)
    with commands.isa_restricted(argparse.Namespace(isa="avx2")):
        assert {name: os.environ.get(name) for name in names} == env
    assert os.environ[kept] == "before"
    assert not any(name in os.environ for name in dropped)
    with commands.isa_restricted(argparse.Namespace(isa=isa.NATIVE)):
        assert os.environ[kept] == "before"
    with pytest.raises(ValueError) as error:
        with commands.isa_restricted(argparse.Namespace(isa="avx2", cluster="auto")):
            pass
    assert str(error.value) == ("--isa restricts this machine's workers; it cannot be "
                                "combined with --cluster")


# ---------------------------------------------------------------- list

class TunedCache:
    def count(self, name):
        return {"numba-cpu": 3}[name]


@pytest.mark.parametrize("cache, tuning_note", [
    (None, "; tuning off"), (TunedCache(), "; tuned here: 3 case(s), see `grubench tune`")])
def test_list_says_what_each_backend_can_do_and_each_suites_sizes(capsys, monkeypatch, cache,
                                                                  tuning_note):
    from fake_backends import install

    from grubench import backends, tuning

    install(monkeypatch)
    monkeypatch.setattr(tuning, "machine_cache", lambda: cache)
    assert commands.handle_list(argparse.Namespace()) == 0
    lines = capsys.readouterr().out.splitlines()
    line = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert lines[0] == "backends:"
    assert line["fake-unavailable"].endswith(" (unavailable: fake reason it cannot run)")
    assert line["fake-inference-only"].endswith(" (available; does not run: training)")
    if backends.get("numba-cpu").available:
        assert line["numba-cpu"].endswith(f" (available{tuning_note})")
    suites_at = lines.index("suites:")
    assert lines[suites_at - 1] == ""
    assert "      gru/lstm inference/training: 8,2,8,8 16,4,16,32" in lines
    # DeepBench's GRU training group: its first 8 of 19 sizes
    assert ("      gru training: 1500,32,1536,1536 750,32,1536,1536 375,32,1536,1536 "
            "187,32,1536,1536 1500,32,2048,2048 750,32,2048,2048 375,32,2048,2048 "
            "187,32,2048,2048 ... (19 sizes)") in lines
    assert lines[-1] == ("  or a .toml file: see `python -m grubench run --help` and "
                         "grubench/suites.py")
