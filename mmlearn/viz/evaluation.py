"""Figures of notebook 06 (evaluation, survey Sec. X): numbers in, ``go.Figure`` out.

- :func:`report_card_figure`: a metric per condition, grouped bars, one trace per model
  (optional bootstrap error bars); :func:`report_card_traces` gives the same values for a panel
  that updates its traces in place;
- :func:`report_radar_figure`: the same numbers on a radar, one closed line per model;
- :func:`robustness_curves_figure`: accuracy vs corruption level, one curve per model (and per task);
- :func:`metric_heatmap_figure`: a labelled table of numbers (MM-BigBench's metrics) as a heatmap.

Every figure is 840 px wide (the JupyterLab output area with the file browser open measured 848 px), with
its legend under the plot and named traces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from .core import LAYOUT, PALETTE, json_safe_z

#: widest figure of this module, in pixels
MAX_WIDTH = 840
METRIC_LABELS = {"accuracy": "accuracy", "macro_f1": "macro-F1"}


def _layout(**extra) -> dict:
    out = {**LAYOUT, "width": MAX_WIDTH, "margin": dict(l=60, r=20, t=60, b=110)}
    out["legend"] = dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0.0)
    out.update(extra)
    return out


def model_color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _select(table, models, conditions, task):
    if task is None:
        tasks = list(dict.fromkeys(table["task"])) if "task" in table else [None]
        task = tasks[0]
    if task is not None and "task" in table:
        table = table[table["task"] == task]
    models = list(dict.fromkeys(table["model"])) if models is None else list(models)
    conditions = list(dict.fromkeys(table["condition"])) if conditions is None else list(conditions)
    return table, models, conditions, task


def report_card_traces(table, metric: str = "accuracy", models: Sequence[str] | None = None,
                       conditions: Sequence[str] | None = None, task: str | None = None) -> list[dict]:
    """``[{"name", "x", "y"}]``: one entry per model, ``x`` the conditions and ``y`` the metric.

    ``table``: :attr:`mmlearn.evaluation.ReportCard.table`; ``task``: default the first task.
    """
    if metric not in table:
        raise ValueError(f"unknown metric {metric!r}; the table has {list(table.columns)}")
    table, models, conditions, _ = _select(table, models, conditions, task)
    pivot = table.set_index(["model", "condition"])[metric]
    out = []
    for m in models:
        ys = []
        for c in conditions:
            if (m, c) not in pivot.index:
                raise ValueError(f"the table has no row for model {m!r} under condition {c!r}")
            ys.append(float(pivot.loc[(m, c)]))
        out.append({"name": m, "x": list(conditions), "y": ys})
    return out


def report_card_figure(
    table,
    metric: str = "accuracy",
    *,
    models: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
    task: str | None = None,
    errors: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    chance: float | None = None,
    title: str | None = None,
    height: int = 430,
) -> go.Figure:
    """Grouped bars: ``metric`` per condition (x), one trace per model, values written on the bars.

    ``errors``: ``{model: [(low, high) per condition]}`` drawn as error bars (e.g. a
    bootstrap interval). ``chance``: a dotted grey line named in the legend.
    """
    traces = report_card_traces(table, metric, models, conditions, task)
    fig = go.Figure()
    for i, tr in enumerate(traces):
        err = None
        if errors is not None and tr["name"] in errors:
            lo_hi = np.asarray(errors[tr["name"]], dtype=float)
            y = np.asarray(tr["y"])
            err = dict(type="data", symmetric=False, array=(lo_hi[:, 1] - y).tolist(),
                       arrayminus=(y - lo_hi[:, 0]).tolist(), color="#444", thickness=1.2, width=3)
        fig.add_bar(x=tr["x"], y=tr["y"], name=tr["name"], marker_color=model_color(i), error_y=err,
                    text=[f"{v:.2f}" for v in tr["y"]], textposition="inside",
                    insidetextanchor="start" if err is not None else "end")  # not under the error bar
    if chance is not None:
        fig.add_scatter(x=traces[0]["x"] if traces else [], y=[chance] * (len(traces[0]["x"]) if traces else 0),
                        mode="lines", name=f"chance ({chance:.0%})", line=dict(color="grey", dash="dot"))
    label = METRIC_LABELS.get(metric, metric)
    fig.update_layout(title=title or f"Report card: test {label} under each condition",
                      barmode="group", height=height, yaxis=dict(title=f"test {label}", range=[0, 1.05]),
                      xaxis_title="condition", legend_title_text="model", **_layout())
    return fig


def report_radar_figure(
    table,
    metric: str = "accuracy",
    *,
    models: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
    task: str | None = None,
    title: str | None = None,
    height: int = 460,
) -> go.Figure:
    """The report card on a radar: one closed line per model, one spoke per condition, radius ``metric`` (0 to 1).

    The radius is named in the title, not on the radial axis, where it would sit on the tick labels.
    """
    traces = report_card_traces(table, metric, models, conditions, task)
    fig = go.Figure()
    for i, tr in enumerate(traces):
        fig.add_scatterpolar(r=tr["y"] + tr["y"][:1], theta=tr["x"] + tr["x"][:1], name=tr["name"],
                             mode="lines+markers", line=dict(color=model_color(i)))
    label = METRIC_LABELS.get(metric, metric)
    fig.update_layout(title=title or f"Report card as a radar: {label} per condition", height=height,
                      polar=dict(radialaxis=dict(range=[0, 1], angle=90, tickangle=90)),
                      legend_title_text="model", **_layout(margin=dict(l=60, r=60, t=70, b=90)))
    return fig


def robustness_curves_figure(
    curves,
    *,
    chance: float | None = None,
    title: str = "Accuracy as every modality gets noisier",
    height: int = 420,
) -> go.Figure:
    """Accuracy vs level, one curve per model (dashed for a second task and so on).

    ``curves``: :attr:`mmlearn.evaluation.ReportCard.curves` (columns ``model, level,
    accuracy``, and optionally ``task`` and ``kind``), or any sweep table.
    """
    tasks = list(dict.fromkeys(curves["task"])) if "task" in curves else [None]
    models = list(dict.fromkeys(curves["model"]))
    dashes = ["solid", "dash", "dot", "dashdot"]
    fig = go.Figure()
    for j, task in enumerate(tasks):
        sub = curves if task is None else curves[curves["task"] == task]
        for i, m in enumerate(models):
            g = sub[sub["model"] == m].sort_values("level")
            name = m if len(tasks) == 1 else f"{m} ({task})"
            fig.add_scatter(x=g["level"].tolist(), y=g["accuracy"].tolist(), mode="lines+markers", name=name,
                            line=dict(color=model_color(i), dash=dashes[j % len(dashes)]))
    if chance is not None:
        fig.add_scatter(x=[float(curves["level"].min()), float(curves["level"].max())], y=[chance, chance],
                        mode="lines", name=f"chance ({chance:.0%})", line=dict(color="grey", dash="dot"))
    kind = str(curves["kind"].iloc[0]).replace("_", " ") if "kind" in curves and len(curves) else "corruption"
    fig.update_layout(title=title, height=height, xaxis_title=f"{kind} level (0 clean)",
                      yaxis=dict(title="test accuracy", range=[0, 1.02]), legend_title_text="model", **_layout())
    return fig


def metric_heatmap_figure(
    values,
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    title: str,
    colorbar_title: str = "",
    fmt: str = "{:.1f}",
    zmid: float | None = None,
    height: int | None = None,
) -> go.Figure:
    """A table of numbers (e.g. MRG, models x tasks) as an annotated heatmap.

    ``zmid``: a diverging colour scale centred there (e.g. 0 for a relative gain).
    """
    z = np.asarray(values, dtype=float)
    if z.shape != (len(rows), len(cols)):
        raise ValueError(f"values have shape {z.shape}; expected ({len(rows)}, {len(cols)}) for the labels given")
    text = [["" if not np.isfinite(v) else fmt.format(v) for v in row] for row in z]
    kw = dict(colorscale="RdBu", zmid=zmid) if zmid is not None else dict(colorscale="Viridis")
    fig = go.Figure(go.Heatmap(z=json_safe_z(z), x=list(cols), y=list(rows), text=text, texttemplate="%{text}",
                               colorbar=dict(title=dict(text=colorbar_title)), **kw))
    fig.update_layout(title=title, height=height or 140 + 45 * len(rows),
                      yaxis=dict(autorange="reversed"), **_layout(margin=dict(l=150, r=20, t=60, b=60)))
    return fig
