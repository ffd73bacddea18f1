"""The regression gate's logic on fixed numbers (no timing), its files and exit codes
(grubench.regress, grubench.gate, grubench.baseline, grubench.calibrated)."""
import json
from pathlib import Path

import numpy as np
import pytest

from grubench import baseline as baselines
from grubench import calibrated, regress, timing
from grubench.baseline import BaselineError
from grubench.case import Case, Task
from grubench.gate import Verdict, classify, compare, exit_code, render_table

TOL = 0.25
BASELINES = Path(__file__).resolve().parent.parent / "reports" / "baseline"


def ok(ratio):
    return {"status": "ok", "ratio": ratio, "reason": None}


def never_called(keys):
    raise AssertionError(f"re-measured {keys} although nothing was slower")


@pytest.mark.parametrize("base, current, state", [
    (1.0, 1.25, "ok"),          # exactly at the tolerance is still ok
    (1.0, 1.2501, "slower"),
    (2.0, 1.5, "ok"),           # -25%
    (2.0, 1.49, "faster"),
    (0.5, 0.7, "slower"),       # +40%
])
def test_classify_thresholds(base, current, state):
    assert classify(base, current, TOL) == state


def test_unchanged_cases_pass_without_remeasuring():
    verdicts = compare({"a": 1.0, "b": 2.0}, {"a": ok(1.1), "b": ok(1.9)}, TOL, never_called)
    assert [v.verdict for v in verdicts] == ["ok", "ok"]
    assert exit_code(verdicts) == 0
    assert verdicts[0].change == pytest.approx(0.1)


def test_a_slowdown_confirmed_by_remeasuring_is_a_regression():
    asked = []

    def remeasure(keys):
        asked.extend(keys)
        return {"a": (1.0, 1.4)}

    verdicts = compare({"a": 1.0, "b": 1.0}, {"a": ok(1.3), "b": ok(1.0)}, TOL, remeasure)
    assert asked == ["a"]
    by_key = {v.key: v for v in verdicts}
    assert by_key["a"].verdict == "regression"
    assert by_key["a"].current_ratio == 1.4
    assert by_key["a"].first_change == pytest.approx(0.3)
    assert by_key["b"].verdict == "ok"
    assert exit_code(verdicts) == 1


def test_a_slowdown_the_remeasure_does_not_confirm_is_not_a_regression():
    verdicts = compare({"a": 1.0}, {"a": ok(1.3)}, TOL, lambda keys: {"a": (1.0, 1.1)})
    assert verdicts[0].verdict == "slower-unconfirmed"
    assert exit_code(verdicts) == 0


def test_a_remeasure_judges_against_its_own_base():
    """A/B re-measures both sides: 1.5 against a re-measured base of 1.4 is +7%, ok."""
    verdicts = compare({"a": 1.0}, {"a": ok(1.3)}, TOL, lambda keys: {"a": (1.4, 1.5)})
    assert verdicts[0].verdict == "slower-unconfirmed"
    assert verdicts[0].change == pytest.approx(1.5 / 1.4 - 1)


def test_cases_in_only_one_side_are_reported_not_crashed():
    verdicts = compare({"old": 1.0}, {"new": ok(2.0)}, TOL, never_called)
    by_key = {v.key: v for v in verdicts}
    assert by_key["old"].verdict == "missing" and by_key["old"].change is None
    assert by_key["new"].verdict == "new"
    assert exit_code(verdicts) == 0


def test_a_failed_measurement_is_reported():
    current = {"a": {"status": "unavailable", "reason": "no GPU"}}
    verdicts = compare({"a": 1.0}, current, TOL, never_called)
    assert verdicts[0].verdict == "failed" and "no GPU" in verdicts[0].note


def test_table_lists_every_case_with_change():
    table = render_table([Verdict("k/1", 1.0, 1.5, "regression"),
                                  Verdict("k/2", None, 2.0, "new"),
                                  Verdict("k/3", 1.0, None, "failed", "error: Boom\n" + "x" * 300)],
                                 TOL)
    lines = table.splitlines()
    assert len(lines) == 6                      # header, rule, three cases, legend
    assert "failed (error: Boom)" in lines[4]
    assert lines[0].split() == ["case", "baseline", "current", "change", "verdict"]
    assert "k/1" in lines[2] and "+50.0%" in lines[2] and "regression" in lines[2]
    assert "k/2" in lines[3] and "new" in lines[3]


FINGERPRINT = {"vendor": "V", "cpu_model": "M", "isa": "avx2", "cores": 2}


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("{not json", "is not valid JSON"),
    (json.dumps({"schema": "other"}), "is not a grubench regress baseline"),
    (json.dumps({"schema": baselines.SCHEMA, "cases": {}}), "no machine 'fingerprint'"),
    (json.dumps({"schema": baselines.SCHEMA, "fingerprint": FINGERPRINT,
                 "cases": {"a": {"ratio": -1}}}), "no valid 'cases'"),
    (json.dumps({"schema": baselines.SCHEMA, "fingerprint": FINGERPRINT, "cases": []}),
     "no valid 'cases'"),
    (json.dumps({"schema": baselines.SCHEMA, "fingerprint": FINGERPRINT,
                 "cases": {"a": {"ratio": True}}}), "no valid 'cases'"),
    (json.dumps({"schema": baselines.SCHEMA, "fingerprint": FINGERPRINT,
                 "cases": {"a": {"ratio": 0}}}), "no valid 'cases'"),
])
def test_missing_or_corrupt_baseline(tmp_path, content, message):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BaselineError, match=message):
        baselines.load_baseline(path)


