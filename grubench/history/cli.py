"""``grubench history`` (import, trend, steps) and ``grubench publish`` (the static site)."""
from __future__ import annotations

import argparse
import re
import sys
import time

from grubench.tables import Table, render_text

DEFAULT_PLOT = "reports/latest/history.html"
DEFAULT_SITE = "site"


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 10:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction > 0, e.g. 0.1 for 10%")
    return value


def _since(text: str) -> str:
    import datetime
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date (YYYY-MM-DD or "
                                         f"YYYY-MM-DDTHH:MM)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")


def _db_option(parser) -> None:
    parser.add_argument("--db", metavar="URL",
                        help="SQLAlchemy URL or SQLite file of the history (default: "
                             "$GRUBENCH_DB, else history.sqlite in the user data directory)")


def _open(args, write: bool):
    from grubench.history.store import Store, database_url

    url = database_url(args.db)
    if url is None:
        raise ValueError("the history database is off (GRUBENCH_DB=off): name one with --db")
    return Store(url, write=write)


def add_subcommand(subparsers) -> None:
    history = subparsers.add_parser(
        "history", help="import runs; trends and steps of cases over commits",
        description="`grubench history import PATH...` stores report files (results.json, "
                    "training.json, regress baselines; folders are searched) in the "
                    "history database. `grubench history [CASE]` prints each matching "
                    "case's trend over runs per machine and backend and writes a plot; "
                    "--steps lists the steps found in those series.")
    history.add_argument("words", nargs="*", metavar="import PATH... | CASE",
                         help="'import' and report paths, or a case filter: a substring "
                              "of the case label (e.g. 'gru reset_after training') or a "
                              "glob with *")
    _db_option(history)
    history.add_argument("--since", type=_since, metavar="DATE",
                         help="only runs from this ISO date/time (UTC) on")
    history.add_argument("--machine", metavar="TEXT",
                         help="only machines whose name contains TEXT")
    history.add_argument("--backend", metavar="NAME", help="only this backend")
    history.add_argument("--steps", action="store_true",
                         help="list the steps (change points) instead of the trend")
    history.add_argument("--min-effect", type=_fraction, default=0.10, metavar="F",
                         help="smallest step reported, as a fraction (default 0.10 = 10%%)")
    history.add_argument("--plot", default=DEFAULT_PLOT, metavar="FILE",
                         help=f"the trend plot, an HTML file (default {DEFAULT_PLOT}; "
                              f"'-' for none)")
    history.set_defaults(handler=handle_history)

    publish = subparsers.add_parser(
        "publish", help="write the results history as a static site",
        description="Write the history as a static site: an index of cases with "
                    "sparklines and steps, a page per case, GRU vs LSTM, the speedup "
                    "heatmap and the machine comparison. Open index.html, or serve the "
                    "folder with `python -m http.server`; nothing is fetched from a CDN.")
    publish.add_argument("--out", default=DEFAULT_SITE, metavar="DIR",
                         help=f"site folder (default {DEFAULT_SITE}/)")
    _db_option(publish)
    publish.add_argument("--commit-url", metavar="TEMPLATE",
                         help="link commits, e.g. https://github.com/ORG/grubench/commit/"
                              "{commit} (default: from the checkout's origin remote; "
                              "without one, commits are not linked, runs are)")
    publish.add_argument("--min-effect", type=_fraction, default=0.10, metavar="F",
                         help="smallest step flagged (default 0.10 = 10%%)")
    publish.set_defaults(handler=handle_publish)


def handle_history(args) -> int:
    if args.words[:1] == ["import"]:
        return handle_import(args, args.words[1:])
    if len(args.words) > 1:
        raise ValueError(f"one case filter expected, got {len(args.words)} words: quote "
                         f"it, e.g. grubench history \"{' '.join(args.words)}\"")
    store = _open(args, write=False)
    try:
        frame = store.frame(case=args.words[0] if args.words else None, since=args.since,
                            machine=args.machine, backend=args.backend)
    finally:
        store.close()
    if frame.empty:
        print("grubench: no history rows match these filters", file=sys.stderr)
        return 1
    if args.steps:
        from grubench.history.steps import find_steps
        print(render_steps(find_steps(frame, min_effect=args.min_effect), args.min_effect))
        return 0
    print(render_trend(frame))
    if args.plot != "-":
        path = write_trend_plot(frame, args.plot)
        print(f"\nplot: {path}")
    return 0


