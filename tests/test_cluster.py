"""grubench.cluster on a Ray cluster of simulated nodes on this machine
(ray.cluster_utils.Cluster, one per module: Ray is slow to start on two cores). The fake
backends (tests/fake_backends.py) keep the measuring itself short."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from grubench import cli, machine, runner, schema, suites
from tests import fake_backends

ray = pytest.importorskip("ray", reason="the cluster extra is not installed "
                                        "(pip install -e '.[cluster]')")
from ray.cluster_utils import Cluster  # noqa: E402

from grubench import cluster  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: A simulated node: one CPU each, a small object store, no dashboard.
NODE = dict(num_cpus=1, object_store_memory=cluster.LOCAL_OBJECT_STORE_BYTES,
            include_dashboard=False)


def _processes(nodes) -> list[psutil.Process]:
    """Every process of these simulated nodes: Ray's own and the Ray workers."""
    found = []
    for node in nodes:
        for infos in node.all_processes.values():
            for info in infos:
                try:
                    process = psutil.Process(info.process.pid)
                    found += [process, *process.children(recursive=True)]
                except psutil.NoSuchProcess:
                    pass
    return found


@pytest.fixture(scope="module")
def ray_cluster():
    """Two nodes offering the grubench resource and "pool"; the head also offers "kill"
    and "odd", which the tests that add a node of their own select it with, and a Ray
    Client server on ``client_port``."""
    with pytest.MonkeyPatch.context() as patch:
        # the nodes' Ray workers import the fake backends (tests/) like the driver
        patch.setenv("PYTHONPATH", str(ROOT))
        client_port = _free_port()
        head = Cluster(initialize_head=True, head_node_args=dict(
            NODE, resources={cluster.RESOURCE: 1, "pool": 1, "kill": 1, "odd": 1},
            ray_client_server_port=client_port))
        head.client_port = client_port
        head.add_node(**NODE, resources={cluster.RESOURCE: 1, "pool": 1})
    try:
        yield head
    finally:
        processes = _processes([head.head_node, *head.worker_nodes])
        head.shutdown()
        _, alive = psutil.wait_procs(processes, timeout=20)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], \
            "Ray processes left running after the cluster shut down"


def _case_keys(frame):
    return [(r["backend"], *(r[k] for k in schema.CASE_KEY), r["status"])
            for _, r in frame.iterrows()]


def test_split_cases_balances_flops_and_keeps_the_suite_order():
    cases = suites.get("default").cases()
    parts = cluster.split_cases(cases, 2)
    assert sorted(map(cases.index, sum(parts, []))) == list(range(len(cases)))
    for part in parts:
        assert [cases.index(c) for c in part] == sorted(cases.index(c) for c in part)
    load = [sum(c.flops() for c in part)
            for part in parts]
    biggest = max(c.flops() for c in cases)
    assert abs(load[0] - load[1]) <= biggest
    assert len(cluster.split_cases(cases[:1], 2)) == 1          # no empty part


def test_spread_gives_the_rows_of_a_local_run(ray_cluster, monkeypatch, tmp_path):
    fake_backends.install(monkeypatch)
    chosen = ["fake-ok", "fake-raise"]
    local = runner.run_suite("quick", backends=chosen, progress=False)
    spread = cluster.run_suite("quick", backends=chosen, progress=False, out=tmp_path,
                               address=ray_cluster.address, nodes="pool")
    assert _case_keys(spread) == _case_keys(local)
    assert set(spread["status"]) == {"ok", "error"}
    assert spread["machine"].nunique() == 2                      # split between the nodes
    by_case = spread.groupby(list(schema.CASE_KEY))["machine"].nunique()
    assert (by_case == 1).all()                 # every backend of a case on one machine

    document = json.loads((tmp_path / "results.json").read_text())
    assert document["cluster"]["placement"] == "spread"
    assert set(document["nodes"]) == set(spread["machine"])
    for context in document["nodes"].values():
        assert context["commit"] == local.attrs["machine"]["commit"]
        assert context["ray"]["processes"].get("raylet", 0) >= 2   # both nodes on this host
        assert machine.short_name(context) in set(spread["machine"])
    assert not (tmp_path / "nodes").exists()


