"""Tables, report files and results.json from a fixed results object (no measuring)."""
import json
import os

import pandas as pd
import pytest

from grubench import report, runner, schema

MACHINE = {"hostname": "h", "cpu_model": "CPU X", "cores": 2, "blas": [], "gpus": [],
           "versions": {"numpy": "2.0"}, "commit": "abc", "timestamp": "t"}


def row(backend, cell, mode, size, median, **fields):
    T, B, I, H = size
    base = dict(backend=backend, cell=cell, variant="reset_after" if cell == "gru" else "-",
                mode=mode, T=T, B=B, I=I, H=H, dtype="float32", threads=1, status="ok",
                median_s=median, iqr_s=median and median / 100,
                min_s=median, runs=5, unstable=False,
                compile_s=0.5, peak_bytes=2 ** 20, rel_err=1e-7, gemm_gflops=100.0,
                baseline="torch-cpu")
    base.update(fields)
    return base


@pytest.fixture
def results():
    rows = [
        row("torch-cpu", "gru", "inference", (10, 1, 4, 8), 2e-3),
        row("torch-cpu", "gru", "inference", (10, 2, 4, 8), 4e-3),
        row("numba-cpu", "gru", "inference", (10, 1, 4, 8), 0.5e-3, rel_err=3e-6),
        row("numba-cpu", "gru", "inference", (10, 2, 4, 8), None, status="crashed",
            reason="worker died (signal SIGSEGV)", peak_bytes=None, rel_err=None),
        row("torch-cpu", "lstm", "inference", (10, 1, 4, 8), 1e-3, unstable=True),
        row("numba-cpu", "lstm", "inference", (10, 1, 4, 8), 1e-3),
    ]
    frame = runner.add_derived(pd.DataFrame(rows))
    frame.attrs.update(machine=MACHINE, notes=["torch-cuda left out: no GPU"],
                       suite={"name": "fixed", "description": "a fixed object"})
    return frame


def test_derived_columns(results):
    first = results.iloc[0]
    # GRU forward FLOPs 2*3*H*(I+H)*B*T = 2*3*8*12*1*10 = 5760, in 2 ms
    assert first["flops"] == 5760
    assert first["gflops"] == pytest.approx(5760 / 2e-3 / 1e9)
    assert first["gflops_recurrent"] == pytest.approx(2 * 3 * 64 * 10 / 2e-3 / 1e9)
    assert first["gemm_fraction"] == pytest.approx(first["gflops"] / 100.0)
    assert first["timesteps_per_s"] == pytest.approx(10 / 2e-3)
    assert first["parameters"] == 3 * 8 * (4 + 8 + 2)
    assert results.iloc[2]["speedup"] == pytest.approx(4.0)     # 2 ms / 0.5 ms
    assert results.iloc[0]["speedup"] == pytest.approx(1.0)
    assert pd.isna(results.iloc[3]["speedup"])                  # crashed: no time
    assert list(results.columns) == list(schema.COLUMNS)


def test_time_table_compare_style(results):
    gru, lstm = report.metric_tables(results, "time")
    assert gru.title == "gru reset_after · inference · float32 · 1 thread · median time (ms)"
    assert gru.header == ["backend", "10,1,4,8", "10,2,4,8"]
    assert gru.rows == [["torch-cpu", "2 (1.00x)", "4 (1.00x)"],
                        ["numba-cpu", "*0.5 (4.00x)", "crashed"]]
    # a tie marks both; "!" flags the unstable measurement
    assert lstm.rows == [["torch-cpu", "*1 (1.00x) !"], ["numba-cpu", "*1 (1.00x)"]]
    text = report.render_text(gru)
    assert text.splitlines()[0] == f"[ {gru.title} ]"
    assert "  numba-cpu | *0.5 (4.00x) |   crashed" in text


def test_memory_and_accuracy_tables(results):
    memory = report.metric_tables(results, "memory")[0]
    assert memory.title.endswith("peak memory allocated by one call (MiB)")
    expected = results.iloc[0]["expected_alloc_bytes"] / 2 ** 20
    assert memory.rows[0][1] == f"*1 / {expected:.3g}"     # tied with numba-cpu
    accuracy = report.metric_tables(results, "accuracy")[0]
    assert accuracy.rows == [["torch-cpu", "*1.0e-07", "1.0e-07"],
                             ["numba-cpu", "3.0e-06 !", "crashed"]]


