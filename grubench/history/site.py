"""``grubench publish``: the results history as a static site (plain files: open
index.html, or serve the folder with ``python -m http.server``).

Plots are plotly figures (interactive: zoom, hover, click a point to open its run); the
plotly.js bundle is written once to ``assets/`` and every page loads it from there, so
the site works offline and fetches nothing from a CDN. Pages are jinja2 templates with
autoescaping on: every text that comes from results (backend names, case labels,
commits, machine names, notes) is escaped; figure data goes through plotly's JSON, which
escapes ``</`` inside scripts.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from grubench.files import write_atomic
from grubench.verdicts import COMPARED, compared_rows
from grubench.history.steps import find_steps

SECONDS_METRICS = ("median_s", "seconds_per_epoch")


def slug(case: str) -> str:
    """A file name for a case page: readable part plus a hash, unique per label."""
    readable = re.sub(r"[^a-z0-9]+", "-", case.lower()).strip("-")[:60]
    return f"{readable}-{hashlib.sha256(case.encode()).hexdigest()[:8]}"


def _ms(value) -> str:
    return "" if value is None or pd.isna(value) else f"{value * 1e3:.4g}"


def format_value(value, metric: str) -> str:
    if value is None or pd.isna(value):
        return "-"
    return f"{value * 1e3:.4g} ms" if metric in SECONDS_METRICS else f"{value:.4g}"


def sparkline(values, width: int = 120, height: int = 24) -> str:
    """Points of an SVG polyline drawing ``values`` (log scale) in a width x height box."""
    values = np.log([v for v in values if v and v > 0])
    if len(values) == 0:
        return ""
    # At least a 25% range top to bottom, so a flat series with 1% noise draws flat.
    low, high = float(values.min()), float(values.max())
    span = max(high - low, math.log(1.25))
    xs = np.linspace(2, width - 2, len(values)) if len(values) > 1 else [width / 2]
    ys = [height - 2 - (v - low) / span * (height - 4) for v in values]
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))


def _spread(row) -> str:
    """The raw samples' range, or the IQR for rows recorded before samples were kept."""
    if row["metric"] not in SECONDS_METRICS:
        return ""
    if row["samples"]:
        return f"{_ms(min(row['samples']))}-{_ms(max(row['samples']))} ms"
    iqr = json.loads(row["data_json"]).get("iqr_s")
    return f"IQR {_ms(iqr)} ms" if isinstance(iqr, (int, float)) else ""


def _samples(text):
    return json.loads(text) if isinstance(text, str) else None


def _environment():
    import jinja2
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("grubench.history", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined)
    environment.filters["value"] = format_value
    return environment


def _figure_html(figure, div_id: str) -> str:
    """A figure (a plotly Figure, or its plain dict: ten times faster to build for the
    hundred case pages) as a div and its script, plotly.js left to the page."""
    import plotly.io
    return plotly.io.to_html(figure, full_html=False, include_plotlyjs=False, div_id=div_id,
                             validate=False,
                             config={"displaylogo": False, "responsive": True})


def _commit_url(template: str | None, commit) -> str | None:
    if not template or not commit or pd.isna(commit):
        return None
    return template.format(commit=str(commit).split("+")[0])


