"""Verdicts on fixed results: the rules (holds, does not hold, mixed, within noise, not
judged) on samples built by hand, the parameter counts, the training claims, the
rendering, and the committed compare-cells folder rendered end to end."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grubench import report, runner, verdicts
from grubench.verdicts import FAILS, HOLDS, NOISE, UNJUDGED

COMMITTED = Path(__file__).resolve().parents[1] / "reports" / "cpu" / "compare-cells"


def times(median_ms, n=20, spread=0.01, seed=0):
    """n per-call times (seconds) around ``median_ms``, +-spread (relative), median exact."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-spread, spread, n)
    noise -= np.median(noise)
    return list(median_ms * 1e-3 * (1 + noise))


# ---------------------------------------------------------------------- the speed rule

def test_gru_clearly_faster_holds():
    point = verdicts.speed_point("s", times(2.7), times(3.7, seed=1))
    assert point.outcome == HOLDS
    assert point.ratio == pytest.approx(3.7 / 2.7)
    assert point.figure == "GRU 2.7 ms vs LSTM 3.7 ms: 1.37x faster"
    assert point.detail.startswith("95% CI 1.3") and "20 GRU, 20 LSTM samples" in point.detail


def test_gru_clearly_slower_does_not_hold():
    point = verdicts.speed_point("s", times(10.6), times(5.0, seed=1))
    assert point.outcome == FAILS
    assert point.figure == "GRU 10.6 ms vs LSTM 5 ms: 2.12x slower"


def test_a_faster_median_inside_the_noise_is_within_noise():
    # LSTM's median is 10% above GRU's, but the samples spread +-50%: the interval of
    # the ratio straddles 1, so a bare median comparison would be wrong to call it faster.
    gru, lstm = times(10.0, n=7, spread=0.5), times(11.0, n=7, spread=0.5, seed=1)
    assert np.median(lstm) > 1.05 * np.median(gru)
    point = verdicts.speed_point("s", gru, lstm)
    assert point.outcome == NOISE
    low, high = verdicts._bootstrap_ratio(np.array(gru), np.array(lstm))
    assert low < 1 < high


def test_a_significant_difference_below_the_effect_floor_is_within_noise():
    # 3% apart with 0.1% spread: the interval excludes 1, the floor (5%) does not.
    gru, lstm = times(10.0, spread=0.001), times(10.3, spread=0.001, seed=1)
    low, _high = verdicts._bootstrap_ratio(np.array(gru), np.array(lstm))
    assert low > 1
    assert verdicts.speed_point("s", gru, lstm).outcome == NOISE
    assert verdicts.speed_point("s", lstm, gru).outcome == NOISE


@pytest.mark.parametrize("gru, lstm", [([1e-3, 1e-3], times(2.0)), (None, times(2.0)),
                                       (float("nan"), times(2.0))])
def test_too_few_or_no_samples_are_not_judged(gru, lstm):
    point = verdicts.speed_point("s", gru, lstm)
    assert point.outcome == UNJUDGED and point.ratio is None


def test_the_bootstrap_is_reproducible():
    gru, lstm = np.array(times(10.0, spread=0.2)), np.array(times(11.0, spread=0.2, seed=1))
    assert verdicts._bootstrap_ratio(gru, lstm) == verdicts._bootstrap_ratio(gru, lstm)


def test_speed_words():
    assert verdicts.speed_words(1.374) == "1.37x faster"
    assert verdicts.speed_words(0.5) == "2.00x slower"
    assert verdicts.speed_words(1 / 23.94) == "23.9x slower"
    assert verdicts.speed_span(1.25, 1.35) == "1.25x to 1.35x faster"
    assert verdicts.speed_span(0.2, 0.8) == "1.25x to 5.00x slower"
    assert verdicts.speed_span(0.2, 1.5) == "5.00x slower to 1.50x faster"


# ---------------------------------------------------------------------- other rules

def test_memory_rule():
    assert verdicts.memory_point("s", 100, 125).outcome == HOLDS
    assert verdicts.memory_point("s", 125, 100).outcome == FAILS
    assert verdicts.memory_point("s", 100, 101).outcome == NOISE     # within 2%
    assert verdicts.memory_point("s", None, 100).outcome == UNJUDGED
    # a counter that saw no growth in one cell (a resident-set counter can): no verdict
    assert verdicts.memory_point("s", 100, 0).figure == "a cell's counter saw no allocation"
    assert verdicts.memory_point("s", 0, 100).outcome == UNJUDGED
    assert verdicts.memory_point("s", 2 ** 20, 1.25 * 2 ** 20).figure == (
        "GRU 1 MiB vs LSTM 1.25 MiB: LSTM needs 1.25x as much")


