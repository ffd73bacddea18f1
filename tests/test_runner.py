"""The runner: backend selection, rows for every outcome, checks before measuring,
Ctrl-C keeping the measured rows."""
import statistics

import pandas as pd
import pytest

from grubench import runner, schema, suites
from grubench.accuracy import ReferenceCache
from grubench.case import Case, Task

from fake_backends import install  # noqa: E402  (tests/ is on sys.path under pytest)

TINY = suites.Suite("tiny", "tiny cases", (suites.Group(((3, 2, 4, 5), (4, 1, 3, 2)),
                                                        cells=("gru",), modes=("inference",)),),
                    min_runs=2, min_time=0.0, case_timeout=60.0, baseline="fake-ok")


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    install(monkeypatch)


def test_rows_carry_case_context_and_measurements():
    frame = runner.run_suite(TINY, backends=["fake-ok"], progress=False)
    assert list(frame.columns) == list(schema.COLUMNS)
    first = frame.iloc[0]
    assert (first["backend"], first["cell"], first["T"], first["B"], first["I"],
            first["H"]) == ("fake-ok", "gru", 3, 2, 4, 5)
    assert first["status"] == "ok" and first["runs"] >= 2
    assert len(first["samples_s"]) == first["runs"]
    assert first["median_s"] == pytest.approx(statistics.median(first["samples_s"]))
    assert first["backend_version"] == "fake ok"
    assert first["peak_counter"] == "tracemalloc" and first["peak_bytes"] > 0
    assert first["rel_err"] < 1e-6 and first["speedup"] == 1.0
    assert "cores" in first["machine"] and first["commit"] == frame.attrs["machine"]["commit"]
    assert frame.attrs["suite"]["name"] == "tiny" and not frame.attrs["interrupted"]


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match="unknown backend 'nope'; valid names: numpy, "):
        runner.run_suite(TINY, backends=["nope"], progress=False)


def test_unavailable_backend_named_explicitly_gives_rows_with_the_reason():
    frame = runner.run_suite(TINY, backends=["fake-unavailable"], progress=False)
    assert list(frame["status"]) == ["unavailable", "unavailable"]
    assert set(frame["reason"]) == {"fake reason it cannot run"}


def test_default_selection_leaves_unavailable_backends_out_with_a_note():
    chosen, notes = runner.select_backends(TINY.with_overrides(device=None), None)
    assert "fake-ok" in chosen and "fake-unavailable" not in chosen
    assert "fake-unavailable left out: fake reason it cannot run" in notes


def test_what_a_backend_cannot_run_gives_unsupported_rows_with_the_reason():
    """Declared in the registry (no worker is asked) or raised as NotImplementedError by
    the backend: an "unsupported" row with the reason, not an error; the rest measures."""
    both = TINY.with_overrides(modes=("inference", "training"))
    frame = runner.run_suite(both, backends=["fake-inference-only", "fake-unimplemented"],
                             progress=False)
    for backend, reason in (("fake-inference-only", "fake: declared inference only"),
                            ("fake-unimplemented", "fake: this library has no gradients")):
        rows = frame[frame["backend"] == backend]
        training = rows["mode"] == "training"
        assert set(rows[training]["status"]) == {"unsupported"}
        assert set(rows[training]["reason"]) == {reason}
        assert set(rows[~training]["status"]) == {"ok"}


NETWORKS = suites.Suite("networks", "a network and lengths", (
    suites.Group(((4, 3, 2, 3),), cells=("gru",), modes=("inference", "training"), layers=2,
                 directions=2, lengths="uniform"),
    suites.Group(((5, 4, 3, 2),), cells=("lstm",), modes=("training",)),
    suites.Group(((5, 4, 3, 2),), cells=("lstm",), modes=("training",), lengths="any")),
    dtype="float64", min_runs=2, min_time=0.0, case_timeout=60.0, baseline="fake-ok")


def test_network_and_length_cases_are_measured_exactly_through_the_network():
    """A layered backend (here the reference itself) runs a stacked bidirectional case in
    kernels.network's Network: exact against the float64 reference, forward and every
    gradient; the rows carry the network fields and their own FLOPs."""
    frame = runner.run_suite(NETWORKS, backends=["fake-ok"], progress=False)
    assert list(frame["status"]) == ["ok"] * 4
    assert [tuple(r) for r in frame[["layers", "directions", "lengths"]].values] == [
        (2, 2, "uniform"), (2, 2, "uniform"), (1, 1, "full"), (1, 1, "any")]
    assert list(frame["rel_err"]) == [0.0] * 4
    network = Case("gru", 4, 3, 2, 3, layers=2, directions=2, lengths="uniform",
                   dtype="float64")
    assert frame.iloc[0]["flops"] == network.flops()
    assert frame.iloc[1]["parameters"] == network.parameter_count


