"""Running a suite on a Ray cluster: ``grubench run --cluster ADDRESS [--spread | --each]``.

Ray (https://docs.ray.io) places the work, watches the nodes and hands the rows back;
on each node the cases are measured exactly as on one machine, by
:func:`grubench.runner.measure_here` (one pinned worker process per backend and thread
count, the backends taking turns case by case), so every ratio between backends is taken
on one machine.

* ``spread`` (the default): the suite's cases are divided among the chosen nodes (the
  largest first, each to the node with the fewest FLOPs so far); every backend of a case
  runs on that case's node.
* ``each``: the whole suite on every chosen node; the report adds a machine-vs-machine
  table and :func:`write_report` writes each node's own report folder under ``nodes/``.

Isolation: a node offers the custom resource ``grubench`` with capacity 1
(``ray start --resources='{"grubench": 1}'``) and the actor measuring there
(:class:`NodeRun`) holds it and all the node's CPUs (and GPUs), so one measurement at a
time runs on a node and no other Ray task shares its cores. Before measuring, a probe on
every chosen node returns its machine context; a node whose grubench version or commit
differs from the driver's is refused. A node that dies, or a measurement that raises,
turns that node's remaining rows into ``crashed`` rows naming the node; the other nodes
go on. Ctrl-C ends the actors (their workers see their input close and exit) and keeps
the rows measured.

Ray is imported only here, and this module only when ``--cluster`` is given.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import time
from pathlib import Path

import pandas as pd
import psutil

import grubench
from grubench import backends as registry
from grubench.backends import PLUGINS_ENV
from grubench import machine, report, runner, suites
from grubench.case import Case
from grubench.threads import cpu_count

#: The per-node custom resource a measurement holds (capacity 1 on each node).
RESOURCE = "grubench"
#: Seconds to wait for a cluster address to accept a connection, and for the probes.
CONNECT_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 120.0
#: Object store of a ``local`` node: rows are small, Ray's default is 30% of memory.
LOCAL_OBJECT_STORE_BYTES = 80 * 2 ** 20
PLACEMENTS = ("spread", "each")
#: Names of Ray's own processes (what a node's context lists beside the measurement).
RAY_PROCESS_NAMES = ("raylet", "gcs_server", "plasma_store", "redis-server")
RAY_SCRIPTS = {"dashboard/dashboard.py": "dashboard", "dashboard/agent.py": "dashboard agent",
               "runtime_env/agent/main.py": "runtime env agent",
               "_private/log_monitor.py": "log monitor",
               "autoscaler/_private/monitor.py": "autoscaler monitor"}


class ClusterError(ValueError):
    """The cluster cannot run the suite (unreachable, no eligible node, refused node):
    one line, exit status 2 from the command line."""


# ---------------------------------------------------------------------- on a node

def ray_processes() -> dict[str, int]:
    """Ray's own processes on this host, by name (a measurement shares the host with
    them): raylet, GCS, agents, idle and busy Ray workers."""
    found: dict[str, int] = {}
    for process in psutil.process_iter(["name", "cmdline"]):
        name = process.info["name"] or ""
        command = " ".join(process.info["cmdline"] or ())
        script = next((s for s in RAY_SCRIPTS if s in command), None)
        if name.startswith("ray::") or name in RAY_PROCESS_NAMES:
            label = name
        elif command.startswith("ray::"):             # a Ray worker names itself so
            label = command.split()[0]
        elif script:
            label = RAY_SCRIPTS[script]
        else:
            continue
        found[label] = found.get(label, 0) + 1
    return dict(sorted(found.items()))


def node_context(name: str) -> dict:
    """This node's machine context (grubench.machine.context) with the node's name,
    grubench version and Ray: version, node id and Ray's processes on the host."""
    import ray

    context = machine.context()
    context.update(node=name, grubench=grubench.__version__,
                   ray=dict(version=ray.__version__,
                            node_id=ray.get_runtime_context().get_node_id(),
                            processes=ray_processes()))
    return context


def _use_plugins(plugins: str | None) -> None:
    """The driver's GRUBENCH_PLUGINS on this node, so it sees the same backends."""
    if plugins:
        os.environ[PLUGINS_ENV] = plugins
    else:
        os.environ.pop(PLUGINS_ENV, None)


def _probe(name: str, plugins: str | None) -> dict:
    _use_plugins(plugins)
    return node_context(name)