def test_numerics_rule():
    fine = verdicts.numerics_point("s", "float32", {"inference": (1e-7, 2e-7),
                                                    "training": (3e-7, 5e-5)})
    assert fine.outcome == HOLDS and fine.ratio == pytest.approx(0.5)   # 5e-5 of 1e-4
    off = verdicts.numerics_point("s", "float32", {"inference": (1e-7, 2e-6)})
    assert off.outcome == FAILS and "LSTM 2.0e-06 (target 1e-06)" in off.figure


def test_task_accuracy_rule():
    similar = verdicts.task_accuracy_point("s", [0.95, 0.96, 0.94], [0.955, 0.97, 0.965])
    assert similar.outcome == HOLDS and similar.detail == "mean (min-max) over 3 seeds"
    apart = verdicts.task_accuracy_point("s", [0.90, 0.91], [0.95, 0.96])
    assert apart.outcome == FAILS and apart.figure.endswith("LSTM better by 5.0 points")
    # seeds without spread: less than a point apart is still similar
    close = verdicts.task_accuracy_point("s", [0.970, 0.970], [0.978, 0.978])
    assert close.outcome == HOLDS and close.figure.endswith("LSTM better by 0.8 points, under 1")
    assert verdicts.task_accuracy_point("s", [0.970, 0.970], [0.981, 0.981]).outcome == FAILS
    one_seed = verdicts.task_accuracy_point("s", [0.9], [0.95])
    assert one_seed.outcome == UNJUDGED


# ---------------------------------------------------------------------- judging a frame

def row(backend, cell, mode, size, median_ms, **fields):
    T, B, I, H = size
    return {**dict(backend=backend, cell=cell, mode=mode, T=T, B=B, I=I, H=H,
                   variant="reset_after" if cell == "gru" else "-", dtype="float32",
                   threads=1, status="ok", median_s=median_ms * 1e-3,
                   samples_s=times(median_ms), peak_bytes=2 ** 20, saved_bytes=2 ** 19,
                   rel_err=1e-7, baseline="torch-cpu"), **fields}


def frame_of(rows, training=None):
    frame = runner.add_derived(pd.DataFrame(rows))
    frame.attrs.update(machine={}, suite={"name": "fixed"}, training=training or [])
    return frame


SMALL, LARGE = (100, 1, 64, 64), (20, 64, 512, 512)


def cells(backend, size, gru_ms, lstm_ms, gru_bytes=2 ** 20, lstm_bytes=2 ** 21):
    """GRU and LSTM rows of one backend and size, both modes, times as given."""
    return [row(backend, cell, mode, size, ms, peak_bytes=peak)
            for cell, ms, peak in (("gru", gru_ms, gru_bytes), ("lstm", lstm_ms, lstm_bytes))
            for mode in ("inference", "training")]


@pytest.fixture
def judged():
    rows = (cells("numba-cpu", SMALL, 1.0, 1.4) + cells("numba-cpu", LARGE, 10.0, 13.0)
            + cells("torch-cpu", SMALL, 5.0, 1.0) + cells("torch-cpu", LARGE, 10.0, 13.0)
            + cells("quiet", SMALL, 10.0, 10.0, 2 ** 20, 2 ** 20))
    return verdicts.judge(frame_of(rows))


def test_judge_labels(judged):
    label = {(c.key, b): judged.get(c, b).label for c in judged.claims for b in judged.backends}
    assert label["training", "numba-cpu"] == "holds"
    assert label["training", "torch-cpu"] == "mixed (holds at 1 of 2 sizes; does not hold at 1)"
    assert label["training", "quiet"] == "within noise"
    assert label["peak", "numba-cpu"] == "holds" and label["peak", "quiet"] == "within noise"
    assert label["parameters", "quiet"] == "holds"
    assert [c.key for c in judged.claims] == ["parameters", "inference", "training", "peak",
                                              "saved", "numerics"]


def test_an_all_failing_backend_does_not_hold():
    judged = verdicts.judge(frame_of(cells("torch-cpu", SMALL, 5.0, 1.0)
                                     + cells("torch-cpu", LARGE, 50.0, 13.0)))
    assert judged.get(verdicts.INFERENCE, "torch-cpu").label == "does not hold"