def test_a_backend_that_ignores_lengths_runs_only_variable_length_cases():
    """Its rows: the variable-length cases only, in turn with the others; accuracy against
    the reference run to T, which it computes exactly, and a note saying so."""
    frame = runner.run_suite(NETWORKS, backends=["fake-ok", "fake-padded"], progress=False)
    assert [(c.key, b) for _, c, b in runner.row_order(NETWORKS, ["fake-ok", "fake-padded"],
                                                       NETWORKS.cases())][4:6] == [
        ("lstm/training/5,4,3,2/float64", "fake-ok"),
        ("lstm/lengths/training/5,4,3,2/float64", "fake-ok")]
    assert list(frame["backend"]) == ["fake-ok", "fake-padded"] * 2 + ["fake-ok"] * 2 + [
        "fake-padded"]
    padded = frame[frame["backend"] == "fake-padded"]
    assert set(padded["lengths"]) == {"uniform", "any"} and set(padded["status"]) == {"ok"}
    assert list(padded["rel_err"]) == [0.0] * 3
    assert set(padded["note"]) == {runner.IGNORES_LENGTHS_NOTE}
    full_only = NETWORKS.with_overrides(lengths="full")
    assert runner.plan(full_only, backends=["fake-padded"])[2] == [
        "fake-padded has no cases: it runs only variable-length cases (--lengths)",
        "no speedups: the baseline fake-ok is not among the backends run"]


def test_a_backend_declared_without_networks_gives_unsupported_network_rows():
    frame = runner.run_suite(NETWORKS, backends=["fake-no-networks"], progress=False)
    assert list(frame["status"]) == ["unsupported"] * 2 + ["ok"] * 2
    assert set(frame["reason"].iloc[:2]) == {"fake: one layer, one direction only"}


def test_cases_too_large_or_over_a_slow_backend_cap_are_skipped(monkeypatch):
    monkeypatch.setattr(runner, "available_memory_bytes", lambda: 100)
    frame = runner.run_suite(TINY, backends=["fake-ok"], progress=False)
    assert set(frame["status"]) == {"skipped"}
    assert frame.iloc[0]["reason"].startswith("too large for memory: needs about")
    monkeypatch.undo()
    install(monkeypatch)
    capped = TINY.with_overrides(slow_backends={"fake-ok": 300})   # 1st case 1620 FLOPs, 2nd 240
    frame = runner.run_suite(capped, backends=["fake-ok"], progress=False)
    assert list(frame["status"]) == ["skipped", "ok"]
    assert "timed only up to 3e+02 FLOPs" in frame.iloc[0]["reason"]


def test_reference_cap_leaves_accuracy_empty_with_a_note(monkeypatch):
    monkeypatch.setattr(runner, "ReferenceCache",
                        lambda d, **kw: ReferenceCache(d, max_flops=0, **kw))
    frame = runner.run_suite(TINY, backends=["fake-ok"], progress=False)
    assert frame["rel_err"].isna().all()
    assert frame.iloc[0]["note"].startswith("accuracy not measured")


def test_unwritable_out_fails_before_measuring(monkeypatch):
    def no_workers(*args, **kwargs):
        raise AssertionError("measuring started")

    monkeypatch.setattr(runner, "Worker", no_workers)
    with pytest.raises(PermissionError, match="cannot write to output directory"):
        runner.run_suite(TINY, backends=["fake-ok"], out="/sys/grubench", progress=False)


def interrupt_at_request(monkeypatch, n):
    """Make the n-th request to any worker raise KeyboardInterrupt (Ctrl-C)."""
    real_request = runner.Worker.request
    calls = []

    def request(self, message, timeout):
        if message.get("kind") == "reference":
            return real_request(self, message, timeout)
        calls.append(message)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real_request(self, message, timeout)

    monkeypatch.setattr(runner.Worker, "request", request)


def test_ctrl_c_keeps_the_measured_cases(monkeypatch, tmp_path):
    interrupt_at_request(monkeypatch, 2)
    frame = runner.run_suite(TINY, backends=["fake-ok"], out=tmp_path, progress=False)
    assert len(frame) == 1 and frame.iloc[0]["status"] == "ok"
    assert frame.attrs["interrupted"]
    assert "interrupted after 1 of 2 cases" in frame.attrs["notes"]
    saved = pd.read_csv(tmp_path / "results.csv")
    assert len(saved) == 1


def test_overrides_are_validated():
    with pytest.raises(ValueError, match="unknown dtype 'float16'"):
        runner.run_suite(TINY, dtype="float16", progress=False)
    with pytest.raises(ValueError, match="unknown mode 'both'"):
        runner.run_suite(TINY, modes=["both"], progress=False)