class NodeRun:
    """The Ray actor that measures on one node. While it lives it holds the node (its
    grubench resource, all its CPUs and, for CUDA backends, its GPUs); it keeps
    :func:`grubench.runner.measure_here`'s workers between calls and hands the rows over one
    call at a time, so the driver has each row at once and keeps it on Ctrl-C (an actor,
    not a generator task: Ray Client, ray://, cannot stream a task's output)."""

    def __init__(self, name: str, plugins: str | None):
        _use_plugins(plugins)
        registry.load_plugins()     # this process looks backends up too (what each can run)
        self.name = name
        self.rows = None

    def start(self, suite: suites.Suite, chosen: list[str], cases) -> dict:
        """Start measuring; this node's context, as of now."""
        context = node_context(self.name)
        self.rows = runner.measure_here(suite, chosen, cases, context,
                                        runner.Progress(0, enabled=False))
        return context

    def next_row(self) -> dict | None:
        """The next row, measured now; None after the last."""
        return next(self.rows, None)


# ---------------------------------------------------------------------- on the driver

def import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("--cluster needs Ray: pip install 'grubench[cluster]'") from None
    return ray


def _check_reachable(address: str) -> None:
    """A TCP connection to host:port within CONNECT_TIMEOUT_S, or ClusterError: ray.init
    itself retries an absent cluster for minutes."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]]+?)\]?:(\d+)", address)
    if not match:
        raise ClusterError(f"--cluster {address!r}: expected 'auto', 'local[:N]', "
                           f"'HOST:PORT' or 'ray://HOST:PORT'")
    host, port = match.group(1), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ClusterError(f"no Ray cluster answers at {address}: "
                           f"{error.strerror or error} (start one with ray start --head; "
                           f"see README)") from None


def local_node_count(address: str) -> int | None:
    """N of 'local[:N]' (1 for 'local'), None for any other address."""
    match = re.fullmatch(r"local(?::(\d+))?", address)
    if not match:
        return None
    count = int(match.group(1) or 1)
    if count < 1:
        raise ClusterError(f"--cluster {address!r}: the node count must be >= 1")
    return count


def connect(ray, address: str):
    """ray.init on ``address``; for 'local[:N]' first start N simulated nodes
    (ray.cluster_utils.Cluster), returned so the caller shuts them down; else None."""
    options = dict(log_to_driver=False, logging_level=logging.ERROR)
    count = local_node_count(address)
    if count is not None:
        from ray.cluster_utils import Cluster

        node = dict(num_cpus=max(1, cpu_count() // count), resources={RESOURCE: 1},
                    object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False)
        cluster = Cluster(initialize_head=True, head_node_args=node)
        for _ in range(count - 1):
            cluster.add_node(**node)
        ray.init(address=cluster.address, **options)
        return cluster
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, TimeoutError) as error:
        ray.shutdown()              # a half-made connection would break the next ray.init
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: "
                           f"{type(error).__name__}: {first_line}") from None
    return None


def node_names(nodes: list[dict]) -> list[str]:
    """A name per node: its hostname, with a piece of its node id where hosts repeat
    (simulated nodes, or several raylets on one host)."""
    hosts = [n["NodeManagerHostname"] for n in nodes]
    return [host if hosts.count(host) == 1 else f"{host}-{n['NodeID'][:6]}"
            for host, n in zip(hosts, nodes)]


def eligible_nodes(ray, label: str | None, need_gpu: bool) -> list[dict]:
    """Alive nodes that offer the grubench resource, carry ``label`` (a custom resource,
    a label key, or key=value) and, for CUDA backends, a GPU; ClusterError if none."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    nodes = [n for n in alive if n["Resources"].get(RESOURCE, 0) >= 1]
    if not nodes:
        raise ClusterError(f"none of the cluster's {len(alive)} nodes offers the "
                           f"'{RESOURCE}' resource: start each node with "
                           f"ray start ... --resources='{{\"{RESOURCE}\": 1}}'")
    if label:
        key, _, value = label.partition("=")

        def carries(node):
            labels = node.get("Labels") or {}
            if value:
                return labels.get(key) == value
            return node["Resources"].get(key, 0) > 0 or key in labels
        offered = sorted({k for n in nodes for k in (*n["Resources"], *(n.get("Labels") or {}))
                          if not k.startswith("node:")})
        nodes = [n for n in nodes if carries(n)]
        if not nodes:
            raise ClusterError(f"--nodes {label!r}: no node with the '{RESOURCE}' resource "
                               f"carries it (resources and labels: {', '.join(offered)})")
    if need_gpu:
        nodes = [n for n in nodes if n["Resources"].get("GPU", 0) >= 1]
        if not nodes:
            raise ClusterError("the CUDA backends need a node with a GPU (num_gpus) and the "
                               f"'{RESOURCE}' resource; none has both")
    return nodes