def handle_import(args, paths) -> int:
    from grubench.history import documents

    if not paths:
        raise ValueError("history import needs at least one results.json or folder")
    started = time.perf_counter()
    runs = [documents.read(path) for path in documents.find(paths)]  # all valid, then store
    store = _open(args, write=True)
    try:
        added = sum(store.add(run) for run in runs)
        total_runs, total_rows = store.counts()
    finally:
        store.close()
    print(f"imported {added} new run(s) of {len(runs)} file(s) "
          f"({len(runs) - added} already stored) in {time.perf_counter() - started:.2f} s; "
          f"the history holds {total_runs} runs, {total_rows} rows")
    return 0


def commit_url_of(remote: str | None) -> str | None:
    """The commit link template of a GitHub/GitLab-style remote (https or ssh form)."""
    match = re.fullmatch(r"(?:https://(?:[^@/]+@)?|ssh://git@|git@)([^/:]+)[/:](.+?)"
                         r"(?:\.git)?/?", (remote or "").strip())
    return f"https://{match[1]}/{match[2]}/commit/{{commit}}" if match else None


def handle_publish(args) -> int:
    from pathlib import Path

    from grubench.files import check_writable_dir
    from grubench.history.site import publish
    from grubench.machine import _run

    check_writable_dir(args.out)
    commit_url = args.commit_url or commit_url_of(
        _run(["git", "remote", "get-url", "origin"], cwd=Path(__file__).resolve().parents[2]))
    started = time.perf_counter()
    store = _open(args, write=False)
    try:
        written = publish(store, args.out, commit_url, args.min_effect)
    finally:
        store.close()
    print(f"site: {args.out}/index.html ({len(written)} files, "
          f"{time.perf_counter() - started:.1f} s); serve it with "
          f"`python -m http.server -d {args.out}` or open the file")
    return 0


def render_trend(frame) -> str:
    """One table per (case, machine): runs as rows, backends as columns."""
    from grubench.history.site import format_value

    blocks = []
    for (case, machine, metric), part in frame.groupby(["case", "machine", "metric"],
                                                       sort=True):
        backends = sorted(part["backend"].unique())
        rows = []
        for (run_id, commit, started), run in part.groupby(
                ["run_id", "commit", "started_at"], sort=False, dropna=False):
            values = {r["backend"]: (format_value(r["value"], metric) if r["status"] == "ok"
                                     else r["status"]) for _, r in run.iterrows()}
            rows.append([str(commit), str(started)[:16], str(run_id),
                         *[values.get(b, "") for b in backends]])
        blocks.append(render_text(Table(f"{case} · {machine} · {metric}",
                                        ["commit", "time (UTC)", "run", *backends], rows)))
    return "\n\n".join(blocks)


def render_steps(steps, min_effect: float) -> str:
    from grubench.history.site import format_value

    if not steps:
        return f"no steps of {min_effect:.0%} or more"
    rows = [[str(s.commit), str(s.previous_commit), s.case, s.backend, s.machine,
             f"{format_value(s.before, s.metric)} -> {format_value(s.after, s.metric)}",
             f"{s.change:+.1%}"] for s in steps]
    return render_text(Table(f"steps of {min_effect:.0%} or more",
                             ["commit", "after", "case", "backend", "machine",
                              "before -> after", "size"], rows))


def write_trend_plot(frame, path):
    """The trend as one interactive HTML file (plotly.js inside it: works offline)."""
    import plotly.graph_objects as go

    from grubench.files import write_atomic

    figure = go.Figure()
    ok = frame[(frame["status"] == "ok") & frame["value"].notna()]
    for (case, backend, machine), points in ok.groupby(["case", "backend", "machine"]):
        figure.add_trace(go.Scatter(x=points["started_at"], y=points["value"],
                                    mode="lines+markers", text=points["commit"],
                                    name=f"{case} · {backend} · {machine}",
                                    hovertemplate="%{y:.4g} at %{text}<br>%{x}"))
    figure.update_layout(yaxis_type="log", yaxis_title="value (s for times)",
                         xaxis_title="run time", height=600)
    return write_atomic(path, figure.to_html(include_plotlyjs=True, full_html=True))
