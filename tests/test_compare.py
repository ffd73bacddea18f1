"""grubench compare: statistics on hand-computed samples, the machine header, and the
command end to end on two results files written here."""
import json

import pytest

from grubench import cli, compare
from grubench.schema import SCHEMA


def test_all_b_above_all_a_is_significant_with_four_samples_each():
    # U = 0: exact two-sided p = 2 / C(8, 4) = 2 / 70; medians 2.5 and 6.5.
    row = compare.compare_samples([1, 2, 3, 4], [5, 6, 7, 8], 2.5, 6.5)
    assert row.p_value == pytest.approx(2 / 70)
    assert row.ratio == pytest.approx(2.6)
    assert row.verdict == "B slower"
    # every resampled ratio of medians lies within min(b)/max(a) .. max(b)/min(a)
    assert 5 / 4 <= row.low <= row.ratio <= row.high <= 8 / 1


def test_three_samples_each_cannot_reach_5_percent():
    # U = 0 with 3 and 3: exact two-sided p = 2 / C(6, 3) = 0.1
    row = compare.compare_samples([4, 5, 6], [1, 2, 3], 5.0, 2.0)
    assert row.p_value == pytest.approx(0.1)
    assert row.ratio == pytest.approx(0.4)
    assert row.verdict == "no significant change"


def test_faster_and_interleaved_samples():
    faster = compare.compare_samples([5, 6, 7, 8], [1, 2, 3, 4], 6.5, 2.5)
    assert faster.verdict == "B faster" and faster.p_value == pytest.approx(2 / 70)
    # a = 1,3,5,7; b = 2,4,6,8: U(a) = 0+1+2+3 = 6 of 16, two-sided exact p = 0.6857...
    mixed = compare.compare_samples([1, 3, 5, 7], [2, 4, 6, 8], 4.0, 5.0)
    assert mixed.p_value == pytest.approx(48 / 70)
    assert mixed.verdict == "no significant change"


def test_rows_without_samples_keep_the_median_ratio():
    row = compare.compare_samples([], [], 2.0, 3.0)
    assert row.ratio == 1.5
    assert row.verdict == compare.NO_SAMPLES
    assert row.p_value is None and row.low is None


def test_geometric_mean():
    assert compare.geometric_mean([2.0, 0.5, 1.0]) == pytest.approx(1.0)
    assert compare.geometric_mean([2.0, 8.0]) == pytest.approx(4.0)


def machine(**overrides):
    base = {"hostname": "vm", "cpu_model": "CPU X", "cores": 2, "logical_cpus": 2,
            "blas": [{"internal_api": "openblas", "architecture": "SkylakeX"}],
            "versions": {"numpy": "2.4", "numba": "0.68"}, "commit": "abc"}
    return {**base, **overrides}


def test_differences_list_machine_versions_and_commit():
    same, diff = compare.differences(machine(), machine(commit="def"))
    assert same and diff == [("commit", "abc", "def")]
    same, diff = compare.differences(
        machine(), machine(cpu_model="CPU Y", blas=[{"architecture": "Haswell"}],
                           versions={"numpy": "2.5", "numba": "0.68"}))
    assert not same
    assert diff == [("cpu_model", "CPU X", "CPU Y"), ("blas_coretype", "SkylakeX", "Haswell"),
                    ("numpy", "2.4", "2.5")]


def result_row(backend, T, median, samples):
    return {"backend": backend, "cell": "gru", "variant": "reset_after", "mode": "inference",
            "T": T, "B": 1, "I": 8, "H": 8, "dtype": "float32", "threads": 1,
            "status": "ok", "median_s": median, "samples_s": samples}


def write_results(path, rows, **machine_overrides):
    path.mkdir()
    (path / "results.json").write_text(json.dumps(
        {"schema": SCHEMA, "machine": machine(**machine_overrides), "results": rows}))
    return path