def test_parameter_counts_are_exact_for_both_cells(judged):
    import torch

    point = judged.get(verdicts.PARAMETERS, "numba-cpu").points[0]
    gru = sum(p.numel() for p in torch.nn.GRU(64, 64).parameters())
    lstm = sum(p.numel() for p in torch.nn.LSTM(64, 64).parameters())
    assert (gru, lstm) == (3 * 64 * (64 + 64 + 2), 4 * 64 * (64 + 64 + 2))
    assert point.figure == f"GRU {gru:,} vs LSTM {lstm:,}: GRU 0.75x as many"
    assert point.ratio == pytest.approx(4 / 3)


def test_the_meaning_line_follows_the_verdicts(judged):
    line = verdicts.meaning(judged, verdicts.TRAINING)
    assert line.startswith("On this machine, with numba-cpu, GRU trains faster than LSTM at "
                           "every size measured")
    assert ("with torch-cpu, GRU trains faster than LSTM at 1 of 2 sizes, and GRU trains "
            "slower than LSTM at 1 of 2 sizes (torch runs its CPU GRU step by step") in line
    assert "with quiet, GRU and LSTM train equally fast within noise at every size" in line


def test_a_known_cause_is_printed_only_where_its_verdict_was_observed():
    cause = verdicts.KNOWN_CAUSES["training", "torch-cpu", FAILS]
    faster = verdicts.judge(frame_of(cells("torch-cpu", SMALL, 1.0, 1.4)))
    slower = verdicts.judge(frame_of(cells("torch-cpu", SMALL, 5.0, 1.0)))
    assert cause not in verdicts.meaning(faster, verdicts.TRAINING)
    assert cause in verdicts.meaning(slower, verdicts.TRAINING)


def test_failed_rows_and_reset_before_are_left_out():
    rows = cells("numba-cpu", SMALL, 1.0, 1.4) + [
        row("numba-cpu", "gru", "training", SMALL, 9.0, variant="reset_before"),
        row("numba-cpu", "gru", "inference", LARGE, 1.0, status="crashed"),
        row("numba-cpu", "lstm", "inference", LARGE, 1.0)]
    judged = verdicts.judge(frame_of(rows))
    assert [p.where for p in judged.get(verdicts.TRAINING, "numba-cpu").points] == [
        "100,1,64,64"]
    assert judged.get(verdicts.TRAINING, "numba-cpu").outcome == HOLDS


# ---------------------------------------------------------------------- training results

def training_row(dataset, cell, backend, seed, accuracy, epoch_s):
    return dict(dataset=dataset, cell=cell, backend=backend, threads=1, hidden=64,
                epochs=4, batch=16, lr=0.005, seed=seed, test_accuracy=accuracy,
                parameters={"gru": 15_561, "lstm": 20_553}[cell],
                epoch_seconds=[5 * epoch_s] + times(epoch_s * 1e3, n=3, seed=seed))


TRAINING = [training_row("toy", cell, "numba-cpu", seed, accuracy, epoch_s)
            for cell, accuracy, epoch_s in (("gru", 0.95, 0.30), ("lstm", 0.96, 0.42))
            for seed in (0, 1, 2)]


def test_training_claims_pool_the_seeds():
    rows = [{**r, "test_accuracy": r["test_accuracy"] + 0.01 * r["seed"]} for r in TRAINING]
    judged = verdicts.judge(frame_of(cells("numba-cpu", SMALL, 1.0, 1.4)), rows)
    epoch = judged.get(verdicts.epoch_time_claim("toy"), "numba-cpu")
    assert epoch.outcome == HOLDS                       # first epochs (5x) left out
    assert epoch.points[0].figure == "GRU 0.3 s vs LSTM 0.42 s: 1.40x faster"
    assert "9 GRU, 9 LSTM samples" in epoch.points[0].detail
    accuracy = judged.get(verdicts.task_accuracy_claim("toy"), "numba-cpu")
    assert accuracy.outcome == HOLDS                    # 95-97% and 96-98% overlap
    assert accuracy.points[0].where == "hidden 64, 4 epochs, batch 16, t1"
    # the whole classifier (input layer, recurrent layer, head) is counted beside the cells
    parameters = judged.get(verdicts.PARAMETERS, "numba-cpu").points
    assert parameters[-1].where == "toy model, hidden 64"
    assert parameters[-1].figure == "GRU 15,561 vs LSTM 20,553: GRU 0.76x as many"


