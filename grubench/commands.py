"""grubench's own commands: run, compare-cells, list, show (see grubench.cli for the hook).

Heavy modules (pandas, the runner) are imported inside the handlers so ``--help`` is fast.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time

from grubench import history, isa, suites, tuning, worker
from grubench.case import LENGTHS, network_parts
from grubench.threads import cpu_count

DEFAULT_OUT = "reports/latest"


def _comma_list(kind: str, valid=None):
    """An argparse type: 'a,b' -> ('a', 'b'), checked against ``valid`` when given."""
    def parse(text: str):
        items = tuple(item.strip() for item in text.split(",") if item.strip())
        if not items:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind} names")
        repeated = sorted({item for item in items if items.count(item) > 1})
        if repeated:
            raise argparse.ArgumentTypeError(f"{kind} {', '.join(map(repr, repeated))} "
                                             f"given more than once")
        if valid is not None:
            try:
                suites.check_names(kind, items, valid)
            except ValueError as error:
                raise argparse.ArgumentTypeError(str(error)) from None
        return items
    return parse


def _size(text: str):
    try:
        return suites.parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(kind, most: float | None = None, why: str = ""):
    """An argparse type: a number > 0 (and <= ``most``, for the reason ``why``)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
        if most is not None and not value <= most:
            raise argparse.ArgumentTypeError(f"{text!r} must be <= {most:g}{why}")
        return value
    return parse


def _one_of(kind: str, valid):
    """An argparse type: one of ``valid`` names, or an error naming them."""
    def parse(text: str):
        try:
            return suites.check_names(kind, [text], valid)[0]
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return parse


def _both(choices):
    """'both' -> every choice, else the one named."""
    return lambda value: tuple(choices) if value in (None, "both") else (value,)


def add_case_options(parser: argparse.ArgumentParser, cells: bool = True,
                     out: str = DEFAULT_OUT) -> None:
    """The options run and compare-cells share: which cases, how long, where to."""
    parser.add_argument("--suite", default="default", metavar="NAME",
                        help=f"one of {', '.join(suites.names())}, or a .toml suite file "
                             f"(default: default)")
    parser.add_argument("--scale", type=_positive(float), default=1.0,
                        help="multiply T by this (deepbench on a CPU: e.g. 0.01)")
    parser.add_argument("--backends", type=_comma_list("backend"), metavar="A,B",
                        help="backends to run (default: every available one on the "
                             "suite's device; see `grubench list`)")
    if cells:
        parser.add_argument("--cells", type=_comma_list("cell", suites.CELLS),
                            metavar="gru,lstm", help="cells to run (default: the suite's)")
    parser.add_argument("--variant", choices=(*suites.VARIANTS, "both"),
                        help="GRU variant(s) (default: the suite's)")
    parser.add_argument("--mode", choices=(*suites.MODES, "both"),
                        help="inference, training or both (default: the suite's)")
    parser.add_argument("--size", type=_size, action="append", metavar="T,B,I,H",
                        help="a problem size; repeat for several; replaces the suite's")
    parser.add_argument("--dtype", choices=suites.DTYPES, help="default: the suite's")
    parser.add_argument("--layers", type=_positive(int), metavar="N",
                        help="stacked layers, as torch.nn.GRU's num_layers (default: the "
                             "suite's, 1)")
    parser.add_argument("--bidirectional", action="store_true",
                        help="two directions per layer (default: the suite's, one)")
    parser.add_argument("--lengths", type=_one_of("lengths", LENGTHS),
                        metavar="|".join(LENGTHS),
                        help="how sequence lengths are drawn: full (all T), uniform in "
                             "[T/2, T], sorted (uniform, longest first), short-tail (a "
                             "quarter of the batch at most T/4 long), any (uniform in "
                             "[0, T]) (default: the suite's)")
    parser.add_argument("--threads", nargs="+", metavar="N",
                        type=_positive(int, cpu_count(), " (this machine's CPUs; more only "
                                                         "measures oversubscription)"),
                        help="thread counts, one worker each (default: the suite's)")
    parser.add_argument("--min-runs", type=_positive(int), metavar="N",
                        help="at least N timed runs per case")
    parser.add_argument("--min-time", type=_positive(float, 3600), metavar="S",
                        help="at least S seconds of timed runs per case")
    parser.add_argument("--timeout", type=_positive(float, 86400), metavar="S",
                        help="seconds a case may take before its worker is killed; the "
                             "case's float64 reference, computed apart, has the same bound")
    parser.add_argument("--baseline", metavar="BACKEND",
                        help="speedups are against this backend (default: the suite's, "
                             "torch-cpu; torch-cuda for gpu)")
    parser.add_argument("--out", default=out, metavar="DIR",
                        help=f"report folder (default: {out})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_isa_option(parser)
    history.add_option(parser)


def add_isa_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--isa", choices=isa.ISAS, default=isa.NATIVE,
                        help="run every backend's code paths for this x86 ISA level (numba's "
                             "target, OpenBLAS, MKL, oneDNN, ATen, XLA), e.g. avx2 on an "
                             "AVX-512 machine: what an AVX2 machine runs, timed on this core "
                             "(default: native)")