def test_progress_plain_lines(capsys):
    import sys
    bar = runner.Progress(2, stream=sys.stderr)
    bar.update("a", "ok")
    bar.update("b", "1 ms")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[############............] 1/2") and lines[0].endswith("a ok")
    assert lines[1].startswith("[########################] 2/2")


def test_progress_line_gives_the_median_in_milliseconds(monkeypatch, capsys):
    real_request = runner.Worker.request

    def median_of_12_3_ms(self, message, timeout):
        return {**real_request(self, message, timeout), "median_s": 0.0123}

    monkeypatch.setattr(runner.Worker, "request", median_of_12_3_ms)
    runner.run_suite(TINY, backends=["fake-ok"], progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("fake-ok t1 gru inference 3,2,4,5 12.3 ms")
    assert lines[1].endswith("fake-ok t1 gru inference 4,1,3,2 12.3 ms")


def test_grubench_exports_run_suite_lazily():
    import subprocess
    import sys
    code = ("import sys, grubench; assert 'pandas' not in sys.modules; "
            "from grubench import run_suite; assert 'pandas' in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_baseline_is_validated_and_its_absence_noted():
    with pytest.raises(ValueError, match="unknown baseline backend 'nope'"):
        runner.run_suite(TINY, backends=["fake-ok"], baseline="nope", progress=False)
    frame = runner.run_suite(TINY.with_overrides(baseline="numpy"), backends=["fake-ok"],
                             progress=False)
    assert frame["speedup"].isna().all()
    assert "no speedups: the baseline numpy is not among the backends run" in frame.attrs["notes"]


def test_backends_take_turns_case_by_case(monkeypatch):
    """Ratios between backends stay side by side: each case runs on every backend before
    the next case starts, at each thread count, and the rows keep that order."""
    order = []
    real_request = runner.Worker.request

    def record(self, message, timeout):
        if message.get("kind") != "reference":
            case = message["case"]
            order.append((case["threads"], case["T"], case["backend"]))
        return real_request(self, message, timeout)

    monkeypatch.setattr(runner.Worker, "request", record)
    frame = runner.run_suite(TINY.with_overrides(threads=(1, 2)),
                             backends=["fake-ok", "numpy"], progress=False)
    want = [(threads, T, backend) for threads in (1, 2) for T in (3, 4)
            for backend in ("fake-ok", "numpy")]
    assert order == want
    assert list(zip(frame["threads"], frame["T"], frame["backend"])) == want


def test_ctrl_c_between_backends_keeps_every_measured_row(monkeypatch):
    """Interrupted at the second backend's second case: the three rows measured stay,
    and every worker is closed (the run returns)."""
    interrupt_at_request(monkeypatch, 4)
    frame = runner.run_suite(TINY, backends=["fake-ok", "numpy"], progress=False)
    assert list(zip(frame["T"], frame["backend"])) == [(3, "fake-ok"), (3, "numpy"),
                                                       (4, "fake-ok")]
    assert "interrupted after 3 of 4 cases" in frame.attrs["notes"]


def test_progress_bar_on_a_terminal_redraws_one_line():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = runner.Progress(3, stream=stream)
    bar.update("a", "ok")
    bar.update("b [bold]", "1 ms")          # a label is text, never rich markup
    bar.finish()
    drawn = stream.getvalue()
    assert "1/3" in drawn and "2/3" in drawn and "b [bold] 1 ms" in drawn
    assert "\r" in drawn                    # redrawn in place ...
    assert drawn.count("\n") == 1 and drawn.rstrip("\x1b[?25h").endswith("\n")  # ... ended once
    quiet = io.StringIO()
    runner.Progress(1, stream=quiet, enabled=False).update("c")
    assert quiet.getvalue() == ""


def test_progress_line_of_one_row_names_it_and_its_median_in_ms():
    class Recorder:
        def update(self, text, outcome):
            self.seen = (text, outcome)

    progress = Recorder()
    row = dict(Task(Case("gru", 3, 2, 4, 5), "numpy", 2).as_row(), status="ok",
               median_s=1.234e-3)
    runner.show_progress(progress, row)
    assert progress.seen == ("numpy t2 gru inference 3,2,4,5", "1.23 ms")
    runner.show_progress(progress, {**row, "status": "crashed"}, where="node-a: ")
    assert progress.seen == ("node-a: numpy t2 gru inference 3,2,4,5", "crashed")


def test_a_slow_backend_is_timed_up_to_its_cap_inclusive():
    import dataclasses

    case = Case("gru", 3, 2, 4, 5)
    suite = dataclasses.replace(suites.get("quick"), slow_backends={"numpy": case.flops()})
    assert runner.skip_reason(suite, "numpy", case) is None
    assert runner.skip_reason(suite, "numpy", Case("gru", 4, 2, 4, 5)).startswith(
        "numpy is timed only up to")