def test_training_runs_of_different_budgets_are_not_compared():
    rows = [{**r, "epochs": 8} if r["cell"] == "lstm" else r for r in TRAINING]
    judged = verdicts.judge(frame_of(cells("numba-cpu", SMALL, 1.0, 1.4)), rows)
    assert judged.get(verdicts.epoch_time_claim("toy"), "numba-cpu") is None


def test_load_training(tmp_path):
    path = tmp_path / "training.json"
    path.write_text(json.dumps({"context": {}, "results": TRAINING[:3]}))
    assert verdicts.load_training([tmp_path, path]) == TRAINING[:3] * 2
    for text, message in [("{", "is not valid JSON"), ("[]", "is not a grubench train"),
                          (json.dumps({"results": [{"cell": "gru"}]}), "result 1 lacks "
                                                                        "dataset, backend")]:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            verdicts.load_training([path])
    with pytest.raises(ValueError, match="cannot read"):
        verdicts.load_training([tmp_path / "missing.json"])


# ---------------------------------------------------------------------- rendering

def test_verdict_cells(judged):
    cell = {(c.key, b): report.verdict_cell(judged.get(c, b))
            for c in judged.claims for b in judged.backends}
    assert cell["training", "numba-cpu"] == "holds: 1.30x to 1.40x faster"
    assert cell["training", "torch-cpu"] == ("mixed (holds at 1 of 2 sizes; does not hold "
                                             "at 1): 5.00x slower to 1.30x faster")
    assert cell["training", "quiet"] == "within noise: GRU 10 ms vs LSTM 10 ms: 1.00x faster"
    assert cell["parameters", "numba-cpu"] == "holds: LSTM/GRU 1.33x"
    assert cell["peak", "numba-cpu"] == "holds: LSTM/GRU 2.00x"
    assert cell["numerics", "quiet"] == "holds: worst error 0.1 of its target"


def test_render_verdicts_text_and_markdown(judged):
    text = report.render_verdicts(judged)
    assert text.startswith("[ GRU vs LSTM: does the usual claim hold here? (per backend) ]")
    header = text.splitlines()[1]                               # backends are columns
    assert [h.strip() for h in header.split("|")] == ["claim", "numba-cpu", "quiet",
                                                      "torch-cpu"]
    assert "how a verdict is decided:\n  - speed: r = LSTM median / GRU median" in text
    assert f"  - training: GRU faster: {verdicts.meaning(judged, verdicts.TRAINING)}" in text
    assert "[ the speed and task-accuracy verdicts, point by point ]" in text
    markdown = report.render_verdicts(judged, markdown=True)
    assert "| claim | numba-cpu | quiet | torch-cpu |" in markdown
    assert "| training: GRU faster | holds: 1.30x to 1.40x faster |" in markdown
    assert "**what this means**" in markdown


def test_results_json_keeps_the_training_rows(tmp_path, judged):
    frame = frame_of(cells("numba-cpu", SMALL, 1.0, 1.4), TRAINING)
    (tmp_path / "results.json").write_text(report.to_json(frame))
    loaded = report.load_results(tmp_path)
    assert loaded.attrs["training"] == TRAINING
    assert "time per epoch (toy): GRU faster" in report.cell_sections(loaded)


# ---------------------------------------------------------------------- committed run

def test_the_committed_compare_cells_run_renders_end_to_end(capsys):
    from grubench import cli

    assert cli.main(["show", str(COMMITTED), "--metrics", "time"]) == 0
    out = capsys.readouterr().out
    frame = report.load_results(COMMITTED)
    backends = list(dict.fromkeys(frame["backend"]))
    training = {r["dataset"] for r in frame.attrs["training"]}
    verdict_table = out[out.index("[ GRU vs LSTM: does the usual claim hold here?"):]
    header = [h.strip() for h in verdict_table.splitlines()[1].split("|")]
    assert header[0] == "claim" and set(backends) <= set(header[1:])
    assert "torch-autograd" in header                  # the training runs' comparison model
    for label in ["parameters: GRU has fewer", "inference: GRU faster",
                  "training: GRU faster", "memory: GRU less at the training peak",
                  "memory: GRU saves less for backward",
                  "numerics: both match the float64 oracle",
                  *(f"time per epoch ({d}): GRU faster" for d in training),
                  *(f"task accuracy ({d}): similar" for d in training)]:
        line = next(l for l in verdict_table.splitlines() if l.strip().startswith(label))
        assert "not judged" not in line, line       # the committed run has raw samples
    # report.md holds the same verdicts table as show renders from results.json
    judged = verdicts.judge(frame, frame.attrs["training"])
    summary, _figures = report.verdict_tables(judged)
    assert report.render_markdown(summary) in (COMMITTED / "report.md").read_text()


