"""The report: comparisons with hand-computed values and the files it writes."""
import csv
import io
import json

import pytest

from grubench.training import report


def row(dataset, cell, backend, seconds, accuracy, threads=1, layers=1, directions=1):
    return {"dataset": dataset, "cell": cell, "backend": backend, "threads": threads,
            "layers": layers, "directions": directions,
            "parameters": 1234, "seconds_per_epoch": seconds, "step_peak_mib": 1.5,
            "process_peak_rss_mib": 300.0, "final_train_loss": 0.25,
            "test_accuracy": accuracy, "hidden": 8, "epochs": 2, "batch": 4, "lr": 0.01,
            "seed": 0, "first_epoch_seconds": seconds * 3, "backend_version": "v",
            "train_loss": [0.5, 0.25], "test_accuracy_curve": [accuracy - 0.1, accuracy]}


ROWS = [row("mnist", "gru", "numba-cpu", 0.5, 0.95),
        row("mnist", "gru", "torch-autograd", 2.0, 0.935),
        row("mnist", "lstm", "numba-cpu", 1.0, 0.9)]
STACKED = row("digits", "gru", "numba-cpu", 0.5, 0.95, layers=2, directions=2)


def test_comparisons_against_the_torch_row():
    compared = report.add_comparisons(ROWS)
    assert compared[0]["speedup"] == 4.0
    assert compared[0]["accuracy_delta"] == pytest.approx(1.5)
    assert compared[1]["speedup"] == 1.0 and compared[1]["accuracy_delta"] == 0.0
    assert compared[2]["speedup"] is None and compared[2]["accuracy_delta"] is None


def test_text_table():
    text = report.format_text(report.add_comparisons(ROWS))
    _title, header, _rule, first, _torch, no_torch = text.splitlines()
    assert header.split()[:5] == ["dataset", "|", "cell", "|", "backend"]
    assert first.index("gru") == header.index("cell")      # names aligned left
    assert "4.00x" in first and "95.00" in first and "+1.50" in first and "1,234" in first
    assert no_torch.split()[-1] == "-"


def test_write_reports(tmp_path):
    rows = report.add_comparisons(ROWS + [STACKED])
    written = report.write_reports(rows, tmp_path, {"cpu_model": "test cpu", "cores": 2})
    assert sorted(p.name for p in written) == ["training.csv", "training.json",
                                                "training.md", "training_curves.png"]
    table = list(csv.DictReader(io.StringIO((tmp_path / "training.csv").read_text())))
    assert table[0]["speedup"] == "4.0" and table[2]["speedup"] == ""
    saved = json.loads((tmp_path / "training.json").read_text())
    assert saved["context"]["cores"] == 2 and saved["results"][1]["backend"] == "torch-autograd"
    markdown = (tmp_path / "training.md").read_text()
    assert "| mnist | gru | numba-cpu | 1 | 1,234 | 0.500 | 4.00x |" in markdown
    assert "test cpu" in markdown
    assert "- mnist: 1 layer, one direction, hidden 8, 2 epochs, batch 4" in markdown
    assert "- digits: 2 layers, bidirectional, hidden 8" in markdown
    assert table[3]["layers"] == "2" and table[3]["directions"] == "2"
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