def test_baseline_document_round_trips(tmp_path):
    rows = {"a": {"status": "ok", "ratio": 1.5, "case_s": 0.01},
            "b": {"status": "failed", "reason": "boom"}}
    document = baselines.baseline_document(rows, regress.CI_SUITE, {"cpu": "test"}, FINGERPRINT,
                                          TOL)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(document))
    loaded = baselines.load_baseline(path)
    assert loaded["cases"] == {"a": {"ratio": 1.5, "case_s": 0.01}}
    assert loaded["machine"] == {"cpu": "test"}
    assert loaded["fingerprint"] == FINGERPRINT
    assert loaded["suite"] == [baselines.task_entry(t) for t in regress.CI_SUITE]


def test_case_keys_name_every_field_that_changes_the_time():
    base = Task(Case("gru", 100, 1, 64, 64), "numba-cpu")
    assert base.key == "numba-cpu/gru/reset_after/inference/100,1,64,64/float32/t1"
    variants = [Task(Case("gru", 100, 1, 64, 64, variant="reset_before"), "numba-cpu"),
                Task(Case("gru", 100, 1, 64, 64, variable_lengths=True), "numba-cpu"),
                Task(Case("gru", 100, 1, 64, 64, mode="training"), "numba-cpu"),
                Task(Case("gru", 100, 1, 64, 64), "numba-cpu", threads=2)]
    assert len({base.key, *(v.key for v in variants)}) == 5
    assert len({c.key for c in regress.CI_SUITE}) == len(regress.CI_SUITE)


def test_task_entries_round_trip():
    others = (Task(Case("gru", 3, 2, 5, 7, dtype="float64"), "numpy", threads=2),
              Task(Case("lstm", 3, 2, 5, 7, mode="training"), "torch-cpu", threads=4))
    for task in (*regress.CI_SUITE, *others):
        assert baselines.task_of(json.loads(json.dumps(baselines.task_entry(task)))) == task


@pytest.mark.parametrize("path", sorted(BASELINES.glob("*.json")), ids=lambda p: p.name)
def test_committed_baselines_load_and_name_the_ci_suite(path):
    """Every committed baseline still reads, lists the CI suite under the keys the gate
    measures now, and its suite entries name the same tasks."""
    document = baselines.load_baseline(path)
    keys = {task.key for task in regress.CI_SUITE}
    assert set(document["cases"]) == keys
    assert {baselines.task_of(entry).key for entry in document["suite"]} == keys
    assert [baselines.task_entry(t) for t in regress.CI_SUITE] == document["suite"]


@pytest.mark.slow
def test_slowed_stretches_a_call_by_its_factor_in_cpu_time():
    def work():
        sum(range(200000))

    start = calibrated.CLOCK()
    work()
    once = calibrated.CLOCK() - start
    start = calibrated.CLOCK()
    calibrated.slowed(work, 3.0)()
    assert calibrated.CLOCK() - start >= 2 * once


@pytest.mark.slow
def test_interleaved_ratios_gives_one_positive_ratio_per_pair():
    def work():
        sum(range(20000))

    ratios = timing.interleaved_ratios(work, work, pairs=6, min_block_s=0.002,
                                       clock=timing.PROCESS_TIME)
    assert len(ratios) == 6
    assert all(r > 0 for r in ratios)


TINY_SUITE = {"ci": (Task(Case("gru", 4, 1, 4, 4), "numpy"),
                     Task(Case("gru", 4, 1, 4, 4), "no-such-backend-here"))}


@pytest.fixture
def tiny_suite(monkeypatch):
    from grubench import backends
    monkeypatch.setattr(regress, "SUITES", TINY_SUITE)
    monkeypatch.setitem(backends.REGISTRY, "no-such-backend-here",
                        backends.Entry("no_such_module", "missing on purpose"))