# ---------------------------------------------------------------------- exact words, edges
# Each expected text below is written out by hand from the rule it pins.

def test_a_span_that_starts_or_ends_at_exactly_1():
    assert verdicts.speed_span(1.0, 1.2) == "1.00x to 1.20x faster"
    assert verdicts.speed_span(0.8, 1.0) == "1.25x slower to 1.00x faster"


def test_task_accuracy_ranges_that_touch_overlap():
    # GRU 90-92%, LSTM 92-95%: they share 92%, so similar, though the means are 2.5 apart
    point = verdicts.task_accuracy_point("s", [0.90, 0.92], [0.92, 0.95])
    assert point.outcome == HOLDS
    assert point.figure == "GRU 91.0% (90.0-92.0) vs LSTM 93.5% (92.0-95.0): ranges overlap"


def test_one_seed_is_not_judged_and_says_so():
    point = verdicts.task_accuracy_point("at", [0.9], [0.95, 0.96])
    assert (point.where, point.outcome, point.detail) == ("at", UNJUDGED,
                                                          "mean (min-max) over 1 seed")
    assert point.figure == ("GRU 90.0% (90.0-90.0) vs LSTM 95.5% (95.0-96.0): one seed, no "
                            "spread to judge by")


def test_task_accuracy_verdicts_count_settings_in_their_label_and_meaning():
    claim = verdicts.task_accuracy_claim("toy")
    judged = verdicts.VerdictSet()
    judged.add(claim, "numba-cpu", verdicts.task_accuracy_point("a", [0.9, 0.92], [0.91, 0.93]))
    judged.add(claim, "numba-cpu", verdicts.task_accuracy_point("b", [0.9, 0.91], [0.95, 0.96]))
    assert judged.get(claim, "numba-cpu").label == (
        "mixed (holds at 1 of 2 settings; does not hold at 1)")
    assert verdicts.meaning(judged, claim) == (
        "On this machine, with numba-cpu, GRU and LSTM reach similar test accuracy on toy at "
        "1 of 2 settings, and GRU and LSTM test accuracies on toy differ beyond the seeds' "
        "spread at 1 of 2 settings.")


@pytest.mark.parametrize("change, message", [
    ({"cell": "rnn"}, "f.json: result 1: unknown cell 'rnn'"),
    ({"epoch_seconds": ""}, "f.json: result 1: epoch_seconds must be a list of numbers"),
    ({"epoch_seconds": [0.5, "0.4"]}, "f.json: result 1: epoch_seconds must be a list of "
                                      "numbers"),
    ({"test_accuracy": "0.9"}, "f.json: result 1: test_accuracy must be a number"),
])
def test_a_bad_training_row_is_named_with_what_is_wrong(change, message):
    with pytest.raises(ValueError) as error:
        verdicts.check_training_rows([{**TRAINING[0], **change}], "f.json")
    assert str(error.value) == message


def test_accuracy_points_apart_are_whole_points_with_their_where_and_detail():
    # means 80.5% and 90.5%: 10.0 points apart, LSTM better
    apart = verdicts.task_accuracy_point("at", [0.80, 0.81], [0.90, 0.91])
    assert apart == verdicts.Point("at", FAILS, "GRU 80.5% (80.0-81.0) vs LSTM 90.5% "
                                   "(90.0-91.0): LSTM better by 10.0 points",
                                   detail="mean (min-max) over 2 seeds")
    # means 97.75% and 97.0%, no overlap: 0.75 points apart, GRU better, under 1
    close = verdicts.task_accuracy_point("at", [0.975, 0.98], [0.97, 0.97])
    assert close == verdicts.Point("at", HOLDS, "GRU 97.8% (97.5-98.0) vs LSTM 97.0% "
                                   "(97.0-97.0): GRU better by 0.8 points, under 1",
                                   detail="mean (min-max) over 2 seeds")


