"""Report files read as runs: the three kinds grubench writes, and clear errors for others."""
import json

import pytest

from grubench.history import documents

from .conftest import results_document


def test_the_committed_reports_are_runs_of_each_kind():
    found = documents.find(["reports"])
    runs = [documents.read(path) for path in found]
    assert {run.kind for run in runs} == {"run", "regress", "train"}
    for run in runs:
        assert run.rows and run.commit and run.started_at
        assert all(row["case"] and row["backend"] and row["metric"] for row in run.rows)
    regress = next(run for run in runs if run.kind == "regress")
    assert all(row["status"] == "ok" and row["value"] > 0 for row in regress.rows)
    assert any(row["case"].endswith(" lengths") for row in regress.rows)


def test_a_results_row_keeps_its_samples_and_whole_row():
    run = documents.parse(results_document(0))
    row = run.rows[0]
    assert row["case"] == "gru reset_after inference 20,4,32,32 float32 t1"
    assert len(row["samples"]) == 7 and row["data"]["median_s"] == row["value"]
    assert "samples_s" not in row["data"]               # stored once, in samples
    assert run.key == documents.parse(results_document(0)).key != \
        documents.parse(results_document(1)).key


@pytest.mark.parametrize("document, message", [
    ([], "not a grubench report"),
    ({"schema": "other/1"}, "schema 'other/1'"),
    ({"schema": "grubench.results/1", "results": [{"backend": "x"}]}, "result 1: lacks"),
    ({"schema": "grubench.regress/1", "cases": {}, "suite": [{"backend": "x"}]},
     "malformed entry"),
])
def test_other_documents_are_refused_with_the_reason(document, message):
    with pytest.raises(ValueError, match=message):
        documents.parse(document, "f.json")


def test_find_refuses_missing_paths_and_folders_without_reports(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        documents.find([tmp_path / "nope"])
    with pytest.raises(ValueError, match="holds no grubench report"):
        documents.find([tmp_path])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        documents.read(tmp_path / "bad.json")
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "results.json").write_text(json.dumps(results_document(0)))
    assert documents.find([tmp_path, tmp_path / "a"]) == [tmp_path / "a/b/results.json"]