def test_gflops_table_shows_the_fraction_of_the_gemm_ceiling(results):
    gflops = report.metric_tables(results, "gflops")[0]
    # torch-cpu 5760 FLOPs in 2 ms = 0.00288 GFLOP/s, ceiling 100 -> 0%; numba-cpu 4x
    assert gflops.rows[0][1] == "0.00288 (0%)"
    assert gflops.rows[1][1] == "*0.0115 (0%)"


def test_problems_table_lists_reasons(results):
    table = report.problems_table(results)
    assert table.rows == [["numba-cpu", "crashed", "1", "worker died (signal SIGSEGV)"]]


def test_markdown_rendering(results):
    text = report.render_markdown(report.metric_tables(results, "time")[0])
    lines = text.splitlines()
    assert lines[0].startswith("**gru reset_after")
    assert lines[2] == "| backend | 10,1,4,8 | 10,2,4,8 |"
    assert lines[3] == "|---|---:|---:|"
    assert lines[5] == "| numba-cpu | *0.5 (4.00x) | crashed |"


def test_report_head_has_machine_and_notes(results):
    text = report.render_report(results)
    assert "suite fixed: a fixed object" in text
    assert "machine: CPU X, 2 cores; GPU: none" in text
    assert "note: torch-cuda left out: no GPU" in text
    assert "float32, 1 thread: 100 GFLOP/s (workers: 100 to 100)" in text


def test_cell_comparison(results):
    table = report.cell_comparison(results)
    assert table.rows == [["numba-cpu", "10,1,4,8", "336 / 448", "0.5 / 1 (2.00x)", "-",
                           "-", "-"],
                          ["torch-cpu", "10,1,4,8", "336 / 448", "2 / 1 (0.50x)", "-",
                           "-", "-"]]


def test_json_schema_round_trip(results, tmp_path):
    paths = report.write_report(results, tmp_path)
    names = {p.name for p in paths}
    assert {"results.json", "results.csv", "report.md", "time_by_size.png",
            "gru_vs_lstm.png", "speedup_heatmap.png"} <= names
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["schema"] == schema.SCHEMA
    assert document["machine"] == MACHINE
    assert len(document["results"]) == 6
    for result in document["results"]:
        assert list(result) == list(schema.COLUMNS)
    assert document["results"][3]["median_s"] is None          # NaN becomes null
    loaded = report.load_results(tmp_path)
    assert loaded.attrs["machine"] == MACHINE
    assert report.render_report(loaded) == report.render_report(results)
    assert (tmp_path / "report.md").read_text().startswith("# grubench report")
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_raw_samples_kept_in_json_only(results, tmp_path):
    results.at[0, "samples_s"] = [2e-3, 1.9e-3, 2.4e-3]
    report.write_report(results, tmp_path)
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["results"][0]["samples_s"] == [2e-3, 1.9e-3, 2.4e-3]
    assert document["results"][1]["samples_s"] is None
    assert "samples_s" not in (tmp_path / "results.csv").read_text().splitlines()[0]
    assert report.load_results(tmp_path).iloc[0]["samples_s"] == [2e-3, 1.9e-3, 2.4e-3]
    document["results"][0]["samples_s"] = [1e-3, "slow"]
    (tmp_path / "results.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="result 1: samples_s must be a list of numbers"):
        report.load_results(tmp_path)


def test_interrupted_report_write_keeps_the_old_file(results, tmp_path, monkeypatch):
    report.write_report(results, tmp_path)
    before = (tmp_path / "results.json").read_text()

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(results.iloc[:2], tmp_path)
    assert (tmp_path / "results.json").read_text() == before


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"schema": "other/1", "results": []}', "not a grubench results file"),
    ('[1, 2]', "not a grubench results file"),
    ('{"schema": "grubench.results/1", "results": {}}', "must be a list of objects"),
    ('{"schema": "grubench.results/1", "results": [{"backend": "x"}]}',
     "result 1: lacks the fields cell, variant"),
])
def test_corrupt_results_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        report.load_results(path)