@pytest.mark.slow
def test_regress_command_exit_codes_end_to_end(tmp_path, tiny_suite, monkeypatch, capsys):
    """update -> compare unchanged (generous tolerance: no timing assumption) -> compare
    with a 4x injected slowdown (a margin no machine noise closes) -> corrupt baseline."""
    from grubench import cli

    monkeypatch.setenv("GRUBENCH_PLUGINS", "")
    baseline = tmp_path / "baseline.json"
    assert cli.main(["regress", "--baseline", str(baseline)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["regress", "--update", "--baseline", str(baseline), "--pairs", "5"]) == 1
    out = capsys.readouterr().out
    assert "not recorded: no-such-backend-here" in out     # unavailable is said, not dropped
    assert list(json.loads(baseline.read_text())["cases"]) == [TINY_SUITE["ci"][0].key]
    assert cli.main(["regress", "--baseline", str(baseline), "--pairs", "5",
                     "--tolerance", "5"]) == 0
    monkeypatch.setenv(calibrated.SLOWDOWN_ENV, "4")
    assert cli.main(["regress", "--baseline", str(baseline), "--pairs", "5"]) == 1
    out = capsys.readouterr().out
    assert "regression (first" in out and "REGRESSION" in out
    baseline.write_text("{")
    assert cli.main(["regress", "--baseline", str(baseline)]) == 2


def test_bad_regress_arguments_exit_2(capsys):
    from grubench import cli

    assert cli.main(["regress", "--suite", "nightly"]) == 2
    assert "unknown regress suite 'nightly'; valid: ci" in capsys.readouterr().err
    assert cli.main(["regress", "--tolerance", "-1"]) == 2
    assert cli.main(["regress", "--pairs", "1"]) == 2


def test_a_baseline_of_other_cases_is_refused_not_passed(tmp_path, fixed_ratios, capsys):
    from grubench import cli, machine

    baseline = tmp_path / "other.json"
    baseline.write_text(json.dumps({"schema": baselines.SCHEMA,
                                    "fingerprint": machine.fingerprint(),
                                    "cases": {"some/other/case": {"ratio": 1.0}}}))
    assert cli.main(["regress", "--baseline", str(baseline), "--pairs", "3"]) == 2
    assert "holds none of the ci suite's cases" in capsys.readouterr().err
    assert fixed_ratios[0] == []            # nothing measured


def test_update_into_an_unwritable_folder_fails_before_measuring(tiny_suite, capsys,
                                                                  monkeypatch):
    from grubench import cli

    monkeypatch.setattr(regress, "measure", lambda *a: pytest.fail("measured first"))
    assert cli.main(["regress", "--update", "--baseline", "/sys/grubench/b.json"]) == 2
    assert "cannot write to output directory /sys/grubench" in capsys.readouterr().err


def write_baseline(path, fingerprint, ratio):
    path.write_text(json.dumps({"schema": baselines.SCHEMA, "fingerprint": fingerprint,
                                "cases": {c.key: {"ratio": ratio} for c in TINY_SUITE["ci"]}}))


def test_a_baseline_of_another_machine_is_not_used_for_a_verdict(tmp_path, tiny_suite,
                                                                 monkeypatch, capsys):
    """Its ratios would make every case a regression; it is set aside, and with no git
    history to fall back on the gate says so and passes."""
    from grubench import ab, cli, machine

    other = {**machine.fingerprint(), "cpu_model": "Some Other CPU", "isa": "avx2"}
    baseline = tmp_path / "other-machine.json"
    write_baseline(baseline, other, 1e-9)
    monkeypatch.setattr(regress, "measure", lambda *a: pytest.fail("measured for a verdict"))
    monkeypatch.setattr(ab, "has_history", lambda: False)
    assert cli.main(["regress", "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert "was recorded on another machine" in out and "some-other-cpu" in out
    assert "no baseline for this machine; record one with --update" in out


@pytest.mark.slow
def test_the_baseline_of_this_machine_is_found_by_its_fingerprint(tmp_path, tiny_suite,
                                                                  monkeypatch, capsys):
    from grubench import cli, machine

    monkeypatch.setattr(baselines, "BASELINE_DIR", tmp_path)
    # 1e-9: any measurement is slower, so exit 1 proves this baseline gave the verdict
    write_baseline(tmp_path / f"regress-{machine.fingerprint_id(machine.fingerprint())}.json",
                   machine.fingerprint(), 1e-9)
    assert cli.main(["regress", "--pairs", "3"]) == 1
    assert "regression (first" in capsys.readouterr().out


def test_without_a_baseline_and_without_history_the_gate_passes_and_says_why(
        tmp_path, tiny_suite, monkeypatch, capsys):
    from grubench import ab, cli

    monkeypatch.setattr(baselines, "BASELINE_DIR", tmp_path)
    monkeypatch.setattr(ab, "has_history", lambda: False)
    assert cli.main(["regress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("grubench regress: no baseline for this machine (")
    assert out[1] == "no baseline for this machine; record one with --update"


@pytest.mark.slow
def test_update_writes_this_machines_baseline_with_its_fingerprint(tmp_path, tiny_suite,
                                                                    monkeypatch, capsys):
    from grubench import cli, machine

    monkeypatch.setattr(baselines, "BASELINE_DIR", tmp_path)
    assert cli.main(["regress", "--update", "--pairs", "3"]) == 1   # one case unavailable
    path = tmp_path / f"regress-{machine.fingerprint_id(machine.fingerprint())}.json"
    assert baselines.load_baseline(path)["fingerprint"] == machine.fingerprint()


def test_the_gate_measures_the_default_code_paths_whatever_is_tuned(monkeypatch):
    """Its workers inherit tuning off (numba-cpu then runs its tiles, as
    test_tuning_off_leaves_the_default checks), and the environment is put back after."""
    import os

    from grubench import tuning
    monkeypatch.setenv(tuning.DIR_ENV, "/somewhere/tuned")
    seen = []
    monkeypatch.setattr(regress, "gate", lambda args: seen.append(
        os.environ[tuning.DIR_ENV]) or 0)
    assert regress.handle(None) == 0
    assert seen == ["off"] and os.environ[tuning.DIR_ENV] == "/somewhere/tuned"


# The command's logic with the measurement replaced by fixed ratios: no worker, no timing.
TWO_SUITE = {"ci": (Task(Case("gru", 4, 1, 4, 4), "numpy"),
                    Task(Case("gru", 4, 1, 4, 8), "numpy"))}
KEY_A, KEY_B = (task.key for task in TWO_SUITE["ci"])


@pytest.fixture
def fixed_ratios(monkeypatch):
    """``regress.measure`` answering from ``answers`` (one mapping key -> ratio, or -> a
    failure status, per call, in order); each call's (keys, pairs) is kept in ``calls``."""
    monkeypatch.setattr(regress, "SUITES", TWO_SUITE)
    calls, answers = [], []

    def measure(tasks, pairs, log_dir):
        assert log_dir.is_dir()             # the workers' logs go there
        keys = [task.key for task in tasks]
        answer = answers[len(calls)]
        calls.append((keys, pairs))
        return {key: ({"key": key, "status": "ok", "reason": None, "ratio": answer[key],
                       "case_s": 0.001}
                      if isinstance(answer[key], float) else
                      {"key": key, "status": answer[key], "reason": "boom"})
                for key in keys}

    monkeypatch.setattr(regress, "measure", measure)
    return calls, answers


def test_against_a_baseline_a_confirmed_slowdown_exits_1_with_its_changes(
        tmp_path, fixed_ratios, monkeypatch, capsys):
    """Baseline a=1.0, b=2.0; first a=1.5 (+50%, over the 25% tolerance), b=2.2 (+10%);
    a is re-measured alone with twice the pairs, 1.4: +40% against the same baseline."""
    import time

    from grubench import cli, history, machine

    recorded = []
    monkeypatch.setattr(history, "record", lambda document, args: recorded.append(
        (document, args.no_history)))

    calls, answers = fixed_ratios
    answers += [{KEY_A: 1.5, KEY_B: 2.2}, {KEY_A: 1.4}]
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"schema": baselines.SCHEMA,
                                    "fingerprint": machine.fingerprint(),
                                    "cases": {KEY_A: {"ratio": 1.0}, KEY_B: {"ratio": 2.0}}}))
    out_json = tmp_path / "verdicts.json"
    started = time.perf_counter()
    assert cli.main(["regress", "--baseline", str(baseline), "--pairs", "5", "--json",
                     str(out_json), "--no-history"]) == 1
    took = time.perf_counter() - started
    assert calls == [([KEY_A, KEY_B], 5), ([KEY_A], 10)]
    # the first measurement goes to the history (which --no-history then declines)
    assert [({k: v["ratio"] for k, v in d["cases"].items()}, d["tolerance"],
             d["fingerprint"], d["machine"]["cpu_model"], no_history)
            for d, no_history in recorded] == [
        ({KEY_A: 1.5, KEY_B: 2.2}, 0.25, machine.fingerprint(),
         machine.context()["cpu_model"], True)]
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"grubench regress: against {baseline}: 2 cases, 5 pairs each",
        "grubench regress: re-measuring 1 slower case(s)"]
    lines = captured.out.splitlines()
    assert lines[0].split() == ["case", "baseline", "current", "change", "verdict"]
    assert lines[2].split() == [KEY_A, "1", "1.4", "+40.0%", "regression", "(first", "+50.0%,",
                                "re-measured)"]
    assert lines[3].split() == [KEY_B, "2", "2.2", "+10.0%", "ok"]
    assert lines[4] == ("ratio = case time / calibration product time, same worker, "
                        "interleaved; tolerance +25%")
    assert lines[5].startswith("REGRESSION (")
    written = json.loads(out_json.read_text())
    assert written["exit_code"] == 1 and written["tolerance"] == 0.25
    assert written["compared_with"] == "baseline"
    assert 0 <= written["seconds"] <= took
    by_key = {v["key"]: v for v in written["verdicts"]}
    assert by_key[KEY_A]["change"] == pytest.approx(0.4, abs=1e-12)
    assert by_key[KEY_A]["first_change"] == pytest.approx(0.5, abs=1e-12)
    assert by_key[KEY_B]["change"] == pytest.approx(0.1, abs=1e-12)
    assert by_key[KEY_B]["verdict"] == "ok"


def test_against_a_baseline_the_tolerance_option_decides_and_nothing_is_remeasured(
        tmp_path, fixed_ratios, capsys):
    """+50% under --tolerance 0.6 is ok and -70% faster: no re-measurement, exit 0; the
    default pairs."""
    from grubench import cli, machine

    calls, answers = fixed_ratios
    answers += [{KEY_A: 1.5, KEY_B: 0.6}]
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"schema": baselines.SCHEMA,
                                    "fingerprint": machine.fingerprint(),
                                    "cases": {KEY_A: {"ratio": 1.0}, KEY_B: {"ratio": 2.0}}}))
    assert cli.main(["regress", "--baseline", str(baseline), "--tolerance", "0.6",
                     "--no-history"]) == 0
    assert calls == [([KEY_A, KEY_B], regress.DEFAULT_PAIRS)]
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split() == [KEY_A, "1", "1.5", "+50.0%", "ok"]
    assert lines[3].split() == [KEY_B, "2", "0.6", "-70.0%", "faster"]
    assert lines[4].endswith("tolerance +60%")
    assert lines[5].startswith("no regression (")


