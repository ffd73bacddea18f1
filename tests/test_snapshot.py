"""Snapshots of what users and their tools read, compared with files under tests/golden/:

* the results schema: the document's keys, every row's keys in order and the SCHEMA string
  of results.json, and the header of results.csv, as `grubench run` writes them now;
* a rendered report: tests/golden/results.json (a small run of four backends, GRU in both
  variants and LSTM, inference and training, an unsupported and an error case, its
  machine-dependent fields replaced with fixed ones) read back and written again must give
  the golden results.json, results.csv and report.md byte for byte, so everything in them
  comes from the fixture, nothing from this machine;
* the command line: the commands, each command's option names and positional
  arguments, from ``--help``.

A deliberate change regenerates the golden files (GRUBENCH_UPDATE_GOLDEN=1 pytest
tests/test_snapshot.py) and shows up in review as their diff."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from grubench import cli, report

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("GRUBENCH_UPDATE_GOLDEN") == "1"


def assert_matches_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from tests/golden/{name}"


def schema_of(folder: Path) -> dict:
    """The schema a report folder's files follow (what results_schema.json pins)."""
    document = json.loads((folder / "results.json").read_text())
    with open(folder / "results.csv", newline="") as file:
        header = next(csv.reader(file))
    return {"schema": document["schema"], "document": list(document),
            "machine": list(document["machine"]), "suite": list(document["suite"]),
            "row": sorted({tuple(row) for row in document["results"]}), "csv": header}


def expected_schema() -> dict:
    pinned = json.loads((GOLDEN / "results_schema.json").read_text())
    return {**pinned, "row": [tuple(pinned["row"])]}


def test_a_run_writes_the_pinned_schema(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "grubench", "run", "--backends", "numpy", "--suite", "quick",
         "--size", "2,1,2,2", "--cells", "gru", "--variant", "reset_after", "--mode",
         "both", "--dtype", "float32", "--min-runs", "1", "--min-time", "0.01",
         "--no-progress", "--no-history", "--out", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    schema = schema_of(tmp_path / "out")
    if UPDATE:
        (GOLDEN / "results_schema.json").write_text(json.dumps(
            {**schema, "row": list(schema["row"][0])}, indent=1) + "\n")
    assert schema == expected_schema()


def test_the_fixture_follows_the_pinned_schema():
    """So the rendered report below is today's report of today's files."""
    assert schema_of(GOLDEN) == expected_schema()


def test_the_rendered_report_is_unchanged(tmp_path):
    frame = report.load_results(GOLDEN / "results.json")
    written = report.write_report(frame, tmp_path)
    assert sorted(p.name for p in written) == [
        "gru_vs_lstm.png", "report.md", "results.csv", "results.json", "speedup_heatmap.png",
        "time_by_size.png"]
    for name in ("results.json", "results.csv", "report.md"):
        text = (tmp_path / name).read_text()
        if name == "results.json":           # the fixture itself: never rewritten
            assert text == (GOLDEN / name).read_text(), "results.json does not round-trip"
        else:
            assert_matches_golden(name, text)


# ------------------------------------------------------------------- the command line

def help_text(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def arguments(help_text: str) -> dict:
    """The options its usage block names (every option argparse shows, in its order) and
    the positional arguments its help lists."""
    usage = help_text.split("\n\n")[0]
    positionals = help_text.split("\npositional arguments:\n")[1:]
    return {"options": re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", usage),
            "positionals": re.findall(r"^  (\S+(?: \S+)*)",
                                      positionals[0].split("\n\n")[0], re.M)
            if positionals else []}


def test_the_commands_and_their_options_are_unchanged(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    top = help_text(capsys)
    commands = re.findall(r"^    ([a-z][\w-]*)(?: |$)", top.split("\ncommands:\n")[1], re.M)
    surface = {"commands": commands,
               "arguments": {command: arguments(help_text(capsys, command))
                             for command in commands}}
    assert_matches_golden("cli.json", json.dumps(surface, indent=1) + "\n")
