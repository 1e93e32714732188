"""Figures of notebook 05 (robustness, survey Sec. X-XI): numbers in, ``go.Figure`` out.

- :func:`noise_sweep_figure`: accuracy vs noise level, one panel per noisy modality, one curve per model,
  with each model's "modality removed" accuracy as a labelled dashed line and a labelled chance line;
- :func:`missing_heatmap_figure`: train-time dropout rate x test-time missing rate, per fusion and modality;
- :func:`attack_figure`: accuracy under an attack on each modality alone and on all of them;
- :func:`robustness_panel_figure` / :func:`robustness_panel_traces`: the figure of
  :class:`mmlearn.widgets.RobustnessPanel` and the values of its traces, in a fixed order so the panel can
  update them in place.

Every figure is at most 840 px wide: the JupyterLab output area with the file browser open measured 848 px in
the UI harness (tests/ui), and an 860 px figure was cut off by 12 px.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .core import LAYOUT, PALETTE

#: widest figure of this module, in pixels
MAX_WIDTH = 840
REMOVED_DASH = "dash"
CHANCE_STYLE = dict(color="grey", dash="dot", width=1.5)


def _layout(**extra) -> dict:
    out = {**LAYOUT, "width": MAX_WIDTH}
    out["margin"] = dict(l=55, r=15, t=70, b=100)
    out.update(extra)
    return out


def method_color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def noise_sweep_figure(
    table,
    removed: Mapping[str, Mapping[str, float]],
    chance: float,
    *,
    title: str = "Accuracy as one modality gets noisier",
    height: int = 420,
) -> go.Figure:
    """Accuracy vs noise level, one subplot per modality, one solid curve per model.

    ``table``: a :func:`mmlearn.robustness.robustness_sweep` table (columns ``model, modality, level,
    accuracy``; rows with ``modality == "all"`` are ignored). ``removed[model][modality]``: that model's
    accuracy with the modality marked absent, drawn as a dashed line of the model's colour and named in the
    legend. ``chance``: a dotted grey line, named in the legend.
    """
    table = table[table["modality"] != "all"]
    models = list(dict.fromkeys(table["model"]))
    modalities = list(dict.fromkeys(table["modality"]))
    fig = make_subplots(rows=1, cols=len(modalities), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=[f"noise on {m}" for m in modalities])
    for i, model in enumerate(models):
        color = method_color(i)
        for j, m in enumerate(modalities):
            g = table[(table["model"] == model) & (table["modality"] == m)].sort_values("level")
            fig.add_scatter(x=g["level"], y=g["accuracy"], mode="lines+markers", name=model, legendgroup=model,
                            showlegend=j == 0, line=dict(color=color), row=1, col=j + 1,
                            hovertemplate=f"{model}, noise on {m}: " + "%{x:.1f} -> %{y:.1%}<extra></extra>")
            if m in removed.get(model, {}):
                r = float(removed[model][m])
                fig.add_scatter(x=[0, 1], y=[r, r], mode="lines", name=f"{model}: {m} removed ({r:.0%})",
                                legendgroup=model, line=dict(color=color, dash=REMOVED_DASH, width=1.5),
                                row=1, col=j + 1, hovertemplate=f"{model}, {m} removed: {r:.1%}<extra></extra>")
    for j in range(len(modalities)):
        fig.add_scatter(x=[0, 1], y=[chance, chance], mode="lines", name=f"chance ({chance:.0%})",
                        showlegend=j == 0, legendgroup="chance", line=CHANCE_STYLE, row=1, col=j + 1)
        fig.update_xaxes(title_text="noise level (0 clean, 1 pure noise)", row=1, col=j + 1)
    fig.update_yaxes(title_text="test accuracy", range=[0, 1.02], row=1, col=1)
    fig.update_layout(title=title, height=height,
                      legend=dict(orientation="h", y=-0.22, x=0, font=dict(size=11)), **_layout())
    return fig


def missing_heatmap_figure(
    table,
    *,
    title: str = "Accuracy: train-time modality dropout x test-time missing rate",
    height_per_row: int = 230,
) -> go.Figure:
    """One heatmap per (modality, fusion): rows = training dropout rate, columns = test missing rate.

    ``table``: columns ``fusion, train_rate, modality, level, accuracy`` (``level`` is the share of test rows
    where ``modality`` is missing). Cells carry their accuracy as text; one shared colour scale.
    """
    fusions = list(dict.fromkeys(table["fusion"]))
    modalities = list(dict.fromkeys(table["modality"]))
    titles = [f"{f}, {m} missing" for m in modalities for f in fusions]
    fig = make_subplots(rows=len(modalities), cols=len(fusions), subplot_titles=titles,
                        horizontal_spacing=0.05, vertical_spacing=0.2)
    lo, hi = float(table["accuracy"].min()), float(table["accuracy"].max())
    for r, m in enumerate(modalities):
        for c, f in enumerate(fusions):
            g = table[(table["fusion"] == f) & (table["modality"] == m)]
            grid = g.pivot_table(index="train_rate", columns="level", values="accuracy").sort_index()
            z = grid.to_numpy()
            fig.add_heatmap(
                z=z, x=[f"{v:g}" for v in grid.columns], y=[f"{v:g}" for v in grid.index],
                zmin=lo, zmax=hi, colorscale="Viridis", showscale=(r == 0 and c == 0),
                colorbar=dict(title="acc", len=0.8, thickness=12),
                text=np.round(z * 100).astype(int), texttemplate="%{text}", textfont=dict(size=10),
                hovertemplate=f"{f}: trained with dropout %{{y}}, {m} missing in %{{x}} of rows: %{{z:.1%}}"
                              "<extra></extra>",
                row=r + 1, col=c + 1,
            )
            fig.update_xaxes(title_text=f"test: {m} missing rate", title_font=dict(size=11), row=r + 1, col=c + 1)
            if c == 0:
                fig.update_yaxes(title_text="train dropout", title_font=dict(size=11), row=r + 1, col=c + 1)
    fig.update_layout(title=title, height=80 + height_per_row * len(modalities),
                      **_layout(margin=dict(l=70, r=15, t=80, b=50)))
    return fig


def attack_figure(table, *, chance: float | None = None, title: str = "Accuracy under attack",
                  height: int = 400) -> go.Figure:
    """Grouped bars: accuracy of each model (colour) for each attacked target (x), one subplot per attack.

    ``table``: columns ``model, attack, target, accuracy`` (``target`` e.g. ``"none"``, ``"image"``,
    ``"audio"``, ``"image+audio"``). ``chance``: a labelled dotted line.
    """
    attacks = list(dict.fromkeys(table["attack"]))
    models = list(dict.fromkeys(table["model"]))
    fig = make_subplots(rows=1, cols=len(attacks), shared_yaxes=True, subplot_titles=attacks,
                        horizontal_spacing=0.05)
    for c, a in enumerate(attacks):
        for i, model in enumerate(models):
            g = table[(table["attack"] == a) & (table["model"] == model)]
            fig.add_bar(x=list(g["target"]), y=list(g["accuracy"]), name=model, legendgroup=model,
                        showlegend=c == 0, marker_color=method_color(i), row=1, col=c + 1,
                        text=[f"{v:.0%}" for v in g["accuracy"]], textposition="outside", textfont=dict(size=9))
        if chance is not None:
            targets = list(dict.fromkeys(table[table["attack"] == a]["target"]))
            fig.add_scatter(x=targets, y=[chance] * len(targets), mode="lines", name=f"chance ({chance:.0%})",
                            showlegend=c == 0, line=CHANCE_STYLE, row=1, col=c + 1)
        fig.update_xaxes(title_text="attacked", row=1, col=c + 1)
    fig.update_yaxes(title_text="test accuracy", range=[0, 1.1], row=1, col=1)
    fig.update_layout(title=title, height=height, barmode="group",
                      legend=dict(orientation="h", y=-0.25, x=0), **_layout())
    return fig


# ------------------------------------------------------------------ the panel's figure


def panel_trace_count(methods: Sequence[str], modalities: Sequence[str]) -> int:
    """How many traces :func:`robustness_panel_figure` makes (fixed for the panel's lifetime)."""
    return len(methods) * 3 * len(modalities) + len(modalities) + 4


def robustness_panel_traces(result: Mapping, methods: Sequence[str], modalities: Sequence[str],
                            chance: float) -> list[dict]:
    """The values of every trace of the panel's figure for one ``result``, in the figure's trace order.

    ``result`` (from :func:`mmlearn.widgets.robustness_result`): ``levels``, ``noise`` (current level per
    modality), and per selected method ``results[method]`` with ``curves[m]`` (accuracy per level of
    noise on ``m``, the other controls as they are, no attack), ``removed[m]``, ``now`` (every control,
    attack included) and ``clean``. Methods not in ``result["results"]`` get invisible traces.

    Order: per method, per modality: noise curve, removed line, "now" star; then a chance line per
    modality; then the "now" bars, the "clean" ticks and two legend keys (removed, now).
    """
    levels = [float(v) for v in result["levels"]]
    res = result["results"]
    out: list[dict] = []
    for method in methods:
        r = res.get(method)
        for m in modalities:
            if r is None:
                out += [dict(visible=False), dict(visible=False), dict(visible=False)]
                continue
            rem = float(r["removed"][m])
            out.append(dict(visible=True, x=levels, y=[float(v) for v in r["curves"][m]]))
            if math.isnan(rem):  # the only modality left: nothing to remove (None, not NaN: strict JSON)
                out.append(dict(visible=True, x=[0.0, 1.0], y=[None, None], hovertemplate=None))
            else:
                out.append(dict(visible=True, x=[0.0, 1.0], y=[rem, rem],
                                hovertemplate=f"{method}, {m} removed: {rem:.1%}<extra></extra>"))
            out.append(dict(visible=True, x=[float(result["noise"][m])], y=[float(r["now"])],
                            hovertemplate=f"{method} now (every control, attack included): {float(r['now']):.1%}"
                                          "<extra></extra>"))
    for _ in modalities:
        out.append(dict(x=[0.0, 1.0], y=[chance, chance]))
    now = [float(res[m]["now"]) if m in res else None for m in methods]
    clean = [float(res[m]["clean"]) if m in res else None for m in methods]
    out.append(dict(x=list(methods), y=now, text=[f"{v:.0%}" if v is not None else "" for v in now]))
    out.append(dict(x=list(methods), y=clean))
    out.append(dict(x=[None], y=[None]))
    out.append(dict(x=[None], y=[None]))
    return out


def panel_title(result: Mapping) -> str:
    res = result["results"]
    return "accuracy now: " + ", ".join(f"{m} {float(r['now']):.0%}" for m, r in res.items())


def robustness_panel_figure(result: Mapping, methods: Sequence[str], modalities: Sequence[str], chance: float,
                            *, height: int = 460) -> go.Figure:
    """The robustness panel's figure, built with its final layout and every trace it will ever have.

    Columns: one per modality (accuracy vs noise on it, one curve per method; dashed: that method with the
    modality removed; star: the method's accuracy with every control applied, attack included) and a bar
    chart of the current accuracy per method with its clean accuracy as a black tick. Chance is a dotted line.
    """
    values = robustness_panel_traces(result, methods, modalities, chance)
    n = len(modalities)
    fig = make_subplots(rows=1, cols=n + 1, column_widths=[1.0] * n + [0.8], horizontal_spacing=0.07,
                        subplot_titles=[f"noise on {m}" for m in modalities] + ["accuracy now"])
    k = 0
    for i, method in enumerate(methods):
        color = method_color(i)
        for j, m in enumerate(modalities):
            col = j + 1
            fig.add_scatter(mode="lines+markers", name=method, legendgroup=method, showlegend=j == 0,
                            line=dict(color=color), marker=dict(size=5), row=1, col=col,
                            hovertemplate=f"{method}, noise on {m}: " + "%{x:.1f} -> %{y:.1%}<extra></extra>",
                            **values[k])
            fig.add_scatter(mode="lines", name=f"{method}: {m} removed", legendgroup=method, showlegend=False,
                            line=dict(color=color, dash=REMOVED_DASH, width=1.5), row=1, col=col, **values[k + 1])
            fig.add_scatter(mode="markers", name=f"{method} now", legendgroup=method, showlegend=False,
                            marker=dict(color=color, symbol="star", size=13, line=dict(color="black", width=1)),
                            row=1, col=col, **values[k + 2])
            k += 3
    for j in range(n):
        fig.add_scatter(mode="lines", name=f"chance ({chance:.0%})", legendgroup="chance", showlegend=j == 0,
                        line=CHANCE_STYLE, row=1, col=j + 1, hoverinfo="skip", **values[k])
        k += 1
    fig.add_bar(name="accuracy now", showlegend=False, marker_color=[method_color(i) for i in range(len(methods))],
                textposition="outside", cliponaxis=False, row=1, col=n + 1,
                hovertemplate="%{x} now: %{y:.1%}<extra></extra>", **values[k])
    fig.add_scatter(mode="markers", name="clean accuracy", marker=dict(symbol="line-ew-open", size=26,
                    color="black", line=dict(width=2)), row=1, col=n + 1,
                    hovertemplate="%{x} clean: %{y:.1%}<extra></extra>", **values[k + 1])
    fig.add_scatter(mode="lines", name="dashed: modality removed", line=dict(color="grey", dash=REMOVED_DASH),
                    row=1, col=1, hoverinfo="skip", **values[k + 2])
    fig.add_scatter(mode="markers", name="star: now (attack included)", row=1, col=1, hoverinfo="skip",
                    marker=dict(color="grey", symbol="star", size=12), **values[k + 3])
    for j in range(n):
        fig.update_xaxes(title_text="noise level", range=[-0.03, 1.03], row=1, col=j + 1)
    fig.update_yaxes(range=[0, 1.05])
    fig.update_yaxes(title_text="accuracy (cached test subset)", row=1, col=1)
    fig.update_xaxes(tickangle=-30, row=1, col=n + 1)
    fig.update_layout(title=dict(text=panel_title(result), font=dict(size=14)), height=height,
                      legend=dict(orientation="h", y=-0.28, x=0, font=dict(size=11)),
                      bargap=0.3, **_layout(margin=dict(l=55, r=15, t=70, b=120)))
    return fig


def apply_panel_traces(fig, values: Sequence[Mapping]) -> None:
    """Set the trace properties ``values`` (from :func:`robustness_panel_traces`) on ``fig`` in place."""
    if len(values) != len(fig.data):
        raise ValueError(f"the figure has {len(fig.data)} traces but {len(values)} values were given")
    for trace, props in zip(fig.data, values):
        for key, value in props.items():
            setattr(trace, key, value)
