"""grubench history / publish from the command line, and the recording hook of run."""
import json
import sqlite3

import pytest

from grubench import cli
from grubench.history import store

from .conftest import STEP_CASE, STEP_COMMIT_INDEX, commit_of


def run_main(capsys, *argv):
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def test_import_twice_stores_once_then_trend_and_steps(capsys, history_reports, db_url,
                                                       tmp_path):
    status, out, _ = run_main(capsys, "history", "import", str(history_reports), "--db", db_url)
    assert status == 0 and "imported 20 new run(s) of 20 file(s)" in out
    status, out, _ = run_main(capsys, "history", "import", str(history_reports), "--db", db_url)
    assert status == 0 and "imported 0 new run(s)" in out and "20 runs, 80 rows" in out

    plot = tmp_path / "trend.html"
    status, out, _ = run_main(capsys, "history", STEP_CASE, "--db", db_url, "--machine",
                              "ci-box", "--backend", "numba-cpu", "--plot", str(plot))
    assert status == 0
    assert out.count(commit_of(0)) == 1 and "torch-cpu" not in out and "lab" not in out
    assert plot.stat().st_size > 1_000_000           # plotly.js is inside: works offline

    status, out, _ = run_main(capsys, "history", "--steps", "--db", db_url)
    assert status == 0
    [line] = [line for line in out.splitlines() if STEP_CASE in line]
    assert commit_of(STEP_COMMIT_INDEX) in line and commit_of(STEP_COMMIT_INDEX - 1) in line
    assert "numba-cpu" in line and "ci-box" in line and "+5" in line   # about +50%

    since = "2026-11-01T05:30"                     # commits 6.. only: no step left in them
    status, out, _ = run_main(capsys, "history", "--steps", "--since", since, "--db", db_url)
    assert status == 0 and "no steps" in out


@pytest.mark.parametrize("argv, message", [
    (["history", "--since", "yesterday"], "'yesterday' is not an ISO date"),
    (["history", "import"], "at least one results.json"),
    (["history", "import", "no/such/folder"], "does not exist"),
    (["history", "two", "words"], "one case filter expected"),
    (["history", "--min-effect", "-1"], "must be a fraction"),
])
def test_mistakes_exit_2_in_one_line(capsys, db_url, argv, message):
    status, _, err = run_main(capsys, *argv, "--db", db_url)
    assert status == 2 and message in err and "Traceback" not in err


def test_a_missing_empty_or_off_database_is_a_clear_error(capsys, db_url, tmp_path):
    status, _, err = run_main(capsys, "history", "--db", db_url)
    assert status == 2 and "no history database at" in err
    assert not (tmp_path / "history.sqlite").exists()       # reading created nothing
    with sqlite3.connect(tmp_path / "history.sqlite"):          # a file with no schema
        pass
    status, _, err = run_main(capsys, "history", "--db", db_url)
    assert status == 2 and "is empty" in err
    store.Store(db_url).close()                                 # the schema, no runs
    status, _, err = run_main(capsys, "publish", "--out", str(tmp_path / "site"), "--db",
                              db_url)
    assert status == 2 and "holds no runs" in err
    status, _, err = run_main(capsys, "history")       # GRUBENCH_DB=off in the tests
    assert status == 2 and "is off" in err


@pytest.mark.parametrize("remote, template", [
    ("https://github.com/org/grubench.git", "https://github.com/org/grubench/commit/{commit}"),
    ("git@github.com:org/grubench.git", "https://github.com/org/grubench/commit/{commit}"),
    ("ssh://git@gitlab.example/team/grubench", "https://gitlab.example/team/grubench/commit/"
                                               "{commit}"),
    ("/srv/git/grubench.git", None),
    (None, None),
])
def test_commit_links_come_from_the_origin_remote(remote, template):
    from grubench.history.cli import commit_url_of

    assert commit_url_of(remote) == template


def fake_run(capsys, tmp_path, *extra):
    return run_main(capsys, "run", "--backends", "fake-ok", "--size", "3,2,4,5", "--cells",
                    "gru", "--mode", "inference", "--min-runs", "1", "--min-time", "0.001",
                    "--out", str(tmp_path / "report"), "--no-progress", *extra)


def test_a_run_is_recorded_unless_told_not_to(capsys, monkeypatch, tmp_path, db_url):
    from fake_backends import install

    install(monkeypatch)
    monkeypatch.setenv(store.ENV, db_url)
    assert fake_run(capsys, tmp_path)[0] == 0
    opened = store.Store(db_url, write=False)
    assert opened.counts() == (1, 1)
    [run] = opened.list_runs().to_dict("records")
    assert json.loads(run["context_json"])["commit"] == run["commit_hash"]
    assert fake_run(capsys, tmp_path, "--no-history")[0] == 0
    monkeypatch.setenv(store.ENV, "off")
    assert fake_run(capsys, tmp_path)[0] == 0
    assert opened.counts() == (1, 1)


@pytest.mark.parametrize("damage", ["corrupt", "newer", "locked"])
def test_a_database_that_refuses_the_run_costs_a_warning_not_the_results(
        capsys, monkeypatch, tmp_path, damage):
    from fake_backends import install

    install(monkeypatch)
    path = tmp_path / "history.sqlite"
    monkeypatch.setenv(store.ENV, str(path))
    holder = None
    if damage == "corrupt":
        path.write_bytes(b"garbage" * 1000)
    else:
        store.Store(f"sqlite:///{path}").close()
        holder = sqlite3.connect(path, isolation_level=None)
        if damage == "newer":
            holder.execute("INSERT INTO schema_migrations VALUES (7, 'future', '2030')")
        else:
            monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.1)
            monkeypatch.setattr(store, "WRITE_ATTEMPTS", 1)
            holder.execute("BEGIN EXCLUSIVE")
    status, _, err = fake_run(capsys, tmp_path)
    if holder is not None:
        holder.close()
    assert status == 0
    [warning] = [line for line in err.splitlines() if "warning" in line]
    assert warning.startswith("grubench: warning: run not recorded in the history database")
    assert {"corrupt": "not a database", "newer": "newer",
            "locked": "locked"}[damage] in warning
    assert json.loads((tmp_path / "report/results.json").read_text())["results"]