@pytest.fixture
def two_runs(tmp_path):
    a = write_results(tmp_path / "a", [
        result_row("numpy", 10, 0.0025, [0.001, 0.002, 0.003, 0.004]),
        result_row("numpy", 20, 0.004, []),
        result_row("numba-cpu", 10, 0.001, [0.001, 0.001, 0.001]),   # only in A
    ])
    b = write_results(tmp_path / "b", [
        result_row("numpy", 10, 0.0065, [0.005, 0.006, 0.007, 0.008]),
        result_row("numpy", 20, 0.002, [0.002, 0.002]),
    ], cpu_model="CPU Y")
    return a, b


def test_compare_end_to_end_markdown(two_runs, capsys):
    a, b = two_runs
    assert cli.main(["compare", str(a), str(b / "results.json"), "--format", "md"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "- DIFFERENT MACHINES: the ratios mix code and machine" in lines
    assert "- cpu_model: A CPU X | B CPU Y" in lines
    rows = [line for line in lines if line.startswith("| numpy")]
    assert len(rows) == 2                                   # numba-cpu is in A only
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[:3] == ["numpy gru reset_after inference 10,1,8,8 float32 t1", "2.5 ms",
                         "6.5 ms"]
    assert cells[3].startswith("2.600 [") and cells[4] == "0.0286" and cells[5] == "B slower"
    assert rows[1].endswith("| 0.500 | - | no samples: significance unknown |")
    # geometric mean of 2.6 and 0.5
    assert f"geometric mean of B/A over 2 common cases: {(2.6 * 0.5) ** 0.5:.3f}" in out


def test_compare_text_on_the_same_machine(two_runs, capsys):
    a, _ = two_runs
    assert cli.main(["compare", str(a), str(a)]) == 0
    out = capsys.readouterr().out
    assert "machine, versions and commit: the same" in out and "DIFFERENT" not in out
    assert "B/A [95% CI]" in out                            # the default level
    assert "geometric mean of B/A over 3 common cases: 1.000" in out


def test_bad_input_exits_2_with_one_line(two_runs, tmp_path, capsys):
    a, b = two_runs
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{")
    other_schema = tmp_path / "other.json"
    other_schema.write_text(json.dumps({"schema": "grubench.results/0", "results": []}))
    disjoint = write_results(tmp_path / "c", [result_row("torch-cpu", 10, 0.001, [])])
    for argv, message in [
        ([str(a), str(tmp_path / "missing")], "cannot read"),
        ([str(a), str(corrupt)], "is not valid JSON"),
        ([str(a), str(other_schema)], "is not a grubench results file"),
        ([str(a), str(disjoint)], "no measured case in common"),
        ([str(a), str(b), "--confidence", "1.5"], "--confidence"),
    ]:
        assert cli.main(["compare", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_compare_text_is_a_table_with_a_column_per_figure(two_runs, capsys):
    a, b = two_runs
    assert cli.main(["compare", str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    title = lines.index("[ B against A, case by case ]")
    assert [c.strip() for c in lines[title + 1].split("|")] == [
        "case", "A median", "B median", "B/A [95% CI]", "p (U test)", "verdict"]
    row = [c.strip() for c in lines[title + 3].split("|")]
    assert row[:3] == ["numpy gru reset_after inference 10,1,8,8 float32 t1", "2.5 ms",
                       "6.5 ms"] and row[5] == "B slower"


def test_two_samples_each_are_enough_for_an_interval_and_a_p_value():
    # U = 0 with 2 and 2: exact two-sided p = 2 / C(4, 2) = 1/3
    row = compare.compare_samples([1, 2], [3, 4], 1.5, 3.5)
    assert row.p_value == pytest.approx(1 / 3)
    assert row.low is not None and row.verdict == "no significant change"
    assert compare.compare_samples([1], [3, 4], 1.0, 3.5).verdict == compare.NO_SAMPLES


def test_the_confidence_level_sets_the_interval_and_the_significance_level():
    a, b = [1, 2, 3, 4], [5, 6, 7, 8]          # p = 2/70 = 0.0286
    assert compare.compare_samples(a, b, 2.5, 6.5, confidence=0.97).verdict == "B slower"
    assert compare.compare_samples(a, b, 2.5, 6.5,
                                   confidence=0.98).verdict == "no significant change"
    wide = compare.compare_samples(a, b, 2.5, 6.5, confidence=0.99)
    narrow = compare.compare_samples(a, b, 2.5, 6.5, confidence=0.5)
    assert wide.low < narrow.low <= narrow.high < wide.high


def test_medians_print_in_the_unit_that_fits_them():
    rows = [compare.Row("c", 2.5, 2.5e-3, 1e-3, None, None, None, compare.NO_SAMPLES),
            compare.Row("d", 2.5e-6, 2.5e-9, 1e-3, 0.5, 2.0, 0.01234, "B faster")]
    same = machine()
    text = compare.render(rows, ("a", "b"), (same, same), 0.95, markdown=False)
    assert text.endswith("slower)\n")
    assert text.splitlines() == [
        "A = a", "B = b", "machine, versions and commit: the same", "",
        "[ B against A, case by case ]",
        "  case | A median | B median |         B/A [95% CI] | p (U test) |"
        "                          verdict",
        "  -----+----------+----------+----------------------+------------+"
        "---------------------------------",
        "  c    |    2.5 s |   2.5 ms |                0.001 |          - |"
        " no samples: significance unknown",
        "  d    |   2.5 us |   2.5 ns | 0.001 [0.500, 2.000] |     0.0123 |"
        "                         B faster",
        "",
        "geometric mean of B/A over 2 common cases: 0.001 (above 1: B slower)"]
    # exactly one unit is that unit
    one_ms = compare.Row("e", 1e-3, 1e-6, 1e-3, None, None, None, compare.NO_SAMPLES)
    assert "  e    |     1 ms |     1 us |" in compare.render(
        [one_ms], ("a", "b"), (same, same), 0.95, markdown=False)
    markdown = compare.render(rows, ("a", "b"), (same, machine(cpu_model="CPU Y")), 0.9,
                              markdown=True)
    assert markdown == "\n".join([
        "**grubench compare**", "",
        "- A = a", "- B = b", "- DIFFERENT MACHINES: the ratios mix code and machine",
        "- cpu_model: A CPU X | B CPU Y", "",
        "| case | A median | B median | B/A [90% CI] | p (U test) | verdict |",
        "|---|---|---|---|---|---|",
        "| c | 2.5 s | 2.5 ms | 0.001 | - | no samples: significance unknown |",
        "| d | 2.5 us | 2.5 ns | 0.001 [0.500, 2.000] | 0.0123 | B faster |", "",
        "geometric mean of B/A over 2 common cases: 0.001 (above 1: B slower)"]) + "\n"


def test_case_labels_name_the_variant_only_where_a_cell_has_one():
    row = {"backend": "numpy", "cell": "lstm", "mode": "training", "T": 1, "B": 2, "I": 3,
           "H": 4, "dtype": "float64", "threads": 2}
    assert compare.case_label({**row, "variant": "-"}) == "numpy lstm training 1,2,3,4 float64 t2"
    assert compare.case_label({**row, "variant": None}) == "numpy lstm training 1,2,3,4 float64 t2"
    assert (compare.case_label({**row, "cell": "gru", "variant": "reset_before"})
            == "numpy gru reset_before training 1,2,3,4 float64 t2")



def test_the_interval_is_scipys_percentile_bootstrap_of_the_ratio_of_medians():
    """2000 resamples of each side from seed 0, percentile method, at the level asked."""
    import numpy as np
    from scipy import stats

    # even counts of distinct values: medians of resamples (midpoints of pairs) take
    # thousands of values, so the interval moves with the resamples' count and seed
    a = [1.00, 1.31, 1.72, 2.23, 2.94, 3.15, 3.66, 4.47, 5.88, 6.09, 7.11, 8.52]
    b = [1.13, 1.97, 2.41, 3.35, 3.83, 4.79, 5.17, 6.23, 7.56, 8.01, 9.42, 9.93]
    for confidence in (0.9, 0.95):
        want = stats.bootstrap(
            (np.asarray(a), np.asarray(b)),
            lambda x, y, axis: np.median(y, axis=axis) / np.median(x, axis=axis),
            n_resamples=2000, confidence_level=confidence, method="percentile",
            rng=np.random.default_rng(0)).confidence_interval
        row = compare.compare_samples(a, b, 3.4, 4.9, confidence=confidence)
        assert (row.low, row.high) == (want.low, want.high)


def test_a_significant_change_under_2x_says_which_way():
    # all of B above all of A (p = 2/70), B/A = 15.5 / 11.5 = 1.35
    assert compare.compare_samples([10, 11, 12, 13], [14, 15, 16, 17], 11.5,
                                   15.5).verdict == "B slower"


def test_only_measured_rows_are_compared():
    import pandas as pd

    def frame(rows):
        return pd.DataFrame(rows)

    ok = result_row("numpy", 10, 0.002, [])
    failed = {**result_row("numpy", 20, 0.001, []), "status": "error"}
    unmeasured = {**result_row("numpy", 30, None, []), "median_s": float("nan")}
    rows = compare.compare_frames(frame([ok, failed, unmeasured]),
                                  frame([ok, failed, unmeasured]))
    assert [r.case for r in rows] == ["numpy gru reset_after inference 10,1,8,8 float32 t1"]


def test_machine_header_lists_blas_coretypes_and_versions_on_one_side_only():
    same, diff = compare.differences(
        machine(blas=[{"architecture": "SkylakeX"}, {"architecture": "Haswell"},
                      {"internal_api": "openmp"}]),
        machine(versions={"numpy": "2.4", "numba": "0.68", "torch": "2.13"}))
    assert not same
    assert diff == [("blas_coretype", "Haswell,SkylakeX", "SkylakeX"),
                    ("torch", None, "2.13")]
    # a BLAS entry without an architecture adds none
    assert compare.differences(machine(blas=[]), machine(blas=[{"internal_api": "x"}]))[0]


def test_the_confidence_option_reaches_the_table(two_runs, capsys):
    a, b = two_runs
    for confidence, status in (("0.5", 0), ("0.9", 0), ("1", 2), ("0.49", 2)):
        assert cli.main(["compare", str(a), str(b), "--confidence", confidence]) == status
        out = capsys.readouterr().out
        if status == 0:
            assert f"B/A [{float(confidence):.0%} CI]" in out
    assert cli.main(["compare", str(a), str(b), "--confidence", "0.97"]) == 0
    verdicts = [line.split("|")[-1].strip() for line in capsys.readouterr().out.splitlines()]
    assert "B slower" in verdicts                        # p = 2/70 < 0.03
    assert cli.main(["compare", str(a), str(b), "--confidence", "0.98"]) == 0
    verdicts = [line.split("|")[-1].strip() for line in capsys.readouterr().out.splitlines()]
    assert "B slower" not in verdicts and "no significant change" in verdicts  # p > 0.02


def test_a_p_value_at_the_significance_level_is_not_significant():
    """'Significant' is p strictly below 1 - confidence: exact p = 14/56 = 0.25 at 0.75."""
    row = compare.compare_samples([1, 2, 6], [3, 4, 5, 7, 8], 2.0, 5.0, confidence=0.75)
    assert row.p_value == 0.25
    assert row.verdict == "no significant change"


def test_network_cases_are_matched_and_named_apart():
    import pandas as pd

    plain = result_row("numpy", 10, 0.002, [])
    network = {**plain, "layers": 2, "directions": 2, "lengths": "uniform", "median_s": 0.004}
    old = {k: v for k, v in plain.items() if k not in ("layers", "directions", "lengths")}
    rows = compare.compare_frames(pd.DataFrame([old, network]),
                                  pd.DataFrame([{**plain, "layers": 1, "directions": 1,
                                                 "lengths": "full"}, network]))
    assert [(r.case, r.median_a) for r in rows] == [
        ("numpy gru reset_after inference 10,1,8,8 float32 t1", 0.002),
        ("numpy gru reset_after inference 10,1,8,8 2 layers bidirectional lengths uniform "
         "float32 t1", 0.004)]