GOOD_ROW = dict(backend="numpy", cell="gru", variant="reset_after", mode="inference", T=2,
                B=1, I=2, H=2, dtype="float32", threads=1, status="ok", median_s=0.001)


@pytest.mark.parametrize("bad, message", [
    ({"cell": "gru"}, "result 2: lacks the fields variant"),   # one incomplete row is enough
    ({**GOOD_ROW, "median_s": "fast"}, "result 2: median_s must be a number, got 'fast'"),
    ({**GOOD_ROW, "T": 0}, "result 2: T must be a positive integer, got 0"),
    ({**GOOD_ROW, "threads": True}, "result 2: threads must be a positive integer"),
    ({**GOOD_ROW, "layers": 0}, "result 2: layers must be a positive integer, got 0"),
    ({**GOOD_ROW, "directions": 3}, "result 2: directions must be 1 or 2, got 3"),
    ({**GOOD_ROW, "lengths": "ragged"}, "result 2: lengths must be one of full, uniform"),
])
def test_each_results_row_is_checked(tmp_path, bad, message):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema": schema.SCHEMA, "results": [GOOD_ROW, bad]}))
    with pytest.raises(ValueError, match=message):
        report.load_results(path)


def test_rows_written_before_the_network_fields_load_as_single_full_layers(tmp_path):
    path = tmp_path / "results.json"
    network = {**GOOD_ROW, "layers": 2, "directions": 2, "lengths": "sorted"}
    path.write_text(json.dumps({"schema": schema.SCHEMA, "results": [GOOD_ROW, network]}))
    frame = report.load_results(path)
    assert list(zip(frame["layers"], frame["directions"], frame["lengths"])) == [
        (1, 1, "full"), (2, 2, "sorted")]


def network_rows():
    """GRU 20,8,16,16 inference: torch-cpu packed and padded, numba-cpu with and without
    lengths; one 2-layer bidirectional row."""
    size = (20, 8, 16, 16)
    return runner.add_derived(pd.DataFrame([
        row("torch-cpu", "gru", "inference", size, 4e-3),
        row("numba-cpu", "gru", "inference", size, 1e-3),
        row("torch-cpu", "gru", "inference", size, 6e-3, lengths="uniform"),
        row("torch-cpu-padded", "gru", "inference", size, 3e-3, lengths="uniform"),
        row("numba-cpu", "gru", "inference", size, 0.8e-3, lengths="uniform"),
        row("numba-cpu", "gru", "inference", size, 2e-3, layers=2, directions=2),
    ]))


def test_lengths_table_says_what_packing_costs_torch_and_lengths_cost_us():
    table = report.lengths_table(network_rows())
    assert table.header == ["case", "backend", "median (ms)", "vs full lengths",
                            "vs torch-cpu-padded"]
    case = "gru reset_after inference 20,8,16,16 (lengths uniform) float32 t1"
    assert table.rows == [
        [case, "torch-cpu", "6", "1.50x", "2.00x"],
        [case, "torch-cpu-padded", "3", "-", "-"],
        [case, "numba-cpu", "0.8", "0.80x", "0.27x"],
    ]
    assert "what packing costs torch" in table.footer
    assert report.lengths_table(network_rows().iloc[:2]) is None


def test_network_cases_are_told_apart_in_the_tables():
    frame = network_rows()
    (time,) = report.metric_tables(frame, "time")
    assert time.header == ["backend", "20,8,16,16", "20,8,16,16 (lengths uniform)",
                           "20,8,16,16 (2 layers, bidirectional)"]
    numba = next(r for r in time.rows if r[0] == "numba-cpu")
    assert numba[1:] == ["*1 (4.00x)", "*0.8 (7.50x)", "2"]   # speedups case by case
    text = report.render_report(frame)
    assert "variable lengths · median time (ms)" in text
    assert "variable lengths" not in report.render_report(frame.iloc[:2])


def test_machine_table_tells_network_cases_apart():
    frame = network_rows()
    frame = pd.concat([frame.assign(machine="a (CPU A, 2 cores)"),
                       frame.assign(machine="b (CPU B, 8 cores)")], ignore_index=True)
    cases = [tuple(r[:2]) for r in report.machine_table(frame).rows]
    assert ("numba-cpu", "gru reset_after inference 20,8,16,16 (2 layers, bidirectional) "
                         "float32 t1") in cases
    assert len(cases) == len(set(cases)) == 6