@contextlib.contextmanager
def isa_restricted(args):
    """Restrict the workers started inside to ``--isa``: they inherit this process's
    environment, which is set for the block and put back after it (each library reads its
    variable when it loads, in the worker)."""
    chosen = getattr(args, "isa", isa.NATIVE)
    if chosen == isa.NATIVE:
        yield
        return
    if getattr(args, "cluster", None):
        raise ValueError("--isa restricts this machine's workers; it cannot be combined "
                         "with --cluster")
    with worker.inherited_env(isa.worker_env(chosen)):
        yield


def _run(args, cells=None, write: bool = True):
    from grubench import backends

    on_cluster = _cluster_options(args)
    if on_cluster:
        from grubench.cluster import run_suite      # imports Ray: only when asked for
    else:
        from grubench.runner import run_suite
    if args.baseline is not None:
        suites.check_names("baseline backend", [args.baseline], backends.names())
    started = time.monotonic()
    with isa_restricted(args):
        frame = run_suite(
            args.suite, backends=args.backends, cells=cells or args.cells,
            variants=None if args.variant is None else _both(suites.VARIANTS)(args.variant),
            modes=None if args.mode is None else _both(suites.MODES)(args.mode),
            sizes=args.size, dtype=args.dtype, threads=args.threads, min_runs=args.min_runs,
            min_time=args.min_time, baseline=args.baseline, scale=args.scale,
            out=args.out if write else None,
            progress=not args.no_progress, case_timeout=args.timeout,
            layers=args.layers, directions=2 if args.bidirectional else None,
            lengths=args.lengths, **on_cluster)
    return frame, time.monotonic() - started


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """run's options for measuring on a Ray cluster (grubench.cluster)."""
    group = parser.add_argument_group(
        "on a Ray cluster", "measure on the nodes of a Ray cluster instead (needs the "
                            "cluster extra; see README)")
    group.add_argument("--cluster", metavar="ADDRESS",
                       help="a Ray address (auto, HOST:PORT, ray://HOST:10001) or local[:N] "
                            "(a local Ray instance with N simulated nodes, for trying)")
    placement = group.add_mutually_exclusive_group()
    placement.add_argument("--spread", dest="placement", action="store_const",
                           const="spread", help="divide the cases among the nodes (default)")
    placement.add_argument("--each", dest="placement", action="store_const", const="each",
                           help="the whole suite on every node, plus a machine-vs-machine "
                                "table and each node's results under OUT/nodes/")
    group.add_argument("--nodes", metavar="LABEL",
                       help="only nodes with this Ray custom resource or label (KEY or "
                            "KEY=VALUE)")


def _cluster_options(args) -> dict:
    """grubench.cluster.run_suite's arguments from the command line (none without
    --cluster, and for compare-cells)."""
    address = getattr(args, "cluster", None)
    if address is None:
        if getattr(args, "placement", None) or getattr(args, "nodes", None):
            raise ValueError("--spread, --each and --nodes need --cluster ADDRESS")
        return {}
    return dict(address=address, placement=args.placement or "spread", nodes=args.nodes)


def _finish(frame, seconds: float, out: str) -> int:
    if frame.attrs.get("report_error"):
        print(f"grubench: error: {frame.attrs['report_error']} (files already there are "
              f"left whole)", file=sys.stderr)
        return 1
    print(f"\n{len(frame)} cases in {seconds:.1f} s; report: {out}/report.md "
          f"(results.json, results.csv, plots)")
    if frame.empty and not frame.attrs.get("interrupted"):
        print("grubench: nothing was measured: no selected backend is available here "
              "(see the notes above)", file=sys.stderr)
        return 1
    if not frame.attrs.get("interrupted") and not (frame["status"] == "ok").any():
        counts = frame["status"].value_counts().to_dict()
        print("grubench: nothing was measured: every case ended "
              + ", ".join(f"{status} ({n})" for status, n in counts.items())
              + " (reasons in the tables above)", file=sys.stderr)
        return 1
    if frame.attrs.get("interrupted"):
        print("interrupted: the cases measured so far are kept", file=sys.stderr)
        return frame.attrs.get("exit_code") or 130
    if frame.attrs.get("exit_code"):        # a signal while the report was written
        print("stopped by a signal after every case was measured and the report written",
              file=sys.stderr)
        return frame.attrs["exit_code"]
    return 0