def test_update_records_each_measured_ratio_and_names_what_failed(tmp_path, fixed_ratios,
                                                                   capsys):
    import time

    from grubench import cli, machine

    calls, answers = fixed_ratios
    answers += [{KEY_A: 1.25, KEY_B: "crashed"}]
    path = tmp_path / "b.json"
    started = time.perf_counter()
    assert cli.main(["regress", "--update", "--baseline", str(path), "--pairs", "4"]) == 1
    took = time.perf_counter() - started
    assert calls == [([KEY_A, KEY_B], 4)]
    captured = capsys.readouterr()
    assert captured.err == "grubench regress: 2 cases, 4 pairs each\n"
    document = baselines.load_baseline(path)
    assert document["cases"] == {KEY_A: {"ratio": 1.25, "case_s": 0.001}}
    assert document["tolerance"] == regress.DEFAULT_TOLERANCE
    assert document["fingerprint"] == machine.fingerprint()
    assert document["machine"]["cpu_model"] == machine.context()["cpu_model"]
    out = captured.out.splitlines()
    head, seconds = out[0].rsplit(" (", 1)
    assert head == f"baseline {path} written with 1 cases"
    assert seconds.endswith(" s)") and 0 <= int(seconds[:-3]) <= round(took)
    assert out[1] == f"  not recorded: {KEY_B}: crashed: boom"


