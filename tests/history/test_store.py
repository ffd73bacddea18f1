"""The results store: schema versions and upgrades, runs stored once, and every way a
database can refuse a run (locked, read-only, corrupt, newer schema) ending in one line."""
import sqlite3
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

from grubench.history import documents, store
from grubench.history.store import HistoryError, Store

from .conftest import results_document


def add(url, index, machine=0):
    opened = Store(url)
    try:
        return opened.add(documents.parse(results_document(index, machine)))
    finally:
        opened.close()


def test_database_url_choices(monkeypatch, tmp_path):
    monkeypatch.delenv(store.ENV, raising=False)
    assert store.database_url() == f"sqlite:///{store.default_path()}"
    assert store.database_url(str(tmp_path / "h.sqlite")) == f"sqlite:///{tmp_path}/h.sqlite"
    monkeypatch.setenv(store.ENV, "postgresql+psycopg://u:secret@localhost/grubench")
    assert store.database_url().startswith("postgresql+psycopg://")
    assert "secret" not in store.display(store.database_url())
    monkeypatch.setenv(store.ENV, "off")
    assert store.database_url() is None
    assert store.database_url("sqlite:///x.db") == "sqlite:///x.db"   # --db wins


def test_a_fresh_store_is_at_the_newest_schema_and_keeps_runs_once(db_url):
    assert add(db_url, 0) is True
    assert add(db_url, 0) is False                       # the same document again
    assert add(db_url, 1) is True
    opened = Store(db_url, write=False)
    assert opened.version == store.SCHEMA_VERSION
    assert opened.counts() == (2, 8)
    frame = opened.frame(case="gru reset_after", backend="numba-cpu")
    assert list(frame["commit"]) == ["00c0ffee00ab", "01c0ffee01ab"]
    assert len(frame["samples_json"].iloc[0]) > 10       # the raw samples are kept


def test_an_older_schema_is_upgraded_and_keeps_its_runs(db_url, monkeypatch):
    with monkeypatch.context() as old_code:
        old_code.setattr(store, "MIGRATIONS", store.MIGRATIONS[:1])
        old_code.setattr(store, "SCHEMA_VERSION", 1)
        assert add(db_url, 0)
        assert Store(db_url).version == 1
    engine = sa.create_engine(db_url)
    assert not [i for i in sa.inspect(engine).get_indexes("rows")]
    upgraded = Store(db_url)
    assert upgraded.version == store.SCHEMA_VERSION == 2
    assert {i["name"] for i in sa.inspect(engine).get_indexes("rows")} == {
        "rows_case_backend", "rows_run"}
    assert upgraded.counts() == (1, 4)


def test_a_newer_schema_is_refused(db_url, capsys, tmp_path):
    add(db_url, 0)
    with sa.create_engine(db_url).begin() as connection:
        connection.execute(store.migrations_table.insert().values(
            version=99, description="from the future", applied_at="2030"))
    with pytest.raises(HistoryError, match="schema version 99, newer than this grubench's 2"):
        Store(db_url)
    with pytest.raises(HistoryError, match="newer"):
        Store(db_url, write=False)


def test_a_corrupt_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "corrupt.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryError, match="file is not a database") as caught:
        Store(f"sqlite:///{path}")
    assert "\n" not in str(caught.value)


def test_a_read_only_database_is_a_one_line_error(db_url, tmp_path):
    add(db_url, 0)
    read_only = f"sqlite:///file:{tmp_path / 'history.sqlite'}?mode=ro&uri=true"
    with pytest.raises(HistoryError, match="readonly database"):
        Store(read_only).add(documents.parse(results_document(5)))
    assert Store(read_only, write=False).counts() == (1, 4)   # reading still works


def test_a_locked_database_is_retried_then_a_one_line_error(db_url, tmp_path, monkeypatch):
    add(db_url, 0)
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.1)
    monkeypatch.setattr(store, "WRITE_ATTEMPTS", 2)
    holder = sqlite3.connect(tmp_path / "history.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(HistoryError, match="database is locked"):
            add(db_url, 1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert add(db_url, 1)                                  # free again: stored


WRITER = textwrap.dedent("""
    import sys
    from grubench.history import documents
    from grubench.history.store import Store
    from tests.history.conftest import results_document
    url, first = sys.argv[1], int(sys.argv[2])
    for index in range(first, first + 15):
        store = Store(url)                 # a fresh connection per run, like grubench run
        assert store.add(documents.parse(results_document(index, 0, seed=1)))
        store.close()
""")


def test_two_writer_processes_lose_nothing(db_url, tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, db_url, str(first)], cwd=root,
                                stderr=subprocess.PIPE, text=True) for first in (0, 100)]
    for writer in writers:
        assert writer.wait(timeout=300) == 0, writer.stderr.read()
    opened = Store(db_url, write=False)
    assert opened.counts() == (30, 120)
    assert sqlite3.connect(tmp_path / "history.sqlite").execute(
        "PRAGMA journal_mode").fetchone()[0] == "wal"