def test_time_per_epoch_verdicts_say_settings_and_span_their_ratios():
    claim = verdicts.epoch_time_claim("toy")
    judged = verdicts.VerdictSet()
    for where, outcome, ratio in (("a", HOLDS, 1.2), ("b", FAILS, 0.8), ("c", NOISE, 1.01)):
        judged.add(claim, "numba-cpu", verdicts.Point(where, outcome, "-", ratio))
    verdict = judged.get(claim, "numba-cpu")
    # the span of the ratios 0.8 (1/0.8 = 1.25x slower) to 1.2
    assert report.verdict_cell(verdict) == (
        "mixed (holds at 1 of 3 settings; does not hold at 1, within noise at 1): 1.25x "
        "slower to 1.20x faster")
    assert verdicts.meaning(judged, claim) == (
        "On this machine, with numba-cpu, GRU trains an epoch of toy faster than LSTM at 1 "
        "of 3 settings, and GRU trains an epoch of toy slower than LSTM at 1 of 3 settings, "
        "and GRU and LSTM train an epoch of toy equally fast within noise at 1 of 3 "
        "settings.")


def test_the_meaning_of_a_claim_not_judged_says_why():
    judged = verdicts.VerdictSet()
    judged.add(verdicts.INFERENCE, "numba-cpu", verdicts.speed_point("a", None, times(2.0)))
    judged.add(verdicts.INFERENCE, "numba-cpu", verdicts.speed_point("b", None, times(2.0)))
    judged.add(verdicts.INFERENCE, "numba-cpu", verdicts.speed_point("c", [1.0, 1.0], times(2.0)))
    # each reason once, in the order first seen
    assert verdicts.meaning(judged, verdicts.INFERENCE) == (
        "On this machine, with numba-cpu, it could not be judged at every size measured (no "
        "raw times in these results; 2 raw times on one side (at least 3 needed)).")


def test_the_meaning_skips_a_backend_without_the_claim_and_is_empty_without_any():
    judged = verdicts.VerdictSet()
    judged.add(verdicts.PARAMETERS, "first", verdicts.parameters_point("s", 3, 4))
    judged.add(verdicts.INFERENCE, "second", verdicts.Point("s", HOLDS, "-", 1.2))
    assert verdicts.meaning(judged, verdicts.INFERENCE) == (
        "On this machine, with second, GRU runs inference faster than LSTM at every size "
        "measured.")
    assert verdicts.meaning(judged, verdicts.TRAINING) == ""


def test_a_bad_training_file_is_named_in_the_message(tmp_path):
    path = tmp_path / "training.json"
    path.write_text(json.dumps({"results": [{"cell": "gru"}]}))
    with pytest.raises(ValueError) as error:
        verdicts.load_training([tmp_path])
    assert str(error.value) == (f"{path}: result 1 lacks dataset, backend, threads, seed, "
                                f"test_accuracy, epoch_seconds")


def test_backends_with_the_same_verdict_share_one_clause():
    judged = verdicts.VerdictSet()
    for backend, outcome in (("a", HOLDS), ("b", HOLDS), ("c", HOLDS), ("d", FAILS)):
        judged.add(verdicts.INFERENCE, backend, verdicts.Point("s", outcome, "-", 1.0))
    assert verdicts.meaning(judged, verdicts.INFERENCE) == (
        "On this machine, with a, b and c, GRU runs inference faster than LSTM at every size "
        "measured; with d, GRU runs inference slower than LSTM at every size measured.")


def test_points_are_ordered_by_threads_dtype_h_b_t_i_and_name_what_varies():
    where = [("2,1,2,4", "float32", 2), ("2,1,2,4", "float64", 1), ("2,1,2,8", "float32", 1),
             ("2,2,2,4", "float32", 1), ("4,1,2,4", "float32", 1), ("2,1,8,4", "float32", 1),
             ("2,1,2,4", "float32", 1)]
    rows = [row("b", cell, "inference", tuple(map(int, size.split(","))), ms, dtype=dtype,
                threads=threads)
            for size, dtype, threads in where for cell, ms in (("gru", 1.0), ("lstm", 1.4))]
    rows.append(row("b", "gru", "inference", (1, 1, 1, 1), 1.0))   # no LSTM: no point
    judged = verdicts.judge(frame_of(rows))
    expected = ["2,1,2,4 float32 t1", "2,1,8,4 float32 t1", "4,1,2,4 float32 t1",
                "2,2,2,4 float32 t1", "2,1,2,8 float32 t1", "2,1,2,4 float64 t1",
                "2,1,2,4 float32 t2"]
    for claim in (verdicts.PARAMETERS, verdicts.INFERENCE, verdicts.NUMERICS):
        assert [p.where for p in judged.get(claim, "b").points] == expected
    # one dtype and one thread count: the size alone
    judged = verdicts.judge(frame_of(rows[-3:]))
    assert [p.where for p in judged.get(verdicts.INFERENCE, "b").points] == ["2,1,2,4"]