def test_missing_results_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        report.load_results(tmp_path / "nothing.json")


def test_pick_unit():
    assert report.pick_unit([2e-4, 3.0], report.TIME_UNITS) == ("ms", 1e-3)
    assert report.pick_unit([5e-5], report.TIME_UNITS) == ("us", 1e-6)
    assert report.pick_unit([0.5], report.TIME_UNITS) == ("s", 1.0)
    assert report.pick_unit([3 * 2 ** 20], report.BYTE_UNITS) == ("MiB", 2 ** 20)


# Hand-computed values for a GRU training case and its LSTM twin, T=10 B=2 I=4 H=8 float32
# (G = 3 gates for GRU, 4 for LSTM; parameters G*H*(I+H+2) = 336 and 448).
TRAIN_SIZE = (10, 2, 4, 8)


@pytest.fixture
def training_results():
    rows = [
        row("torch-cpu", "gru", "training", TRAIN_SIZE, 8e-3, gemm_gflops=0.01,
            peak_bytes=2 * 2 ** 20, rel_err=1e-7),
        row("numba-cpu", "gru", "training", TRAIN_SIZE, 2e-3, gemm_gflops=0.01,
            peak_bytes=2 ** 20, rel_err=2e-5),
        row("torch-cpu", "lstm", "training", TRAIN_SIZE, 20e-3, peak_bytes=3 * 2 ** 20,
            rel_err=4e-7),
        row("torch-cpu", "gru", "inference", TRAIN_SIZE, 4e-3),
        row("torch-cpu", "lstm", "inference", TRAIN_SIZE, 6e-3),
        # the other GRU variant: the GRU-vs-LSTM table compares reset_after only
        row("torch-cpu", "gru", "training", TRAIN_SIZE, 1e-3, variant="reset_before"),
    ]
    return runner.add_derived(pd.DataFrame(rows))


def test_derived_columns_of_a_training_case(training_results):
    torch_row, numba_row = training_results.iloc[0], training_results.iloc[1]
    # training FLOPs = 3 x forward; forward 2*G*H*(I+H)*B*T = 2*3*8*12*2*10 = 11520
    assert torch_row["flops"] == 34560
    assert torch_row["gflops"] == pytest.approx(0.00432, rel=1e-12)           # 34560 / 8 ms
    # DeepBench's recurrent-only count: 3 x 2*G*H^2*B*T = 3 * 2*3*64*2*10 = 23040
    assert torch_row["gflops_recurrent"] == pytest.approx(0.00288, rel=1e-12)
    assert torch_row["gemm_fraction"] == pytest.approx(0.432)                 # of 0.01
    assert torch_row["timesteps_per_s"] == pytest.approx(1250.0)              # 10 / 8 ms
    assert numba_row["speedup"] == pytest.approx(4.0)                         # 8 ms / 2 ms
    assert torch_row["speedup"] == pytest.approx(1.0)
    # speedups pair rows of the same case only: reset_before has no torch-cpu baseline
    # of its own besides itself
    assert training_results.iloc[5]["speedup"] == pytest.approx(1.0)


def test_expected_bytes_of_an_inference_and_a_training_case(results, training_results):
    inference = results.iloc[0]          # GRU 10,1,4,8 float32
    # parameters 336 + x 40 + y 80 + h0 8 + h_n 8 = 472 elements
    assert inference["expected_bytes"] == 472 * 4
    # what the call allocates: y and h_n only (parameters, x and h0 exist before it)
    assert inference["expected_alloc_bytes"] == (80 + 8) * 4
    training = training_results.iloc[0]  # GRU 10,2,4,8 float32
    # inputs: parameters 336, x 80, h0 16, dy 160 (= 592); outputs y 160, h_n 16;
    # saved gates T*B*3H = 480 and states T*B*H = 160; gradients of the parameters 336,
    # x 80, h0 16
    assert training["expected_bytes"] == (592 + 176 + 640 + 432) * 4
    assert training["expected_alloc_bytes"] == (176 + 640 + 432) * 4
    lstm = training_results.iloc[2]      # LSTM: two states (h and c) in every state term
    # inputs 448 + 80 + h0,c0 32 + dy 160; outputs y 160, h_n,c_n 32; saved gates
    # T*B*4H = 640 and states 2*T*B*H = 320; gradients 448 + 80 + 32
    assert lstm["expected_bytes"] == (720 + 192 + 960 + 560) * 4
    assert lstm["expected_alloc_bytes"] == (192 + 960 + 560) * 4