def test_update_with_every_case_measured_exits_0(tmp_path, fixed_ratios):
    from grubench import cli

    _, answers = fixed_ratios
    answers += [{KEY_A: 1.0, KEY_B: 3.0}]
    path = tmp_path / "b.json"
    assert cli.main(["regress", "--update", "--baseline", str(path), "--tolerance", "0.3"]) == 0
    document = baselines.load_baseline(path)
    assert document["tolerance"] == 0.3
    assert {k: v["ratio"] for k, v in document["cases"].items()} == {KEY_A: 1.0, KEY_B: 3.0}


def test_a_long_note_is_cut_to_100_characters_in_the_table():
    kept, cut = "k" * 100, "c" * 101
    lines = render_table([Verdict("a", 1.0, None, "failed", kept),
                          Verdict("b", 1.0, None, "failed", cut)], TOL).splitlines()
    assert lines[2].endswith(f"failed ({kept})")
    assert lines[3].endswith(f"failed ({'c' * 97}...)")


def test_the_verdict_table_of_every_kind_of_case():
    """Each verdict the gate gives, its figures and note as the table prints them."""
    remeasured = []

    def remeasure(keys):
        remeasured.extend(keys)
        return {"a": (1.0, 1.4), "e": (2.0, 2.1)}    # b's re-measurement failed

    baseline = {"a": 1.0, "b": 2.0, "c": 1.0, "d": 1.0, "e": 2.0}
    current = {"a": ok(1.5), "b": ok(3.0), "d": {"status": "crashed", "reason": "boom"},
               "e": ok(2.6), "f": ok(0.5),
               "g": {**ok(0.25), "base_failure": "the base revision: crashed"}}
    verdicts = compare(baseline, current, TOL, remeasure)
    assert remeasured == ["a", "b", "e"]
    assert [(v.key, v.baseline_ratio, v.current_ratio, v.verdict, v.first_change)
            for v in verdicts] == [("a", 1.0, 1.4, "regression", 0.5),
                                   ("b", 2.0, None, "slower-unconfirmed", 0.5),
                                   ("c", 1.0, None, "missing", None),
                                   ("d", 1.0, None, "failed", None),
                                   ("e", 2.0, 2.1, "slower-unconfirmed", pytest.approx(0.3)),
                                   ("f", None, 0.5, "new", None),
                                   ("g", None, 0.25, "new", None)]
    within = "the re-measurement was within the tolerance"
    assert render_table(verdicts, TOL).splitlines() == [
        "case  baseline  current  change  verdict",
        "----  --------  -------  ------  " + "-" * len(f"slower-unconfirmed (first +50.0%; {within})"),
        "a     1         1.4      +40.0%  regression (first +50.0%, re-measured)",
        "b     2         -        -       slower-unconfirmed (first +50.0%; "
        "the re-measurement failed)",
        "c     1         -        -       missing (in the baseline, not measured)",
        "d     1         -        -       failed (crashed: boom)",
        f"e     2         2.1      +5.0%   slower-unconfirmed (first +30.0%; {within})",
        "f     -         0.5      -       new (not in the baseline)",
        "g     -         0.25     -       new (the base revision: crashed)",
        "ratio = case time / calibration product time, same worker, interleaved; "
        "tolerance +25%"]


# grubench.calibrated with the timing and the worker replaced: what it reports of them.

class CountingBackend:
    """A backend whose prepared case records which step the measurement runs."""
    available = True

    def __init__(self):
        self.steps = []

    def prepare(self, args):
        self.args = args
        steps = self.steps

        class Prepared:
            def forward(self):
                steps.append("forward")

            def training_step(self):
                steps.append("training_step")

            def synchronize(self):
                steps.append("synchronize")

        return Prepared()