def refuse_mismatched(contexts: dict[str, dict], driver: dict) -> None:
    """ClusterError naming every node whose grubench version or commit differs from the
    driver's: their rows would not be comparable."""
    want = (grubench.__version__, driver.get("commit"))
    odd = [f"{name} (grubench {c.get('grubench')} at {c.get('commit')})"
           for name, c in contexts.items() if (c.get("grubench"), c.get("commit")) != want]
    if odd:
        raise ClusterError(f"refused: {', '.join(odd)} differ from this driver (grubench "
                           f"{want[0]} at {want[1]}); install the same commit there, or "
                           f"leave those nodes out with --nodes")


def split_cases(cases, count: int):
    """Cases into ``count`` parts of about equal FLOPs (largest first, each to the
    lightest part), each part in the suite's order."""
    parts: list[list[int]] = [[] for _ in range(count)]
    load = [0.0] * count
    flops = [case.flops() for case in cases]
    for index in sorted(range(len(cases)), key=lambda i: -flops[i]):
        lightest = load.index(min(load))
        parts[lightest].append(index)
        load[lightest] += flops[index]
    return [[cases[i] for i in sorted(part)] for part in parts if part]


def _short(error: BaseException) -> str:
    """An exception from Ray in one line: its type and its last meaningful line."""
    lines = [l.strip() for l in str(error).splitlines() if l.strip()]
    return f"{type(error).__name__}: {lines[-1][:300] if lines else ''}"


def run_suite(suite: str | suites.Suite = "default", *, address: str,
              placement: str = "spread", nodes: str | None = None,
              out: str | Path | None = None, progress: bool = True,
              **settings) -> pd.DataFrame:
    """grubench.runner.run_suite on the nodes of the Ray cluster at ``address`` (a Ray
    address or ``local[:N]``): ``placement`` "spread" or "each", ``nodes`` a resource or
    label that selects nodes; ``suite`` and ``settings`` as grubench.runner.plan takes
    them. With ``out``, the report (:func:`write_report`)."""
    suite, chosen, notes = runner.plan(suite, **settings)
    with runner.holding(out):
        frame = run(suite, chosen, notes, address=address, placement=placement, nodes=nodes,
                    progress=progress)
        if out is not None:
            write_report(frame, out)
    return frame


def run(suite: suites.Suite, chosen: list[str], notes: list[str], *, address: str,
        placement: str = "spread", nodes: str | None = None,
        progress: bool | runner.Progress = True) -> pd.DataFrame:
    """Measure ``suite`` on the cluster at ``address``; one row per case and node that
    measured it (schema.COLUMNS); attrs as a local run's plus ``nodes`` (each node's
    context) and ``cluster``."""
    suites.check_names("placement", [placement], PLACEMENTS)
    ray = import_ray()
    started = time.monotonic()
    local = connect(ray, address)
    notes.append(f"Ray: {'started and ' if local else ''}connected to {address} in "
                 f"{time.monotonic() - started:.1f} s")
    try:
        return _run_connected(ray, suite, chosen, notes, address, placement, nodes, progress)
    finally:
        ray.shutdown()
        if local is not None:
            local.shutdown()