def test_memory_points_name_their_size(judged):
    for claim in (verdicts.PEAK, verdicts.SAVED):
        assert [p.where for p in judged.get(claim, "numba-cpu").points] == [
            "100,1,64,64", "20,64,512,512"]


def test_claims_keep_their_order_when_training_is_measured_at_a_later_size_only():
    rows = [r for r in cells("b", SMALL, 1.0, 1.4) if r["mode"] == "inference"]
    judged = verdicts.judge(frame_of(rows + cells("b", LARGE, 1.0, 1.4)), TRAINING)
    assert [c.key for c in judged.claims] == ["parameters", "inference", "training", "peak",
                                              "saved", "numerics", "epoch:toy",
                                              "accuracy:toy"]


def test_a_training_run_of_one_seed_and_a_dataset_with_one_cell():
    only_gru = [{**r, "dataset": "other"} for r in TRAINING if r["cell"] == "gru"]
    one_seed = [r for r in TRAINING if r["seed"] == 0]
    judged = verdicts.judge(frame_of([]), only_gru + one_seed)
    assert judged.backends == ["numba-cpu"]
    assert [c.key for c in judged.claims] == ["parameters", "epoch:toy", "accuracy:toy"]
    (parameters,) = judged.get(verdicts.PARAMETERS, "numba-cpu").points
    assert parameters.figure == "GRU 15,561 vs LSTM 20,553: GRU 0.76x as many"
    # 3 epochs after the first a side: judged; one seed: accuracy not judged
    assert judged.get(verdicts.epoch_time_claim("toy"), "numba-cpu").outcome == HOLDS
    assert judged.get(verdicts.task_accuracy_claim("toy"), "numba-cpu").outcome == UNJUDGED


def test_numerics_judges_the_modes_measured_for_both_cells():
    # training's LSTM error missing: inference alone, 2e-7 of its 1e-6 target
    point = verdicts.numerics_point("s", "float32", {"training": (1e-7, None),
                                                     "inference": (1e-7, 2e-7)})
    assert point == verdicts.Point("s", HOLDS, "inference GRU 1.0e-07, LSTM 2.0e-07 "
                                               "(target 1e-06)", pytest.approx(0.2))
    none = verdicts.numerics_point("s", "float32", {"inference": (float("nan"), 2e-7)})
    assert none == verdicts.Point("s", UNJUDGED, "no accuracy measured for both cells")


def test_time_per_epoch_points_name_the_training_settings():
    judged = verdicts.judge(frame_of([]), TRAINING)
    (point,) = judged.get(verdicts.epoch_time_claim("toy"), "numba-cpu").points
    assert point.where == "hidden 64, 4 epochs, batch 16, t1"


def test_an_error_at_its_target_is_within_it_and_every_mode_is_listed():
    both = verdicts.numerics_point("s", "float32", {"inference": (1e-6, 5e-7),
                                                    "training": (3e-7, 5e-5)})
    assert both == verdicts.Point("s", HOLDS, "inference GRU 1.0e-06, LSTM 5.0e-07 (target "
                                              "1e-06); training GRU 3.0e-07, LSTM 5.0e-05 "
                                              "(target 1e-04)", 1.0)


def test_memory_not_measured_for_both_cells_is_not_judged():
    assert verdicts.memory_point("s", 100, float("nan")) == verdicts.Point(
        "s", UNJUDGED, "not measured for both cells")


def test_memory_exactly_2_percent_apart_is_within_noise_and_one_byte_counts():
    # 102 / 100 = 1.02 and 100 / 102 = 1 / 1.02: "within 2%" includes 2%
    assert verdicts.memory_point("s", 100, 102).outcome == NOISE
    assert verdicts.memory_point("s", 102, 100).outcome == NOISE
    assert verdicts.memory_point("s", 1, 2) == verdicts.Point(
        "s", HOLDS, "GRU 1 B vs LSTM 2 B: LSTM needs 2.00x as much", 2.0)
    assert verdicts.memory_point("s", 2, 1).outcome == FAILS
    assert verdicts.memory_point("s", 0, 1) == verdicts.Point(
        "s", UNJUDGED, "a cell's counter saw no allocation")