@pytest.mark.parametrize("mode, step", [("inference", "forward"), ("training", "training_step")])
def test_a_task_is_the_median_of_its_pair_ratios_against_its_calibration(monkeypatch, mode,
                                                                        step):
    seen = {}

    def interleaved_ratios(call, reference, pairs, clock):
        product = reference()
        seen.update(pairs=pairs, clock=clock, product=(product.shape, product.dtype))
        call()
        return [3.0, 1.0, 2.0, 10.0]            # median of an even count: (2 + 3) / 2

    def block_time(call, calls, clock):
        seen.update(block=(calls, clock))
        call()
        return 0.125

    monkeypatch.setattr(timing, "interleaved_ratios", interleaved_ratios)
    monkeypatch.setattr(timing, "block_time", block_time)
    monkeypatch.delenv(calibrated.SLOWDOWN_ENV, raising=False)
    backend = CountingBackend()
    case = Case("gru", 5, 3, 4, 6, mode=mode, variable_lengths=True)
    task = Task(case, "fake")
    row = calibrated.measure_task(backend, task, 7)
    assert row == {"key": task.key, "status": "ok", "reason": None, "ratio": 2.5,
                   "ratios": [3.0, 1.0, 2.0, 10.0], "case_s": 0.125}
    # the calibration product: float32 (T*B, I+H) x (I+H, 3H), timed by process CPU time;
    # the case's own time: 3 calls on the same clock
    assert seen == {"pairs": 7, "clock": timing.PROCESS_TIME,
                    "product": ((15, 18), np.float32), "block": (3, timing.PROCESS_TIME)}
    assert backend.steps == [step, "synchronize"] * 3      # warm-up, timed pair, case time
    # the inputs every baseline was measured on: seed 0 (it draws the lengths), gradients
    inputs = case.make_args(seed=0, with_grads=True)
    assert np.array_equal(backend.args.lengths, inputs.lengths)
    assert np.array_equal(backend.args.x, inputs.x)
    assert backend.args.dy is not None


@pytest.mark.parametrize("value, factor", [(None, None), ("", None), ("1", None),
                                           ("4", 4.0), ("2", 2.0)])
def test_the_injected_slowdown_applies_only_when_set_and_not_1(monkeypatch, value, factor):
    slowed = []
    monkeypatch.setattr(calibrated, "slowed", lambda run, by: slowed.append((run, by)) or run)
    monkeypatch.setattr(timing, "interleaved_ratios", lambda call, reference, pairs, clock: [1.0])
    if value is None:
        monkeypatch.delenv(calibrated.SLOWDOWN_ENV, raising=False)
    else:
        monkeypatch.setenv(calibrated.SLOWDOWN_ENV, value)
    calibrated.measure_task(CountingBackend(), Task(Case("gru", 2, 1, 2, 2), "fake"), 3)
    assert [by for _, by in slowed] == ([] if factor is None else [factor])
    assert all(callable(run) for run, _ in slowed)


def test_a_worker_answers_a_regress_request_with_the_tasks_row(monkeypatch):
    monkeypatch.setattr(timing, "interleaved_ratios",
                        lambda call, reference, pairs, clock: [float(pairs)])
    monkeypatch.delenv(calibrated.SLOWDOWN_ENV, raising=False)
    task = Task(Case("lstm", 2, 1, 2, 3, dtype="float64"), "fake", 2)
    row = calibrated.run_request(CountingBackend(), {"task": baselines.task_entry(task),
                                                     "pairs": 5}, {})
    assert (row["key"], row["status"], row["ratio"]) == (task.key, "ok", 5.0)


def test_an_unavailable_backend_is_a_row_saying_why():
    class Missing:
        available = False
        why_unavailable = "not installed here"

    task = Task(Case("gru", 5, 3, 4, 6), "fake")
    assert calibrated.measure_task(Missing(), task, 7) == {
        "key": task.key, "status": "unavailable", "reason": "not installed here"}


def test_slowed_spins_until_factor_times_the_calls_clock_time(monkeypatch):
    now = [100.0]

    def clock():                     # each reading advances the clock by 1
        now[0] += 1
        return now[0] - 1

    def run():
        now[0] += 10
        return "result"

    monkeypatch.setattr(calibrated, "CLOCK", clock)
    assert calibrated.slowed(run, 3.0)() == "result"
    # start 100, the call ends at 111: the deadline 100 + 3 * 11 = 133 is the first reading
    # not below it
    assert now[0] == 134


def test_tasks_are_grouped_by_backend_and_threads():
    tasks = [Task(Case("gru", 4, 1, 4, 4), "numpy", 2), Task(Case("gru", 4, 1, 4, 4), "numpy"),
             Task(Case("gru", 5, 1, 4, 4), "numpy", 2), Task(Case("gru", 4, 1, 4, 4), "a")]
    assert [(worker, [t.case.T for t in group]) for worker, group in
            calibrated.by_worker(tasks)] == [(("a", 1), [4]), (("numpy", 1), [4]),
                                             (("numpy", 2), [4, 5])]