def test_memory_table_shows_measured_over_expected_bytes(training_results):
    table = report.metric_tables(training_results, "memory")[0]
    assert table.title.endswith("(MiB)")
    # expected 4992 B = 0.00476 MiB
    assert table.rows == [["torch-cpu", "2 / 0.00476"], ["numba-cpu", "*1 / 0.00476"]]


def test_gflops_table_of_a_training_case(training_results):
    table = report.metric_tables(training_results, "gflops")[0]
    assert table.rows == [["torch-cpu", "0.00432 (43%)"], ["numba-cpu", "*0.0173 (173%)"]]


def test_time_table_scales_seconds_to_the_unit_it_names(training_results):
    table = report.metric_tables(training_results, "time")[0]
    assert table.title.endswith("median time (ms)")
    assert table.rows == [["torch-cpu", "8 (1.00x)"], ["numba-cpu", "*2 (4.00x)"]]


def test_cell_comparison_ratios_are_lstm_over_gru(training_results):
    table = report.cell_comparison(training_results)
    assert table.rows == [["torch-cpu", "10,2,4,8", "336 / 448", "4 / 6 (1.50x)",
                           "8 / 20 (2.50x)", "2 / 3 (1.50x)", "1.0e-07 / 4.0e-07"]]


def test_plots_draw_milliseconds_where_they_say_ms(training_results, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda figure: figures.append(figure) or real_close(figure))
    paths = report.write_plots(training_results, tmp_path)
    assert [p.name for p in paths] == ["time_by_size.png", "gru_vs_lstm.png",
                                       "speedup_heatmap.png"]
    by_size = figures[0].axes
    titles = [axis.get_title() for axis in by_size[:3]]
    gru_training = by_size[titles.index("gru training")]
    assert gru_training.get_ylabel() == "median time (ms)"
    drawn = {line.get_label(): list(line.get_ydata()) for line in gru_training.lines}
    assert drawn == {"numba-cpu": [pytest.approx(2.0)], "torch-cpu": [pytest.approx(8.0)]}
    bars = figures[1].axes[0]
    assert bars.get_ylabel() == "median time (ms)"
    heights = sorted(round(p.get_height(), 9) for p in bars.patches if p.get_height() > 0)
    # torch-cpu GRU/LSTM: inference 4 / 6 ms, training 8 / 20 ms (reset_before left out)
    assert heights == [4.0, 6.0, 8.0, 20.0]


def test_time_plot_of_a_reset_before_run_draws_its_lines(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda figure: figures.append(figure) or real_close(figure))
    frame = runner.add_derived(pd.DataFrame([row("torch-cpu", "gru", "inference",
                                                 (10, 1, 4, 8), 3e-3,
                                                 variant="reset_before")]))
    report.write_plots(frame, tmp_path)
    lines = figures[0].axes[0].lines
    assert [list(line.get_ydata()) for line in lines] == [[pytest.approx(3.0)]]


def test_ceiling_lines_give_the_median_and_range_of_the_workers():
    frame = runner.add_derived(pd.DataFrame([
        row("torch-cpu", "gru", "inference", (10, 1, 4, 8), 1e-3, gemm_gflops=90.0),
        row("numba-cpu", "gru", "inference", (10, 1, 4, 8), 1e-3, gemm_gflops=110.0),
        row("numpy", "gru", "inference", (10, 1, 4, 8), 1e-3, gemm_gflops=100.0),
        row("numpy", "gru", "inference", (10, 1, 4, 8), 1e-3, threads=2, gemm_gflops=150.0),
    ]))
    assert report.ceiling_lines(frame) == [
        "GEMM ceiling (NumPy 1024^3 matmul in each worker): float32, 1 thread: 100 GFLOP/s "
        "(workers: 90 to 110)",
        "GEMM ceiling (NumPy 1024^3 matmul in each worker): float32, 2 threads: 150 GFLOP/s "
        "(workers: 150 to 150)"]