def test_memory_and_parameter_figures_in_either_direction():
    assert verdicts.memory_point("s", 2 ** 21, 2 ** 20) == verdicts.Point(
        "s", FAILS, "GRU 2 MiB vs LSTM 1 MiB: GRU needs 2.00x as much", 0.5)
    assert verdicts.memory_point("s", 5, 5).figure == "GRU 5 B vs LSTM 5 B: LSTM needs 1.00x as much"
    assert verdicts.parameters_point("s", 5_000, 4_000) == verdicts.Point(
        "s", FAILS, "GRU 5,000 vs LSTM 4,000: GRU 1.25x as many", 0.8)
    assert verdicts.parameters_point("s", 4, 4) == verdicts.Point(
        "s", NOISE, "GRU 4 vs LSTM 4: GRU 1.00x as many", 1.0)


@pytest.mark.parametrize("gru, lstm, outcome, figure", [
    # constant samples: the interval is the ratio itself, exactly at the 5% floor
    ([1.0] * 5, [1.05] * 5, HOLDS, "GRU 1 s vs LSTM 1.05 s: 1.05x faster"),
    ([1.05] * 5, [1.0] * 5, FAILS, "GRU 1.05 s vs LSTM 1 s: 1.05x slower"),
    # three of LSTM's 7 samples at GRU's time: a resampled median equals it far more often
    # than 2.5% of the time, so the interval reaches 1 exactly: within noise
    ([1e-3] * 7, [1e-3] * 3 + [2e-3] * 4, NOISE, "GRU 1 ms vs LSTM 2 ms: 2.00x faster"),
    ([1e-3] * 3 + [2e-3] * 4, [1e-3] * 7, NOISE, "GRU 2 ms vs LSTM 1 ms: 2.00x slower"),
    # three samples a side are enough
    ([1e-3, 1.01e-3, 0.99e-3], [2e-3, 2.02e-3, 1.98e-3], HOLDS,
     "GRU 1 ms vs LSTM 2 ms: 2.00x faster"),
])
def test_the_speed_rule_at_its_edges(gru, lstm, outcome, figure):
    point = verdicts.speed_point("s", gru, lstm)
    assert (point.where, point.outcome, point.figure) == ("s", outcome, figure)


def test_too_few_samples_say_how_many():
    assert verdicts.speed_point("s", [1.0, 1.0], times(2.0)) == verdicts.Point(
        "s", UNJUDGED, "2 raw times on one side (at least 3 needed)")


def test_intervals_read_in_the_direction_of_the_ratio():
    assert verdicts._interval(1.2, 1.1, 1.3) == "1.10-1.30x"
    assert verdicts._interval(1.0, 0.9, 1.2) == "0.90-1.20x"        # 1.00x faster
    assert verdicts._interval(0.5, 0.4, 0.8) == "1.25-2.50x"        # 1/0.8 to 1/0.4 slower
    assert verdicts._interval(15.0, 12.0, 20.0) == "12.0-20.0x"


def test_factors_from_10_on_keep_one_decimal():
    assert [verdicts.factor(v) for v in (9.994, 10.0, 10.56)] == ["9.99x", "10.0x", "10.6x"]


def test_the_interval_is_scipys_percentile_bootstrap_with_2000_resamples_and_seed_0():
    from scipy import stats

    # even sizes: medians of resamples take many values, so the settings move the interval
    gru, lstm = np.array(times(10.0, n=8, spread=0.2)), np.array(times(12.0, n=8, spread=0.2,
                                                                       seed=1))

    def interval(n_resamples):
        result = stats.bootstrap(
            (gru, lstm), lambda g, l_, axis: np.median(l_, axis) / np.median(g, axis),
            vectorized=True, n_resamples=n_resamples, confidence_level=0.95,
            method="percentile", rng=np.random.default_rng(0))
        return result.confidence_interval.low, result.confidence_interval.high

    assert verdicts._bootstrap_ratio(gru, lstm) == interval(2000)
    assert interval(2000) != interval(9999)         # the resample count shows
