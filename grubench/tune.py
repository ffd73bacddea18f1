"""``grubench tune``: measure, for a suite's cases, which code path of each tunable backend
is fastest on this machine, and keep the choice (grubench.tuning).

Each backend and thread count gets a worker pinned as a run's would be (so a choice is
made under the threads it serves); the worker times every candidate on the case's own
arrays and stores the winner in this machine's tuning cache. Runs read it from then on.
"""
from __future__ import annotations

import math

from grubench import backends, suites, tuning
from grubench.case import Case
from grubench.tables import Table, render_text
from grubench.worker import Worker, WorkerFailed


def run_request(backend, request: dict, _state: dict) -> dict:
    """In a worker: tune ``backend`` for the request's case (every size: the first-use
    budget does not apply), measuring afresh with ``force``; the stored choices back."""
    cache = tuning.machine_cache()
    if cache is None:
        raise ValueError(f"tuning is off ({tuning.DIR_ENV}=off)")
    case = Case.from_row(request["case"])
    args = case.make_args(request["seed"])
    key = tuning.case_key(args)
    options = backend.tunable(args)
    if request.get("force"):
        for option in options:
            cache.forget(backend.name, option, key)
    backend.tuned(args, measure_flops=math.inf)
    return dict(status="ok", key=key, cache=str(cache.path),
                choices={option: cache.get(backend.name, option, key).as_dict()
                         for option in options})


def tune(suite: suites.Suite, chosen: list[str], force: bool, log_dir) -> list[dict]:
    """Tune every case of ``suite`` on each tunable backend of ``chosen``; one row per
    backend, threads, case and option."""
    rows = []
    for name in chosen:
        for threads in suite.threads:
            worker = Worker(name, threads, log_dir / f"tune-{name}-{threads}.log",
                            suite.case_timeout)
            try:
                if not worker.hello["available"]:
                    continue
                # a network's calls are one-layer calls, each taking its own tuned choice
                for case in (c for c in suite.cases() if not c.is_network):
                    reply = worker.request(dict(kind="tune", case=case.as_row(),
                                                seed=suite.seed, force=force),
                                           suite.case_timeout)
                    for option, choice in reply["choices"].items():
                        rows.append(dict(backend=name, threads=threads, key=reply["key"],
                                         option=option, cache=reply["cache"], **choice))
            finally:
                worker.close(kill=True)
    return rows


def render(rows: list[dict]) -> str:
    if not rows:
        return "nothing to tune: no chosen backend has a tunable option for these cases"
    table = Table("tuned on this machine (median seconds per candidate; * chosen)",
                  ["backend", "case", "option", "choice", "candidates"],
                  [[r["backend"], r["key"], r["option"], r["value"],
                    "  ".join(f"{v}{'*' if v == r['value'] else ''} {s * 1e3:.3g} ms"
                              for v, s in r["seconds"].items())] for r in rows], left=4)
    return render_text(table) + f"\nstored in {rows[0]['cache']}\n"


def handle(args) -> int:
    import tempfile
    from pathlib import Path

    from grubench.commands import isa_restricted

    backends.load_plugins()
    suite = suites.get(args.suite)
    if args.threads:
        suite = suite.with_overrides(threads=tuple(args.threads))
    names = args.backends or [n for n in backends.names()
                              if backends.get(n).device == "cpu"]
    suites.check_names("backend", names, backends.names())
    tunable = [n for n in names if backends.get(n).tunes]
    if not tuning.enabled():
        raise ValueError(f"tuning is off ({tuning.DIR_ENV}=off)")
    with isa_restricted(args), tempfile.TemporaryDirectory(prefix="grubench-tune-") as scratch:
        print(render(tune(suite, tunable, args.force, Path(scratch))))
    return 0


def add_subcommand(subparsers) -> None:
    from grubench.commands import _comma_list, _positive, add_isa_option
    from grubench.threads import cpu_count

    parser = subparsers.add_parser(
        "tune", help="measure which code path of each backend is fastest here, and keep it",
        description="For every case of a suite, time each tunable backend's candidates "
                    "(numba-cpu: its own tiles or MKL's packed GEMM for the per-step "
                    "products) on this machine and store the winner in the per-machine "
                    f"tuning cache ({tuning.DIR_ENV}, default ~/.cache/grubench), which "
                    "every later run reads. Runs also tune small cases on first use.")
    parser.add_argument("--suite", default="default", metavar="NAME",
                        help="the cases to tune (default: default)")
    parser.add_argument("--backends", type=_comma_list("backend"), metavar="A,B",
                        help="default: every CPU backend with a tunable option")
    parser.add_argument("--threads", nargs="+", metavar="N",
                        type=_positive(int, cpu_count(), " (this machine's CPUs)"),
                        help="thread counts to tune for (default: the suite's)")
    parser.add_argument("--force", action="store_true",
                        help="measure again, even cases already tuned")
    add_isa_option(parser)
    parser.set_defaults(handler=handle)