def handle_run(args) -> int:
    from grubench import report

    frame, seconds = _run(args)
    print(report.render_report(frame))
    history.record(f"{args.out}/results.json", args)
    return _finish(frame, seconds, args.out)


def handle_compare_cells(args) -> int:
    from grubench import report, verdicts
    from grubench.files import check_writable_dir

    # Bad training files and an unwritable folder fail now, not after the measurements.
    training = verdicts.load_training(args.training or [])
    check_writable_dir(args.out)
    frame, seconds = _run(args, cells=verdicts.COMPARED, write=False)
    frame.attrs["training"] = training
    report.write_report(frame, args.out)
    print(report.render_report(frame, metrics=("time",)))
    print()
    print(report.cell_sections(frame))
    history.record(f"{args.out}/results.json", args)
    return _finish(frame, seconds, args.out)


def handle_list(args) -> int:
    from grubench import backends

    backends.load_plugins()
    print("backends:")
    width = max(len(n) for n in backends.names())
    for name in backends.names():
        backend = backends.get(name)
        state = "available" if backend.available else f"unavailable: {backend.why_unavailable}"
        if backend.entry.unsupported:
            state += f"; does not run: {', '.join(backend.entry.unsupported)}"
        if backend.tunes:
            cache = tuning.machine_cache()
            state += ("; tuning off" if cache is None else
                      f"; tuned here: {cache.count(name)} case(s), see `grubench tune`")
        print(f"  {name:<{width}}  [{backend.device}] {backend.description} ({state})")
    print("\nsuites:")
    for name in suites.names():
        suite = suites.get(name)
        print(f"  {name}: {suite.description}; {len(suite.cases())} cases per backend, "
              f"threads {list(suite.threads)}, baseline {suite.baseline}")
        for group in suite.all_groups():
            sizes = " ".join(",".join(map(str, s)) for s in group.sizes[:8])
            more = f" ... ({len(group.sizes)} sizes)" if len(group.sizes) > 8 else ""
            network = "".join(f", {part}" for part in network_parts(
                group.layers, group.directions, group.lengths))
            print(f"      {'/'.join(group.cells)} {'/'.join(group.modes)}{network}: "
                  f"{sizes}{more}")
    print("  or a .toml file: see `python -m grubench run --help` and grubench/suites.py")
    return 0


def handle_show(args) -> int:
    from grubench import report

    frame = report.load_results(args.path)
    metrics = args.metrics or ("time", "memory", "accuracy")
    print(report.render_report(frame, metrics=metrics))
    cells = report.cell_sections(frame)
    if cells:
        print()
        print(cells)
    return 0


def add_subcommand(subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="measure a suite (the default command)",
        description="Measure speed, memory and accuracy of every case of a suite on the "
                    "selected backends, print the tables and write the report folder.")
    add_case_options(run)
    add_cluster_options(run)
    run.set_defaults(handler=handle_run)

    compare = subparsers.add_parser(
        "compare-cells", help="GRU against LSTM on the same sizes and backends",
        description="Run GRU and LSTM on the same sizes and backends, print them side "
                    "by side (parameters, inference and training time, memory, accuracy) "
                    "and say, per backend, whether the usual claims (GRU: fewer "
                    "parameters, faster, less memory) hold here.")
    add_case_options(compare, cells=False, out=f"{DEFAULT_OUT}/compare-cells")
    compare.add_argument("--training", action="append", metavar="PATH",
                         help="a `grubench train` training.json (or its folder) whose GRU "
                              "and LSTM runs are judged too: time per epoch and test "
                              "accuracy per dataset; repeat for runs with other seeds")
    # Twice the suites' 5 runs: the verdicts test GRU's times against LSTM's.
    compare.set_defaults(handler=handle_compare_cells, min_runs=10)

    listing = subparsers.add_parser(
        "list", help="backends (with availability) and suites (with sizes)",
        description="List the registered backends with their availability and the suites "
                    "with their sizes.")
    listing.set_defaults(handler=handle_list)

    show = subparsers.add_parser(
        "show", help="print the tables of an earlier results.json",
        description="Re-render the tables of an earlier run from its results.json (or "
                    "its report folder).")
    show.add_argument("path", help="results.json or the folder holding it")
    show.add_argument("--metrics", type=_comma_list("metric", ("time", "compile", "gflops",
                                                               "memory", "accuracy")),
                      metavar="M,N", help="tables to print: time, compile, gflops, memory, "
                                          "accuracy (default: time,memory,accuracy)")
    show.set_defaults(handler=handle_show)