@pytest.mark.parametrize("value, metric, text", [
    (999.0, "time", "999"), (1234.5, "time", "1234"), (0.012345, "time", "0.0123"),
    (3.14159e-7, "accuracy", "3.1e-07"), (1000.0, "time", "1000"), (50.5, "time", "50.5"),
])
def test_format_value(value, metric, text):
    assert report.format_value(value, report.METRICS[metric]) == text


def test_pick_unit_keeps_a_tenth_of_the_unit_and_ignores_empty_values():
    assert report.pick_unit([1e-4, None, float("nan"), 0.0], report.TIME_UNITS) == ("ms", 1e-3)
    assert report.pick_unit([0.099], report.TIME_UNITS) == ("ms", 1e-3)
    assert report.pick_unit([], report.TIME_UNITS) == ("s", 1.0)


def test_derived_columns_of_a_filtered_frame_keep_their_rows(training_results):
    """A frame whose index is not 0..n-1 (a selection of rows) gets each row's own values."""
    part = runner.add_derived(training_results.iloc[[2, 0]])
    assert list(part["gflops_recurrent"]) == [pytest.approx(3 * 2 * 4 * 64 * 2 * 10 / 20e-3 / 1e9),
                                              pytest.approx(0.00288)]


def test_cell_comparison_orders_sizes_measured_in_two_dtypes_the_same_every_run():
    rows = [row("numba-cpu", cell, "inference", (10, 1, 4, 8), median, dtype=dtype)
            for dtype, median in (("float64", 4e-3), ("float32", 1e-3))
            for cell in ("gru", "lstm")]
    table = report.cell_comparison(runner.add_derived(pd.DataFrame(rows)))
    # a tie on backend and size falls back on dtype (a set's order once decided it)
    assert [r[3] for r in table.rows] == ["1 / 1 (1.00x)", "4 / 4 (1.00x)"]


def test_machine_table_gives_each_machines_time_over_the_first_machines():
    """A cluster run with every case on each node: times in ms per machine, ratios to the
    first machine named, a case measured on one machine only left out."""
    frame = runner.add_derived(pd.DataFrame([
        row("torch-cpu", "gru", "inference", (10, 1, 4, 8), 2e-3, machine="a (CPU A, 2 cores)"),
        row("torch-cpu", "gru", "inference", (10, 1, 4, 8), 5e-3, machine="b (CPU B, 8 cores)"),
        row("torch-cpu", "lstm", "inference", (10, 1, 4, 8), 4e-3, machine="b (CPU B, 8 cores)"),
        row("torch-cpu", "lstm", "inference", (10, 1, 4, 8), 1e-3, machine="a (CPU A, 2 cores)"),
        row("numba-cpu", "gru", "inference", (10, 1, 4, 8), 1e-3, machine="a (CPU A, 2 cores)"),
    ]))
    table = report.machine_table(frame)
    assert table.header == ["backend", "case", "a", "b"]
    assert table.rows == [["torch-cpu", "gru reset_after inference 10,1,4,8 float32 t1", "2",
                           "5 (2.50x)"],
                          ["torch-cpu", "lstm inference 10,1,4,8 float32 t1", "1", "4 (4.00x)"]]
    assert table.footer.startswith("(Nx) = time / time on a (above 1x: slower)")
    titles = [t.title for t in report.summary_tables(frame, metrics=("time",))]
    assert titles[:2] == [
        "a (CPU A, 2 cores) · gru reset_after · inference · float32 · 1 thread · median time (ms)",
        "a (CPU A, 2 cores) · lstm · inference · float32 · 1 thread · median time (ms)"]
    assert titles[-1] == "machine vs machine · median time (ms)"
    # GRU vs LSTM pairs each machine's own rows, named by machine
    assert [r[:4] for r in report.cell_comparison(frame).rows] == [
        ["torch-cpu on a", "10,1,4,8", "336 / 448", "2 / 1 (0.50x)"],
        ["torch-cpu on b", "10,1,4,8", "336 / 448", "5 / 4 (0.80x)"]]
    one_machine = frame[frame["machine"] == "a (CPU A, 2 cores)"]
    assert report.machine_table(one_machine) is None