def _run_connected(ray, suite, chosen, notes, address, placement, label, progress):
    driver = machine.context()
    need_gpu = any(registry.get(name).device == "cuda" for name in chosen)
    nodes = eligible_nodes(ray, label, need_gpu)
    names = node_names(nodes)
    plugins = os.environ.get(PLUGINS_ENV)

    probe = ray.remote(_probe)
    refs = [probe.options(**_on(node, num_cpus=0, max_retries=0)).remote(name, plugins)
            for node, name in zip(nodes, names)]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
    if len(ready) < len(refs):
        silent = [name for name, ref in zip(names, refs) if ref not in ready]
        raise ClusterError(f"nodes {', '.join(silent)} did not answer within "
                           f"{PROBE_TIMEOUT_S:g} s")
    contexts = dict(zip(names, ray.get(refs)))
    refuse_mismatched(contexts, driver)

    cases = suite.cases()
    parts = ([cases] * len(nodes) if placement == "each"
             else split_cases(cases, min(len(nodes), len(cases))))
    actor = ray.remote(NodeRun)
    runs = {}                   # node name -> (its actor, the rows it will measure, in order)
    for node, name, part in zip(nodes, names, parts):
        whole = dict(num_cpus=node["Resources"].get("CPU", 0), resources={RESOURCE: 1},
                     num_gpus=node["Resources"].get("GPU", 0) if need_gpu else 0)
        runs[name] = (actor.options(**_on(node, **whole)).remote(name, plugins),
                      runner.row_order(suite, chosen, part))
    starts = {runs[name][0].start.remote(suite, chosen, part): name
              for name, part in zip(names, parts)}
    bar = progress if isinstance(progress, runner.Progress) else runner.Progress(
        sum(len(planned) for _, planned in runs.values()), enabled=progress)
    rows, interrupted = _collect(ray, runs, starts, suite, contexts, bar, notes)

    if placement == "spread":                # the local run's order
        order = {key: i for i, key in enumerate(runner.row_order(suite, chosen, cases))}
        measured = sorted((row for part in rows.values() for row in part),
                          key=lambda r: order[(r["threads"], _case_of(r), r["backend"])])
    else:
        measured = [row for part in rows.values() for row in part]
    notes.append(f"measured on {len(runs)} Ray node(s) ({placement}): {', '.join(rows)}")
    frame = runner.results_frame(measured, suite, driver, notes, interrupted)
    frame.attrs.update(nodes={machine.short_name(c): c for c in contexts.values()},
                       cluster=dict(address=address, placement=placement, label=label))
    return frame


def _on(node: dict, **options) -> dict:
    """Ray options that place a task or actor on this node and no other."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return dict(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
                **options)


def _collect(ray, runs: dict, calls: dict, suite, contexts: dict, bar, notes: list[str]):
    """Each node's rows as its actor measures them ({node name: rows}, interrupted).
    ``calls``: each actor's first call (start), by node name. An actor whose call fails
    (it raised, or its node died) gives crashed rows for the rest of its cases; Ctrl-C
    ends the actors and keeps the rows so far. Every actor is gone on return, so its node
    is free again."""
    rows: dict[str, list[dict]] = {name: [] for name in runs}
    try:
        while calls:
            ready, _ = ray.wait(list(calls), num_returns=1, timeout=1.0)
            for ref in ready:
                name = calls.pop(ref)
                actor, planned = runs[name]
                try:
                    item = ray.get(ref)
                except ray.exceptions.RayError as error:
                    for threads, case, backend in planned[len(rows[name]):]:
                        row = runner.case_row(backend, case, threads, suite, contexts[name])
                        row.update(status="crashed", reason=f"node {name} lost: {_short(error)}")
                        rows[name].append(row)
                        runner.show_progress(bar, row, f"{name} ")
                    continue
                if item is None:                    # that node is done
                    continue
                if "status" in item:
                    rows[name].append(item)
                    runner.show_progress(bar, item, f"{name} ")
                else:                               # start's answer: the node's context
                    contexts[name] = item
                calls[actor.next_row.remote()] = name
    except KeyboardInterrupt:
        notes.append(f"interrupted after {sum(map(len, rows.values()))} of {bar.total} cases")
        return rows, True
    finally:
        bar.finish()
        for actor, _ in runs.values():
            # its workers see their input close and exit after the call they are in
            ray.kill(actor)
    return rows, False


def _case_of(row: dict) -> Case:
    return Case.from_row(row)


def folder_name(node_machine: str) -> str:
    """A node's report folder under nodes/: its name, safe as a path."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", node_machine.split(" (")[0])


def write_report(frame: pd.DataFrame, out) -> None:
    """The combined report into ``out``; with the whole suite on several machines
    (placement each) also each node's own report in ``out/nodes/NAME`` (its context as
    the machine), the folders grubench compare reads."""
    report.write_report(frame, out)
    if frame.attrs.get("cluster", {}).get("placement") != "each":
        return
    for node_machine, part in frame.groupby("machine", sort=False):
        part = part.copy()
        part.attrs = dict(frame.attrs, machine=frame.attrs["nodes"].get(node_machine, {}))
        part.attrs.pop("nodes")
        report.write_report(part, Path(out) / "nodes" / folder_name(node_machine))