def test_measure_gives_every_task_a_row_and_replaces_a_crashed_worker(monkeypatch, tmp_path,
                                                                      capsys):
    from grubench.worker import WorkerFailed

    started, closed = [], []

    class FakeWorker:
        def __init__(self, backend, threads, log_path, timeout, **start):
            started.append((backend, threads, log_path, timeout))
            self.hello = {"available": backend != "gone", "reason": "not here"}

        def request(self, message, timeout):
            assert message["kind"] == "regress" and message["pairs"] == 9
            assert timeout == calibrated.CASE_TIMEOUT_S
            if message["task"]["T"] == 13:
                raise WorkerFailed("crashed", "worker died (signal SIGSEGV)")
            return {"status": "ok", "reason": None, "ratio": message["task"]["T"] / 8}

        def close(self, kill):
            closed.append(kill)

    monkeypatch.setattr(calibrated, "Worker", FakeWorker)
    tasks = [Task(Case("gru", T, 1, 4, 4), backend, threads) for T, backend, threads in
             ((4, "numpy", 1), (13, "numpy", 1), (6, "numpy", 1), (4, "numpy", 2),
              (4, "gone", 1))]
    rows = calibrated.measure(tasks, 9, tmp_path)
    assert {key: (row["status"], row.get("ratio"), row["reason"]) for key, row in rows.items()} \
        == {tasks[0].key: ("ok", 0.5, None),
            tasks[1].key: ("crashed", None, "worker died (signal SIGSEGV)"),
            tasks[2].key: ("ok", 0.75, None),
            tasks[3].key: ("ok", 0.5, None),
            tasks[4].key: ("unavailable", None, "not here")}
    assert all(rows[key]["key"] == key for key in rows)
    timeout = calibrated.CASE_TIMEOUT_S
    assert started == [("gone", 1, tmp_path / "regress-gone-1.log", timeout),
                       ("numpy", 1, tmp_path / "regress-numpy-1.log", timeout),
                       ("numpy", 1, tmp_path / "regress-numpy-1.log", timeout),  # after the crash
                       ("numpy", 2, tmp_path / "regress-numpy-2.log", timeout)]
    assert closed == [True, True, True]      # each live worker, killed at its group's end
    err = capsys.readouterr().err.splitlines()
    assert err == [f"  {tasks[4].key}: unavailable: not here",
                   f"  {tasks[0].key}: ratio 0.5",
                   f"  {tasks[1].key}: crashed: worker died (signal SIGSEGV)",
                   f"  {tasks[2].key}: ratio 0.75",
                   f"  {tasks[3].key}: ratio 0.5"]


@pytest.mark.parametrize("argv, message", [
    (["--tolerance", "0"], "--tolerance must be a fraction between 0 and 10, got 0.0"),
    (["--tolerance", "10"], "--tolerance must be a fraction between 0 and 10, got 10.0"),
    (["--pairs", "2"], "--pairs must be at least 3, got 2"),
    (["--rounds", "1"], "--rounds must be at least 2, got 1"),
    (["--update", "--against", "HEAD"],
     "--update records a baseline; it does not go with --against"),
])
def test_each_bad_regress_setting_exits_2_naming_it(argv, message, capsys):
    from grubench import cli

    assert cli.main(["regress", *argv]) == 2
    assert capsys.readouterr().err.strip() == f"grubench: error: {message}"


@pytest.fixture
def fixed_ab(monkeypatch, tmp_path):
    """The A/B path with the base revision's install and the measurement replaced: the
    base at ``tmp_path``, commit 0123456789abcdef; ``answers`` are (base ratios, current
    ratios) per ``ab.measure`` call, each call's (keys, site, rounds, pairs) in ``calls``;
    the documents given to the history in ``recorded``."""
    import contextlib

    from grubench import ab, history

    monkeypatch.setattr(regress, "SUITES", TWO_SUITE)
    calls, answers, recorded, installed = [], [], [], []

    @contextlib.contextmanager
    def base_install(rev):
        installed.append(rev)
        yield "0123456789abcdef", tmp_path

    def measure(tasks, site, rounds, pairs, log_dir):
        assert log_dir.is_dir()
        keys = [task.key for task in tasks]
        base, current = answers[len(calls)]
        calls.append((keys, site, rounds, pairs))
        return base, {key: ({"key": key, "status": "ok", "reason": None, "ratio": ratio}
                            if isinstance(ratio, float) else
                            {"key": key, "status": ratio, "reason": "boom"})
                      for key, ratio in current.items()}

    monkeypatch.setattr(ab, "base_install", base_install)
    monkeypatch.setattr(ab, "sigterm_as_interrupt", contextlib.nullcontext)
    monkeypatch.setattr(ab, "default_base", lambda: "merge-base-rev")
    monkeypatch.setattr(ab, "measure", measure)
    monkeypatch.setattr(history, "record",
                        lambda document, args: recorded.append((document, args.no_history)))
    return calls, answers, recorded, installed


