"""The same store on a real PostgreSQL server, started here on loopback in a scratch
folder (initdb + pg_ctl from Debian's postgresql package), stopped afterwards. Skipped,
with the reason, where the server binaries or the psycopg driver are missing."""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

from grubench import cli
from grubench.history import documents
from grubench.history.store import SCHEMA_VERSION, HistoryError, Store

from .conftest import STEP_CASE, STEP_COMMIT_INDEX, commit_of, results_document


def server_binaries():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        pytest.skip("no PostgreSQL server here (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("no psycopg driver (pip install -e '.[history]')")
    return os.path.dirname(found[-1])


def as_server_user(command):
    """PostgreSQL refuses to run as root: run it as the postgres account then."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def postgres_url():
    binaries = server_binaries()
    scratch = tempfile.mkdtemp(prefix="grubench-pg-")
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(scratch, account.pw_uid, account.pw_gid)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = os.path.join(scratch, "data")
    as_server_user([f"{binaries}/initdb", "-D", data, "-U", "grubench", "-A", "trust",
                    "--no-sync"])
    as_server_user([f"{binaries}/pg_ctl", "-D", data, "-w", "-l", f"{scratch}/log",
                    "-o", f"-h 127.0.0.1 -p {port} -k {scratch} -F", "start"])
    try:
        yield f"postgresql+psycopg://grubench@127.0.0.1:{port}/postgres"
    finally:
        as_server_user([f"{binaries}/pg_ctl", "-D", data, "-m", "immediate", "stop"])
        shutil.rmtree(scratch, ignore_errors=True)


def test_the_schema_and_queries_work_on_postgresql(postgres_url, history_reports, capsys):
    assert cli.main(["history", "import", str(history_reports), "--db", postgres_url]) == 0
    assert cli.main(["history", "import", str(history_reports), "--db", postgres_url]) == 0
    assert "imported 0 new run(s) of 20 file(s) (20 already stored)" in capsys.readouterr().out
    opened = Store(postgres_url, write=False)
    assert opened.version == SCHEMA_VERSION and opened.counts() == (20, 80)
    frame = opened.frame(case=STEP_CASE, machine="ci-box", backend="numba-cpu",
                         since="2026-11-01T03:00:00+00:00")
    assert list(frame["commit"]) == [commit_of(i) for i in range(3, 10)]
    assert cli.main(["history", "--steps", "--db", postgres_url]) == 0
    assert commit_of(STEP_COMMIT_INDEX) in capsys.readouterr().out


def test_concurrent_imports_of_one_run_store_it_once(postgres_url):
    run = documents.parse(results_document(3, 0, seed=7))
    outcomes = []

    def add():
        opened = Store(postgres_url)
        outcomes.append(opened.add(run))
        opened.close()

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False, False, False, True]


def test_an_unreachable_server_is_a_one_line_error():
    server_binaries()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]              # nothing listens there once closed
    with pytest.raises(HistoryError, match="cannot open") as caught:
        Store(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none")
    assert "\n" not in str(caught.value)
