"""The results store: every run's metadata and rows in one SQL database (SQLAlchemy Core).

SQLite by default (one embedded file, see :func:`database_url`), any SQLAlchemy URL for a
team (PostgreSQL): the tables use only portable types (integers, floats, strings, JSON as
text) so one schema serves both.

Schema versions: ``schema_migrations`` holds one row per applied migration; opening a store
applies the missing ones from :data:`MIGRATIONS` in order, each in its own transaction, and
refuses a database whose version is newer than this code knows.

SQLite and concurrent writers: WAL journal (readers never block the writer), a 20 s busy
timeout, and every write transaction opened with BEGIN IMMEDIATE, so two processes queue
for the write lock instead of deadlocking on a lock upgrade; a write that still finds the
database busy is retried. A run is stored once: its key is the hash of its document, unique.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from grubench.history.documents import Run, machine_fingerprint, machine_name

ENV = "GRUBENCH_DB"
OFF = ("off", "none", "0", "false", "no")
# A writer waits up to BUSY_TIMEOUT_S for the lock, WRITE_ATTEMPTS times: a run waits at
# most a minute on a database someone holds locked before it warns and goes on.
BUSY_TIMEOUT_S = 20
WRITE_ATTEMPTS = 3


class HistoryError(ValueError):
    """The store cannot be used (locked, read-only, corrupt, newer schema, bad URL): one
    line saying which database and why."""


def default_path() -> Path:
    """The SQLite file used without --db or GRUBENCH_DB: in the user's data directory
    (platformdirs), so every checkout, worktree and branch on this machine adds to one
    history, and no binary database lands in the git tree."""
    import platformdirs
    return Path(platformdirs.user_data_dir("grubench")) / "history.sqlite"


def database_url(option: str | None = None) -> str | None:
    """The store's SQLAlchemy URL: ``option`` (--db), else $GRUBENCH_DB, else the default
    file; None when either says off. A plain path means a SQLite file."""
    value = option if option is not None else os.environ.get(ENV, "")
    value = value.strip()
    if value.lower() in OFF:
        return None
    if not value:
        value = str(default_path())
    return value if "://" in value else f"sqlite:///{Path(value).expanduser()}"


def display(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


metadata = sa.MetaData()

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_key", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),          # run, regress, train
    sa.Column("commit_hash", sa.String(64)),        # "commit" is an SQL keyword
    sa.Column("branch", sa.String(200)),
    sa.Column("machine", sa.String(400)),
    sa.Column("machine_fingerprint", sa.String(16)),
    sa.Column("suite", sa.String(200)),
    sa.Column("started_at", sa.String(40)),                    # ISO 8601, UTC
    sa.Column("recorded_at", sa.String(40), nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("context_json", sa.Text, nullable=False),
    sa.Column("suite_json", sa.Text, nullable=False),
    sa.Column("notes_json", sa.Text, nullable=False),
)

rows = sa.Table(
    "rows", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("case_label", sa.String(200), nullable=False),     # "case" is a keyword
    sa.Column("backend", sa.String(100), nullable=False),
    sa.Column("cell", sa.String(16)),
    sa.Column("variant", sa.String(16)),
    sa.Column("mode", sa.String(16)),
    sa.Column("T", sa.Integer), sa.Column("B", sa.Integer),
    sa.Column("I", sa.Integer), sa.Column("H", sa.Integer),
    sa.Column("dtype", sa.String(16)),
    sa.Column("threads", sa.Integer),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("metric", sa.String(32), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("samples_json", sa.Text),                       # raw per-call times
    sa.Column("data_json", sa.Text, nullable=False),          # the whole original row
)

migrations_table = sa.Table(
    "schema_migrations", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.String(40), nullable=False),
)


def _create_tables(connection) -> None:
    metadata.create_all(connection, tables=[runs, rows])


def _add_trend_indexes(connection) -> None:
    """Trend and step queries select rows by case and backend, runs by time. (The
    indexes are built on detached copies of the tables: an Index on ``rows`` itself would
    join its metadata, and version 1's create_all would then make it too early.)"""
    detached = sa.MetaData()
    rows_copy = sa.Table("rows", detached, sa.Column("case_label"), sa.Column("backend"),
                         sa.Column("run_id"))
    runs_copy = sa.Table("runs", detached, sa.Column("started_at"))
    sa.Index("rows_case_backend", rows_copy.c.case_label, rows_copy.c.backend).create(
        connection)
    sa.Index("rows_run", rows_copy.c.run_id).create(connection)
    sa.Index("runs_started_at", runs_copy.c.started_at).create(connection)


#: (version, description, apply(connection)), in order; append, never edit a released one.
MIGRATIONS = (
    (1, "runs and rows", _create_tables),
    (2, "indexes for trend queries", _add_trend_indexes),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _now() -> str:
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _first_line(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


def _is_busy(error: BaseException) -> bool:
    text = str(getattr(error, "orig", error)).lower()
    return "locked" in text or "busy" in text


def _sqlite_engine(url: str, write: bool):
    parsed = sa.engine.make_url(url)
    path = parsed.database
    if path and path != ":memory:" and not parsed.query.get("uri"):
        path = Path(path).expanduser()
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():     # reading must not leave an empty database behind
            raise HistoryError(f"no history database at {path}: record a run or "
                               f"`grubench history import reports/` first")
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if write:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class Store:
    """An open results store. ``write=False`` opens it for reading only (no migrations,
    no write lock); a store older than this code must be written to once (any run or
    ``history import``) to be upgraded."""

    def __init__(self, url: str, write: bool = True):
        self.url, self.write = url, write
        with self._errors("cannot open"):
            if url.startswith("sqlite"):
                self.engine = _sqlite_engine(url, write)
            else:
                self.engine = sa.create_engine(url, pool_pre_ping=True)
            self.version = self._migrate() if write else self._check_version()

    @contextmanager
    def _errors(self, doing: str):
        try:
            yield
        except HistoryError:
            raise
        except (sa.exc.SQLAlchemyError, OSError, ImportError) as error:
            raise HistoryError(f"history database {display(self.url)}: {doing}: "
                               f"{_first_line(error)}") from None

    def _retrying(self, work):
        """``work(connection)`` in one write transaction, retried while the database is
        busy (another writer past the busy timeout) or a racing writer made it moot."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self.engine.begin() as connection:
                    return work(connection)
            except sa.exc.OperationalError as error:
                if not _is_busy(error) or attempt == WRITE_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * 2 ** attempt)

    def _applied_version(self, connection) -> int:
        if not sa.inspect(connection).has_table("schema_migrations"):
            return 0
        return connection.execute(sa.select(sa.func.max(
            migrations_table.c.version))).scalar() or 0

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"history database {display(self.url)} has schema version {version}, newer "
                f"than this grubench's {SCHEMA_VERSION}: upgrade grubench to use it")

    def _check_version(self) -> int:
        with self.engine.connect() as connection:
            version = self._applied_version(connection)
        self._refuse_newer(version)
        if version == 0:
            raise HistoryError(f"history database {display(self.url)} is empty: record a "
                               f"run or `grubench history import reports/` first")
        return version

    def _migrate(self) -> int:
        def step(connection):
            migrations_table.create(connection, checkfirst=True)
            version = self._applied_version(connection)
            self._refuse_newer(version)
            pending = [m for m in MIGRATIONS if m[0] > version]
            if pending:                              # one at a time, each committed
                number, description, apply = pending[0]
                apply(connection)
                connection.execute(migrations_table.insert().values(
                    version=number, description=description, applied_at=_now()))
                return number, len(pending) > 1
            return version, False

        more = True
        while more:
            version, more = self._retrying(step)
        return version

    # ------------------------------------------------------------------ writing

    def add(self, run: Run, branch: str | None = None) -> bool:
        """Store ``run`` with its rows in one transaction; False if it was already stored."""
        def insert(connection):
            if connection.execute(sa.select(runs.c.id).where(
                    runs.c.run_key == run.key)).first():
                return False
            run_id = connection.execute(runs.insert().values(
                run_key=run.key, kind=run.kind, commit_hash=run.commit, branch=branch,
                machine=machine_name(run.context),
                machine_fingerprint=machine_fingerprint(run.context),
                suite=str(run.suite.get("name") or ""), started_at=_utc(run.started_at),
                recorded_at=_now(), source=run.source,
                context_json=json.dumps(run.context, default=str),
                suite_json=json.dumps(run.suite, default=str),
                notes_json=json.dumps(run.notes, default=str))).inserted_primary_key[0]
            if run.rows:
                connection.execute(rows.insert(), [
                    {**{k: v for k, v in row.items() if k not in ("case", "samples", "data")},
                     "case_label": row["case"], "run_id": run_id, "value": _number(row["value"]),
                     "samples_json": None if row["samples"] is None
                     else json.dumps(row["samples"]),
                     "data_json": json.dumps(row["data"], default=str)}
                    for row in run.rows])
            return True

        with self._errors("cannot record the run"):
            try:
                return self._retrying(insert)
            except sa.exc.IntegrityError:
                return False                     # a concurrent import stored it first

    # ------------------------------------------------------------------ reading

    def frame(self, case: str | None = None, since: str | None = None,
              machine: str | None = None, backend: str | None = None):
        """Rows joined with their runs, oldest run first, as a pandas DataFrame; filters:
        ``case`` a substring of the case label (or a glob with * and ?), ``since`` an ISO
        date or time, ``machine`` a substring of the machine name, ``backend`` exact."""
        import fnmatch

        import pandas as pd

        query = sa.select(
            rows.c.id.label("row_id"), rows.c.case_label.label("case"), rows.c.backend,
            rows.c.cell,
            rows.c.variant, rows.c.mode, rows.c.T, rows.c.B, rows.c.I, rows.c.H,
            rows.c.dtype, rows.c.threads, rows.c.status, rows.c.metric, rows.c.value,
            rows.c.samples_json, rows.c.data_json, runs.c.id.label("run_id"), runs.c.kind,
            runs.c.commit_hash.label("commit"), runs.c.branch, runs.c.machine,
            runs.c.machine_fingerprint,
            runs.c.suite, runs.c.started_at, runs.c.source,
        ).join(runs, rows.c.run_id == runs.c.id).order_by(runs.c.started_at, runs.c.id,
                                                          rows.c.id)
        if since:
            query = query.where(runs.c.started_at >= since)
        if machine:
            query = query.where(runs.c.machine.contains(machine, autoescape=True))
        if backend:
            query = query.where(rows.c.backend == backend)
        if case and not any(c in case for c in "*?["):
            query = query.where(rows.c.case_label.contains(case, autoescape=True))
        with self._errors("cannot read"), self.engine.connect() as connection:
            frame = pd.DataFrame(connection.execute(query).mappings().all())
        if frame.empty:
            return pd.DataFrame(columns=[c.name for c in query.selected_columns])
        if case and any(c in case for c in "*?["):
            frame = frame[[fnmatch.fnmatchcase(label, case) for label in frame["case"]]]
        return frame.reset_index(drop=True)

    def list_runs(self):
        import pandas as pd
        with self._errors("cannot read"), self.engine.connect() as connection:
            return pd.DataFrame(connection.execute(
                sa.select(runs).order_by(runs.c.started_at, runs.c.id)).mappings().all())

    def counts(self) -> tuple[int, int]:
        with self._errors("cannot read"), self.engine.connect() as connection:
            return (connection.execute(sa.select(sa.func.count()).select_from(runs)).scalar(),
                    connection.execute(sa.select(sa.func.count()).select_from(rows)).scalar())

    def close(self) -> None:
        self.engine.dispose()


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _utc(timestamp: str | None) -> str | None:
    """ISO 8601 in UTC, so that text order is time order in every database."""
    if not timestamp:
        return None
    import datetime
    try:
        moment = datetime.datetime.fromisoformat(timestamp)
    except ValueError:
        return timestamp
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")