class Site:
    """Builds every page of the site from a store frame (Store.frame) and its runs."""

    def __init__(self, frame: pd.DataFrame, runs: pd.DataFrame, out: Path,
                 commit_url: str | None = None, min_effect: float = 0.10):
        self.frame = frame.assign(samples=[_samples(t) for t in frame["samples_json"]])
        self.runs, self.out, self.commit_url = runs, Path(out), commit_url
        self.steps = find_steps(frame, min_effect=min_effect)
        self.env = _environment()
        self.written: list[Path] = []

    def write(self, name: str, template: str, **values) -> None:
        depth = name.count("/")
        html = self.env.get_template(template).render(
            root="../" * depth, nav=NAV, title=values.pop("title"),
            commit_url=lambda c: _commit_url(self.commit_url, c), **values)
        self.written.append(write_atomic(self.out / name, html))

    def build(self) -> list[Path]:
        import plotly.offline

        self.written.append(write_atomic(self.out / "assets/plotly.min.js",
                                         plotly.offline.get_plotlyjs()))
        source = Path(__file__).parent / "templates"
        for asset in ("site.css", "site.js"):
            self.written.append(write_atomic(self.out / "assets" / asset,
                                             (source / asset).read_text()))
        self.index()
        for case, rows in self.frame.groupby("case", sort=True):
            self.case_page(case, rows)
        for _, run in self.runs.iterrows():
            self.run_page(run)
        self.cells_page()
        self.heatmap_page()
        self.machines_page()
        return self.written

    # ------------------------------------------------------------------ pages

    def index(self) -> None:
        ok = self.frame[(self.frame["status"] == "ok") & self.frame["value"].notna()]
        flagged = {}
        for step in self.steps:
            flagged.setdefault(step.case, []).append(step)
        cases = []
        for case in sorted(self.frame["case"].unique()):
            series = []
            for (backend, machine, metric), points in ok[ok["case"] == case].groupby(
                    ["backend", "machine", "metric"], sort=True):
                series.append(dict(backend=backend, machine=machine, metric=metric,
                                   points=sparkline(points["value"]), runs=len(points),
                                   latest=points["value"].iloc[-1]))
            cases.append(dict(case=case, page=f"cases/{slug(case)}.html", series=series,
                              steps=flagged.get(case, [])))
        self.write("index.html", "index.html", title="grubench results history",
                   cases=cases, runs=len(self.runs), rows=len(self.frame),
                   machines=sorted(self.frame["machine"].dropna().unique()),
                   steps=self.steps)

    def case_page(self, case: str, rows: pd.DataFrame) -> None:
        ok = rows[(rows["status"] == "ok") & rows["value"].notna()]
        metric = rows["metric"].iloc[0]
        scale = 1e3 if metric in SECONDS_METRICS else 1.0
        traces = []
        for (machine, backend), points in ok.groupby(["machine", "backend"], sort=True):
            values = points["value"].to_numpy(float) * scale
            low = [v - min(s) * scale if s else 0 for v, s in zip(values, points["samples"])]
            high = [max(s) * scale - v if s else 0 for v, s in zip(values, points["samples"])]
            traces.append(dict(
                type="scatter", x=list(points["started_at"]), y=list(values),
                mode="lines+markers", name=f"{backend} · {machine}",
                error_y=dict(type="data", array=high, arrayminus=low, visible=True,
                             thickness=1),
                customdata=[[f"../runs/{r}.html", str(c)] for r, c in
                            zip(points["run_id"], points["commit"])],
                hovertemplate="%{y:.4g} at %{customdata[1]}<br>%{x}<extra>%{fullData.name}"
                              "</extra>"))
        steps = [s for s in self.steps if s.case == case]
        shapes, notes = [], []
        for step in steps:
            moment = ok.loc[ok["run_id"] == step.run_id, "started_at"].iloc[0]
            shapes.append(dict(type="line", x0=moment, x1=moment, y0=0, y1=1, yref="paper",
                               line=dict(dash="dash", color="crimson")))
            notes.append(dict(x=moment, y=1, yref="paper", showarrow=False,
                              text=f"step {step.change:+.0%}", font=dict(color="crimson")))
        unit = "ms" if scale == 1e3 else metric
        layout = dict(xaxis=dict(title=dict(text="run (time of the run; hover: commit)")),
                      yaxis=dict(type="log", title=dict(
                          text=f"{metric} ({unit}), whiskers: raw samples min-max")),
                      height=480, margin=dict(t=30), shapes=shapes, annotations=notes,
                      legend=dict(orientation="h", y=-0.25))
        figure = dict(data=traces, layout=layout)
        points = [dict(run_id=r["run_id"], commit=r["commit"], started_at=r["started_at"],
                       machine=r["machine"], backend=r["backend"], status=r["status"],
                       value=r["value"], metric=r["metric"],
                       samples=len(r["samples"]) if r["samples"] else 0,
                       spread=_spread(r))
                  for _, r in rows.iterrows()]
        self.write(f"cases/{slug(case)}.html", "case.html", title=case, case=case,
                   plot=_figure_html(figure, "trend"), steps=steps, points=points)

    def run_page(self, run) -> None:
        rows = self.frame[self.frame["run_id"] == run["id"]]
        context = json.loads(run["context_json"])
        self.write(f"runs/{run['id']}.html", "run.html", title=f"run {run['id']}", run=run,
                   context=context, versions=context.get("versions") or {},
                   notes=json.loads(run["notes_json"]),
                   rows=[dict(r, page=f"../cases/{slug(r['case'])}.html")
                         for _, r in rows.iterrows()])

    def _latest(self) -> pd.DataFrame:
        """The newest measured row of every (case, backend, machine) of benchmark runs."""
        ok = self.frame[(self.frame["kind"] == "run") & (self.frame["status"] == "ok")
                        & self.frame["value"].notna()]
        return ok.groupby(["case", "backend", "machine"], sort=False).tail(1)

    def cells_page(self) -> None:
        import plotly.graph_objects as go

        latest = self._latest()
        data = [json.loads(t) for t in latest["data_json"]]
        latest = compared_rows(latest.assign(
            size=[f"{r['T']},{r['B']},{r['I']},{r['H']}" for r in data],
            variant=[r["variant"] for r in data]))
        table = latest.pivot_table(index=["machine", "backend", "mode", "size", "dtype",
                                          "threads"], columns="cell", values="value",
                                   aggfunc="min")
        pairs = []
        figure = go.Figure()
        gru, lstm = COMPARED
        if set(COMPARED) <= set(table.columns):
            table = table.dropna(subset=list(COMPARED))
            labels = [" ".join(map(str, key[1:4])) for key in table.index]
            for name in COMPARED:
                figure.add_trace(go.Bar(x=labels, y=table[name] * 1e3, name=name.upper()))
            figure.update_layout(barmode="group", yaxis_type="log",
                                 yaxis_title="median ms (newest run)", height=460)
            pairs = [dict(zip(table.index.names, key), gru=row[gru], lstm=row[lstm],
                          ratio=row[lstm] / row[gru]) for key, row in table.iterrows()]
        self.write("gru-vs-lstm.html", "table_page.html", title="GRU vs LSTM",
                   plot=_figure_html(figure, "cells") if pairs else "",
                   empty="no case was measured with both GRU (reset_after) and LSTM",
                   columns=["machine", "backend", "mode", "size", "dtype", "threads",
                            "GRU ms", "LSTM ms", "LSTM / GRU"],
                   rows=[[p["machine"], p["backend"], p["mode"], p["size"], p["dtype"],
                          p["threads"], _ms(p["gru"]), _ms(p["lstm"]), f"{p['ratio']:.2f}"]
                         for p in pairs])

    def heatmap_page(self) -> None:
        import plotly.graph_objects as go

        latest = self._latest()
        latest = latest.assign(speedup=[json.loads(t).get("speedup") for t in
                                        latest["data_json"]]).dropna(subset=["speedup"])
        plots = []
        for number, (machine, rows) in enumerate(latest.groupby("machine", sort=True)):
            grid = rows.pivot_table(index="backend", columns="case", values="speedup",
                                    aggfunc="min")
            figure = go.Figure(go.Heatmap(
                z=np.log2(grid.to_numpy(float)), x=list(grid.columns), y=list(grid.index),
                text=[[f"{v:.2g}x" if not pd.isna(v) else "" for v in line]
                      for line in grid.to_numpy(float)],
                texttemplate="%{text}", colorscale="RdYlGn", zmid=0,
                colorbar=dict(title="log2 speedup")))
            figure.update_layout(title=f"{machine}: speedup vs the baseline backend "
                                       f"(baseline median / median, newest run)",
                                 height=260 + 40 * len(grid), xaxis_tickangle=45)
            plots.append(_figure_html(figure, f"heatmap-{number}"))
        self.write("heatmap.html", "table_page.html", title="Speedup heatmap",
                   plot="".join(plots), empty="no speedups recorded (no baseline backend "
                                              "in any run)", columns=[], rows=[])

    def machines_page(self) -> None:
        import plotly.graph_objects as go

        latest = self._latest()
        machines = sorted(latest["machine"].unique())
        table = latest.pivot_table(index=["case", "backend"], columns="machine",
                                   values="value", aggfunc="min")
        shared = table.dropna() if len(machines) > 1 else table.iloc[0:0]
        figure = go.Figure()
        for machine in machines if len(shared) else []:
            figure.add_trace(go.Bar(x=[" ".join(k) for k in shared.index],
                                    y=shared[machine] * 1e3, name=machine))
        figure.update_layout(barmode="group", yaxis_type="log", height=480,
                             yaxis_title="median ms (newest run)")
        contexts = {}
        for _, run in self.runs.iterrows():
            contexts[run["machine"]] = json.loads(run["context_json"])
        self.write("machines.html", "machines.html", title="Machines",
                   plot=_figure_html(figure, "machines") if len(shared) else "",
                   machines=machines, contexts=contexts,
                   rows=[dict(case=k[0], backend=k[1], values=[_ms(row[m]) for m in machines])
                         for k, row in shared.iterrows()])


NAV = (("index.html", "Cases"), ("gru-vs-lstm.html", "GRU vs LSTM"),
       ("heatmap.html", "Speedup heatmap"), ("machines.html", "Machines"))


def publish(store, out: str | Path, commit_url: str | None = None,
            min_effect: float = 0.10) -> list[Path]:
    """Write the site for everything in ``store`` into ``out``; the files written."""
    frame = store.frame()
    if frame.empty:
        raise ValueError("the history database holds no runs: record a run or "
                         "`grubench history import reports/` first")
    return Site(frame, store.list_runs(), Path(out), commit_url, min_effect).build()