def test_each_runs_the_whole_suite_on_every_node(ray_cluster, monkeypatch, tmp_path, capsys):
    fake_backends.install(monkeypatch)
    status = cli.main(["run", "--suite", "quick", "--backends", "fake-ok", "--no-progress",
                       "--cluster", ray_cluster.address, "--each", "--nodes", "pool",
                       "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0
    cases = suites.get("quick").cases()
    frame = json.loads((tmp_path / "results.json").read_text())["results"]
    machines = sorted({r["machine"] for r in frame})
    assert len(machines) == 2 and len(frame) == 2 * len(cases)
    for case in cases:
        rows = [r for r in frame if all(r[k] == getattr(case, k) for k in
                                        ("cell", "variant", "mode", "T", "B", "I", "H"))]
        assert sorted(r["machine"] for r in rows) == machines      # once on each node

    table = out[out.index("[ machine vs machine"):]
    assert len([line for line in table.splitlines() if line.startswith("  fake-ok")]) \
        == len(cases)
    assert "machine vs machine" in (tmp_path / "report.md").read_text()

    node_folders = sorted((tmp_path / "nodes").iterdir())
    assert len(node_folders) == 2
    for folder in node_folders:
        node = json.loads((folder / "results.json").read_text())
        assert len(node["results"]) == len(cases)
        assert {r["machine"] for r in node["results"]} == {
            machine.short_name(node["machine"])}
        assert node["machine"]["node"] == folder.name


def test_a_ray_client_address_works_too(ray_cluster, monkeypatch):
    """ray://HOST:PORT: the driver outside the cluster, through Ray Client."""
    fake_backends.install(monkeypatch)
    port = ray_cluster.client_port
    deadline = time.monotonic() + 60                 # the client server starts on its own
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    for attempt in range(3):
        try:
            frame = cluster.run_suite("quick", backends=["fake-ok"], progress=False,
                                      nodes="pool", address=f"ray://127.0.0.1:{port}")
            break
        except cluster.ClusterError as error:
            # Ray's client server may accept connections before it can serve them, and
            # refuses the first on loaded cores; the run itself must work
            if "Initialization failure from server" not in str(error) or attempt == 2:
                raise
    assert len(frame) == len(suites.get("quick").cases()) and set(frame["status"]) == {"ok"}
    assert frame["machine"].nunique() == 2


def test_a_node_killed_mid_run_gives_crashed_rows(ray_cluster, monkeypatch):
    fake_backends.install(monkeypatch)
    doomed = ray_cluster.add_node(**NODE, resources={cluster.RESOURCE: 1, "kill": 1})
    doomed_id = doomed.node_id[:6]

    class KillOnFirstRow(runner.Progress):
        """Removes the doomed node when its first row arrives: a case is left."""
        def update(self, label, outcome=""):
            super().update(label, outcome)
            if doomed_id in label and doomed in ray_cluster.worker_nodes:
                ray_cluster.remove_node(doomed, allow_graceful=False)

    # eight cases that split four and four, whichever node is listed first
    suite = suites.get("quick").with_overrides(sizes=[(8, 2, 8, 8), (16, 2, 8, 8)])
    chosen, notes = runner.select_backends(suite, ["fake-slow"])
    frame = cluster.run(suite, chosen, notes, address=ray_cluster.address,
                        nodes="kill", progress=KillOnFirstRow(8, enabled=False))
    assert doomed not in ray_cluster.worker_nodes, "the node was never killed"
    assert len(frame) == len(suite.cases()) and not frame.attrs["interrupted"]
    lost = frame[frame["machine"].str.contains(doomed_id)]
    kept = frame[~frame["machine"].str.contains(doomed_id)]
    assert len(lost) == 4 and list(lost["status"]) == ["ok"] + ["crashed"] * 3
    node_lost = (lost["reason"].str.startswith("node ") & lost["reason"].str.contains("lost")
                 & lost["reason"].str.contains(doomed_id))
    # the case in flight may see its worker killed before the node's actor is reported
    # dead: both reasons are true; the last case can only have the node's
    worker_killed = lost["reason"].str.startswith("worker died (signal SIGKILL)")
    assert (node_lost | worker_killed).iloc[1:].all() and node_lost.iloc[-1], lost["reason"]
    assert set(kept["status"]) == {"ok"} and len(kept) > 0


def test_ctrl_c_ends_the_nodes_work_and_keeps_the_rows(ray_cluster, tmp_path):
    """As a terminal's Ctrl-C: SIGINT to the run's process group once rows came back."""
    log = tmp_path / "stderr"
    with open(log, "w") as stderr:
        run = subprocess.Popen(
            [sys.executable, "-m", "grubench", "run", "--suite", "quick", "--backends",
             "fake-slow", "--cluster", ray_cluster.address, "--nodes", "pool",
             "--out", str(tmp_path / "out")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
            env={**os.environ, "GRUBENCH_PLUGINS": "tests.fake_backends",
                 "PYTHONPATH": str(ROOT)},
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    while " 1/8 " not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGINT)
    assert run.wait(timeout=60) == 130
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["interrupted"] and 1 <= len(document["results"]) < 8
    assert {r["status"] for r in document["results"]} == {"ok"}
    workers = [p for p in psutil.process_iter(["cmdline"])
               if "grubench.worker" in (p.info["cmdline"] or ())
               and "fake-slow" in (p.info["cmdline"] or ())]
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, "the nodes' workers outlived the interrupted run"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_that_does_not_answer_exits_2(capsys, scheme):
    address = f"{scheme}127.0.0.1:{_free_port()}"
    started = time.monotonic()
    status = cli.main(["run", "--suite", "quick", "--cluster", address])
    err = capsys.readouterr().err
    assert status == 2 and time.monotonic() - started < cluster.CONNECT_TIMEOUT_S + 5
    assert err.startswith(f"grubench: error: no Ray cluster answers at {address}: ")
    assert len(err.strip().splitlines()) == 1


def test_a_bad_address_or_option_is_a_usage_error(capsys):
    assert cli.main(["run", "--cluster", "nowhere"]) == 2
    assert "expected 'auto', 'local[:N]', 'HOST:PORT'" in capsys.readouterr().err
    assert cli.main(["run", "--each"]) == 2
    assert "need --cluster ADDRESS" in capsys.readouterr().err


def test_a_node_at_another_commit_is_refused(ray_cluster, monkeypatch, tmp_path, capsys):
    fake_backends.install(monkeypatch)
    other = tmp_path / "other-checkout"
    git = ["git", "-C", str(other), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "other"], check=True)
    odd = ray_cluster.add_node(**NODE, resources={cluster.RESOURCE: 1, "odd": 1},
                               env_vars={"GIT_DIR": str(other / ".git")})
    try:
        status = cli.main(["run", "--suite", "quick", "--backends", "fake-ok",
                           "--cluster", ray_cluster.address, "--nodes", "odd",
                           "--out", str(tmp_path / "out")])
    finally:
        ray_cluster.remove_node(odd)
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("grubench: error: refused: ")
    refused = err.split("differ from this driver")[0]
    assert odd.node_id[:6] in refused
    assert ray_cluster.head_node.node_id[:6] not in refused     # the head is at our commit
    assert not (tmp_path / "out" / "results.json").exists()       # nothing was measured


def test_a_run_without_cluster_does_not_import_ray(tmp_path):
    code = ("import sys; from grubench import cli; "
            f"status = cli.main(['run', '--suite', 'quick', '--backends', 'fake-ok', "
            f"'--size', '2,1,2,2', '--no-progress', '--out', {str(tmp_path)!r}]); "
            "print(status, 'ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ,
                                         "GRUBENCH_PLUGINS": "tests.fake_backends",
                                         "PYTHONPATH": str(ROOT)})
    assert done.stdout.split()[-2:] == ["0", "False"], done.stderr[-2000:]