def test_cell_comparison_orders_sizes_by_hidden_size_then_batch():
    rows = [row("torch-cpu", cell, "inference", size, 1e-3)
            for size in ((10, 1, 4, 16), (3, 2, 4, 8), (20, 1, 4, 8), (20, 1, 2, 8), (5, 1, 4, 8))
            for cell in ("gru", "lstm")]
    table = report.cell_comparison(runner.add_derived(pd.DataFrame(rows)))
    assert [r[1] for r in table.rows] == ["5,1,4,8", "20,1,2,8", "20,1,4,8", "3,2,4,8",
                                          "10,1,4,16"]


def test_cell_comparison_leaves_a_figure_measured_on_one_cell_only_out():
    rows = [row("torch-cpu", "gru", "training", TRAIN_SIZE, 8e-3, rel_err=None),
            row("torch-cpu", "lstm", "training", TRAIN_SIZE, 20e-3, peak_bytes=None)]
    table = report.cell_comparison(runner.add_derived(pd.DataFrame(rows)))
    assert table.rows == [["torch-cpu", "10,2,4,8", "336 / 448", "-", "8 / 20 (2.50x)", "-",
                           "-"]]


def test_accuracy_flags_only_errors_above_the_target_of_the_mode():
    """float32 targets (grubench.tolerances): 1e-6 forward, 1e-4 with gradients; a value
    at the target is not above it."""
    frame = runner.add_derived(pd.DataFrame([
        row("torch-cpu", "gru", "inference", (10, 1, 4, 8), 1e-3, rel_err=1e-6),
        row("numba-cpu", "gru", "inference", (10, 1, 4, 8), 1e-3, rel_err=1.1e-6),
        row("torch-cpu", "gru", "training", (10, 1, 4, 8), 1e-3, rel_err=2e-5),
        row("numba-cpu", "gru", "training", (10, 1, 4, 8), 1e-3, rel_err=1.1e-4),
    ]))
    inference, training = report.metric_tables(frame, "accuracy")
    assert inference.rows == [["torch-cpu", "*1.0e-06"], ["numba-cpu", "1.1e-06 !"]]
    assert training.rows == [["torch-cpu", "*2.0e-05"], ["numba-cpu", "1.1e-04 !"]]


def test_a_figure_without_its_reference_is_shown_without_the_annotation(results):
    """No GEMM ceiling measured: no (N%); no analytic bytes: no " / N"."""
    frame = results.copy()
    frame["gemm_fraction"] = float("nan")
    frame["expected_alloc_bytes"] = float("nan")
    assert report.metric_tables(frame, "gflops")[0].rows[0][1] == "0.00288"
    assert report.metric_tables(frame, "memory")[0].rows[0][1] == "*1"


def test_machine_table_keeps_the_run_order_and_marks_a_machine_without_the_case():
    """Rows in the order the run measured them (not sorted), a case measured on one machine
    only left out wherever it comes, "-" where a machine lacks a case others measured."""
    a, b, c = "a (CPU A, 2 cores)", "b (CPU B, 8 cores)", "c (CPU C, 4 cores)"
    frame = runner.add_derived(pd.DataFrame([
        row("torch-cpu", "lstm", "inference", (10, 1, 4, 8), 1e-3, machine=c),  # c only
        row("torch-cpu", "gru", "inference", (10, 1, 4, 8), 1.234e-3, machine=a),
        row("torch-cpu", "gru", "inference", (10, 1, 4, 8), 2.468e-3, machine=c),
        row("numba-cpu", "gru", "inference", (10, 1, 4, 8), 4e-3, machine=a),
        row("numba-cpu", "gru", "inference", (10, 1, 4, 8), 1e-3, machine=b),
    ]))
    table = report.machine_table(frame)
    assert table.header == ["backend", "case", "c", "a", "b"]
    assert table.rows == [
        ["torch-cpu", "gru reset_after inference 10,1,4,8 float32 t1", "2.47", "1.23 (0.50x)",
         "-"],
        ["numba-cpu", "gru reset_after inference 10,1,4,8 float32 t1", "-", "4", "1"]]