def test_the_ab_gate_remeasures_both_sides_and_confirms_a_regression(fixed_ab, tmp_path,
                                                                     capsys):
    """Base a=1.0, b=2.0, current a=1.3 (+30%, over the 15% A/B tolerance), b=2.1 (+5%);
    a again with twice the turns: base 1.1, current 1.5: +36.4%, a regression."""
    from grubench import cli, machine

    calls, answers, recorded, installed = fixed_ab
    answers += [({KEY_A: 1.0, KEY_B: 2.0}, {KEY_A: 1.3, KEY_B: 2.1}),
                ({KEY_A: 1.1}, {KEY_A: 1.5})]
    assert cli.main(["regress", "--against", "v1", "--pairs", "4", "--rounds", "3"]) == 1
    assert installed == ["v1"]
    assert calls == [([KEY_A, KEY_B], tmp_path, 3, 4), ([KEY_A], tmp_path, 6, 4)]
    assert [(sorted(d["cases"].items()), d["tolerance"], d["fingerprint"],
             d["machine"]["cpu_model"], no_history) for d, no_history in recorded] == [
        ([(KEY_A, {"ratio": 1.3, "case_s": None}), (KEY_B, {"ratio": 2.1, "case_s": None})],
         0.15, machine.fingerprint(), machine.context()["cpu_model"], False)]
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "grubench regress: A/B against v1 (0123456789ab) on this machine: 2 cases, 3 turns "
        "per side of 4 pairs",
        "grubench regress: re-measuring 1 slower case(s), both sides"]
    lines = captured.out.splitlines()
    assert lines[0] == "base: v1 = 0123456789ab"
    assert lines[1].split() == ["case", "base", "current", "change", "verdict"]
    assert lines[3].split() == [KEY_A, "1.1", "1.5", "+36.4%", "regression", "(first",
                                "+30.0%,", "re-measured)"]
    assert lines[4].split() == [KEY_B, "2", "2.1", "+5.0%", "ok"]
    assert lines[5].endswith("tolerance +15%")
    assert lines[6].startswith("REGRESSION (")


def test_the_ab_gate_without_a_revision_uses_the_merge_base(fixed_ab, capsys):
    from grubench import cli

    calls, answers, _, installed = fixed_ab
    answers += [({KEY_A: 1.0, KEY_B: 2.0}, {KEY_A: 1.1, KEY_B: 2.0})]
    assert cli.main(["regress", "--against", "--tolerance", "0.2", "--rounds", "2"]) == 0
    assert installed == ["merge-base-rev"]
    assert [(rounds, pairs) for _, _, rounds, pairs in calls] == [(2, regress.AB_PAIRS)]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "base: the merge-base with main (HEAD~1 on main) = 0123456789ab"
    assert lines[3].split() == [KEY_A, "1", "1.1", "+10.0%", "ok"]
    assert lines[5].endswith("tolerance +20%")
    assert lines[6].startswith("no regression (")


def test_without_a_baseline_the_gate_falls_back_to_the_ab_test(fixed_ab, tmp_path,
                                                                monkeypatch, capsys):
    from grubench import ab, cli

    calls, answers, _, installed = fixed_ab
    answers += [({KEY_A: 1.0, KEY_B: 2.0}, {KEY_A: 1.0, KEY_B: 2.0})]
    monkeypatch.setattr(baselines, "BASELINE_DIR", tmp_path / "none")
    monkeypatch.setattr(ab, "has_history", lambda: True)
    assert cli.main(["regress"]) == 0
    assert installed == ["merge-base-rev"] and len(calls) == 1


def test_no_base_revision_passes_and_says_nothing_was_gated(fixed_ab, monkeypatch, capsys):
    from grubench import ab, cli

    calls, _, _, installed = fixed_ab
    monkeypatch.setattr(ab, "default_base", lambda: None)
    assert cli.main(["regress", "--against"]) == 0
    assert capsys.readouterr().out.strip() == ("grubench regress: no base revision to "
                                               "compare with (first commit or shallow "
                                               "clone); nothing gated")
    assert installed == [] and calls == []


def test_a_base_revision_that_cannot_be_installed_exits_2(fixed_ab, monkeypatch, capsys):
    from grubench import ab, cli

    def base_install(rev):
        raise ab.RevisionError(f"revision {rev!r} does not exist")

    monkeypatch.setattr(ab, "base_install", base_install)
    assert cli.main(["regress", "--against", "nope"]) == 2
    assert capsys.readouterr().err.strip() == ("grubench regress: revision 'nope' does not "
                                               "exist")


def test_a_corrupt_baseline_named_by_the_user_exits_2_naming_it(tmp_path, capsys):
    from grubench import cli

    path = tmp_path / "b.json"
    path.write_text("{not json")
    assert cli.main(["regress", "--baseline", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"grubench regress: baseline {path} is not valid JSON: ")


def test_a_ratio_worker_starts_its_worker_with_the_environment_given(monkeypatch, tmp_path):
    """The A/B test's base side runs in a worker with another environment."""
    started = []

    class FakeWorker:
        def __init__(self, backend, threads, log_path, timeout, **start):
            started.append(start)
            self.hello = {"available": True}

        def request(self, message, timeout):
            return {"status": "ok", "reason": None, "ratio": 1.0}

    monkeypatch.setattr(calibrated, "Worker", FakeWorker)
    worker = calibrated.RatioWorker("numpy", 1, tmp_path / "log", env={"PYTHONPATH": "base"})
    worker.measure(Task(Case("gru", 2, 1, 2, 2), "numpy"), 3)
    assert started == [{"env": {"PYTHONPATH": "base"}}]


def test_an_ab_remeasurement_that_fails_leaves_the_case_unconfirmed(fixed_ab, capsys):
    from grubench import cli

    _, answers, _, _ = fixed_ab
    answers += [({KEY_A: 1.0, KEY_B: 2.0}, {KEY_A: 1.3, KEY_B: 2.0}),
                ({KEY_A: 1.0}, {KEY_A: "crashed"})]
    assert cli.main(["regress", "--against", "v1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split()[:4] == [KEY_A, "1", "-", "-"]
    assert "slower-unconfirmed (first +30.0%;" in lines[3]
