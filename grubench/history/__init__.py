"""Results history: every run recorded in a database, trends and steps over commits, and
a static site (``grubench history``, ``grubench publish``).

The commands that measure call :func:`record` once their report files are written; it
never raises and never touches those files: a database that cannot take the run costs a
one-line warning, nothing more. Cheap to import: the store's libraries load inside.
"""
from __future__ import annotations

import sys


def add_option(parser) -> None:
    """``--no-history`` for a command that records its runs."""
    parser.add_argument("--no-history", action="store_true",
                        help="do not record this run in the results history database "
                             "(GRUBENCH_DB=off does the same; --db/GRUBENCH_DB picks another)")


def git_branch() -> str | None:
    """The branch of the grubench checkout (None when detached or not a checkout)."""
    from pathlib import Path

    from grubench.machine import _run
    branch = _run(["git", "rev-parse", "--abbrev-ref", "HEAD"],
                  cwd=Path(__file__).resolve().parents[2])
    return None if branch in (None, "HEAD") else branch


def record(report, args=None) -> bool:
    """Store the run in ``report`` (a results.json / training.json / regress baseline
    path, or such a document) in the history database; True if stored now. Any failure
    (no optional libraries, locked, read-only, corrupt or newer database) prints one
    warning line and returns False: the run's own files are already written."""
    if getattr(args, "no_history", False):
        return False
    try:
        from grubench.history import documents
        from grubench.history.store import Store, database_url

        url = database_url()
        if url is None:
            return False
        run = documents.read(report) if not isinstance(report, dict) \
            else documents.parse(report)
        store = Store(url)
        try:
            return store.add(run, branch=git_branch())
        finally:
            store.close()
    except Exception as error:  # noqa: BLE001 - recording must never break a run
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if isinstance(error, ImportError):
            first = f"{first} (pip install -e \".[history]\")"
        print(f"grubench: warning: run not recorded in the history database: {first}; "
              f"its report files are written", file=sys.stderr)
        return False