def test_problems_table_counts_each_backend_status_and_reason_once():
    def failed(backend, T, status, reason):
        return row(backend, "gru", "inference", (T, 1, 4, 8), None, status=status,
                   reason=reason)

    frame = runner.add_derived(pd.DataFrame([
        row("torch-cpu", "gru", "inference", (1, 1, 4, 8), 1e-3),
        failed("numba-cpu", 2, "crashed", "signal SIGSEGV"),
        failed("numba-cpu", 3, "crashed", "signal SIGBUS"),
        failed("numba-cpu", 4, "crashed", "signal SIGSEGV"),
        failed("torch-cpu", 5, "crashed", "signal SIGSEGV"),
        failed("numba-cpu", 6, "timeout", "signal SIGSEGV"),
    ]))
    table = report.problems_table(frame)
    assert table.title == "cases not measured"
    assert table.header == ["backend", "status", "cases", "reason"]
    assert table.rows == [["numba-cpu", "crashed", "2", "signal SIGSEGV"],
                          ["numba-cpu", "crashed", "1", "signal SIGBUS"],
                          ["torch-cpu", "crashed", "1", "signal SIGSEGV"],
                          ["numba-cpu", "timeout", "1", "signal SIGSEGV"]]


def test_time_cells_without_a_speedup_or_with_unstable_stored_as_1(results):
    """A row without a baseline median has no (Nx); "unstable" read back as 1 is flagged;
    a backend not measured at a size leaves that cell empty (and a size measured once has
    no best); the default metric is time."""
    frame = results.copy()
    frame["speedup"] = [float("nan")] + list(frame["speedup"][1:])
    frame["unstable"] = [1, 0, 0, 0, 0, 0]
    frame = frame.drop(index=3)                  # numba-cpu's second size
    gru = report.metric_tables(frame)[0]
    assert gru.title.endswith("median time (ms)")
    assert gru.rows == [["torch-cpu", "2 !", "4 (1.00x)"],
                        ["numba-cpu", "*0.5 (4.00x)", ""]]


def test_machine_table_footer_names_every_machine():
    frame = runner.add_derived(pd.DataFrame([
        row("torch-cpu", "gru", "inference", (10, 1, 4, 8), 2e-3, machine="a (CPU A, 2 cores)"),
        row("torch-cpu", "gru", "inference", (10, 1, 4, 8), 5e-3, machine="b (CPU B, 8 cores)"),
    ]))
    assert report.machine_table(frame).footer == (
        "(Nx) = time / time on a (above 1x: slower); machines: a (CPU A, 2 cores); "
        "b (CPU B, 8 cores)")


def test_titles_footers_and_cells_of_a_two_thread_table():
    """"2 threads"; no unit in an accuracy title; the time footer; "-" for a measured row
    without a figure."""
    frame = runner.add_derived(pd.DataFrame([
        row("torch-cpu", "gru", "inference", (10, 1, 4, 8), 2e-3, threads=2),
        row("numba-cpu", "gru", "inference", (10, 1, 4, 8), 1e-3, threads=2, rel_err=None),
        row("numba-cpu", "gru", "inference", (10, 2, 4, 8), 1e-3, threads=2),
    ]))
    time_table = report.metric_tables(frame, "time")[0]
    assert time_table.title == ("gru reset_after · inference · float32 · 2 threads · median "
                                "time (ms)")
    assert time_table.footer.startswith("* best; (Nx) = speedup vs torch-cpu; ! = unstable")
    assert time_table.rows == [["torch-cpu", "2 (1.00x)", ""],
                               ["numba-cpu", "*1 (2.00x)", "1"]]
    accuracy = report.metric_tables(frame, "accuracy")[0]
    assert accuracy.title.endswith("· 2 threads · relative error vs float64 reference")
    assert accuracy.rows == [["torch-cpu", "1.0e-07", ""], ["numba-cpu", "-", "1.0e-07"]]


def test_a_backend_without_the_first_size_keeps_its_later_ones(results):
    frame = results.drop(index=2)                # numba-cpu's first size
    gru = report.metric_tables(frame, "time")[0]
    assert gru.rows == [["torch-cpu", "2 (1.00x)", "4 (1.00x)"], ["numba-cpu", "", "crashed"]]
