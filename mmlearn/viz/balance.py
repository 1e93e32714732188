"""Figures for modality competition and balance (notebook 04): numbers in, ``go.Figure`` out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .core import LAYOUT, PALETTE, modality_color

#: line style per kind of curve in the probe figures
_STYLES = {"alone": "dash", "joint": "dot"}


def _epochs(values: Sequence[float]) -> list[int]:
    return list(range(1, len(values) + 1))


def probe_curves_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], modalities: Sequence[str] | None = None,
                        title: str = "Linear-probe accuracy of each encoder during training",
                        y_range: tuple[float, float] = (0.45, 1.0)) -> go.Figure:
    """One panel per encoder: its linear-probe accuracy (y) per epoch (x), one line per training run.

    ``curves``: ``{run label: {modality: [accuracy per epoch]}}``, e.g.
    ``{"alone": ..., "joint": ..., "MMPareto": ...}``. Runs named ``"alone"``
    are dashed and ``"joint"`` dotted; the others solid.
    """
    if not curves:
        raise ValueError("probe_curves_figure needs at least one run")
    names = list(modalities) if modalities is not None else list(next(iter(curves.values())))
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[f"encoder {m}" for m in names],
                        shared_yaxes=True, horizontal_spacing=0.06)
    for i, (label, per_modality) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        for col, m in enumerate(names, start=1):
            if m not in per_modality:
                raise ValueError(f"run {label!r} has no probe curve for modality {m!r}; it has {sorted(per_modality)}")
            y = list(per_modality[m])
            fig.add_trace(go.Scatter(x=_epochs(y), y=y, mode="lines+markers", name=label, legendgroup=label,
                                     showlegend=col == 1, marker=dict(size=5),
                                     line=dict(color=color, dash=_STYLES.get(label, "solid"))), row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="probe accuracy", range=list(y_range), row=1, col=1)
    fig.update_yaxes(range=list(y_range))
    # the legend goes below the plots, where every run fits (at the right it was clipped)
    fig.update_layout(title=title, height=440 + 12 * len(curves),
                      legend=dict(title="training", orientation="h", y=-0.25, yanchor="top"),
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=80, b=140)})
    return fig


def balance_summary_figure(
    results: Mapping[str, Mapping[str, float]],
    keys: Sequence[str] | None = None,
    reference: Mapping[str, float] | None = None,
    title: str = "After training: what each encoder learned, and the fused accuracy",
) -> go.Figure:
    """Grouped bars: one group per method, one bar per quantity (probe accuracy per encoder, fused accuracy).

    ``results``: ``{method label: {"x1": probe, "x2": probe, "fused": accuracy}}``;
    ``reference``: optional horizontal lines ``{label: value}`` (e.g. the weak
    encoder trained alone).
    """
    if not results:
        raise ValueError("balance_summary_figure needs at least one method")
    keys = list(keys) if keys is not None else list(next(iter(results.values())))
    methods = list(results)
    fig = go.Figure()
    for i, k in enumerate(keys):
        values = []
        for method in methods:
            if k not in results[method]:
                raise ValueError(f"method {method!r} has no value {k!r}; it has {sorted(results[method])}")
            values.append(float(results[method][k]))
        color = "#555555" if k == "fused" else modality_color(k, i)
        name = "fused accuracy" if k == "fused" else f"probe {k}"
        fig.add_trace(go.Bar(x=methods, y=values, name=name, marker_color=color,
                             text=[f"{v:.2f}" for v in values], textposition="outside", textfont=dict(size=10)))
    for j, (label, value) in enumerate((reference or {}).items()):
        # a dashed line across the groups, named in the legend (no label over the bars)
        fig.add_trace(go.Scatter(x=methods, y=[float(value)] * len(methods), mode="lines", name=label,
                                 line=dict(dash="dash", color=PALETTE[(j + 3) % len(PALETTE)])))
    fig.update_layout(title=title, barmode="group", yaxis=dict(title="accuracy", range=[0.4, 1.05]),
                      xaxis_title="training method", height=420, **LAYOUT)
    return fig


def modulation_figure(coefficients: Mapping[str, Sequence[float]], title: str = "Gradient coefficient per modality",
                      smooth: int = 1, y_title: str = "coefficient") -> go.Figure:
    """The per-step gradient coefficient of each modality (OGM-GE's k, AGM's kappa), optionally smoothed.

    ``coefficients``: ``{modality: [value per step]}``; ``smooth``: width of a
    moving average (1 = raw values). A dashed line marks 1 (no modulation).
    """
    if smooth < 1:
        raise ValueError(f"smooth must be >= 1, got {smooth}")
    fig = go.Figure()
    for i, (m, values) in enumerate(coefficients.items()):
        v = np.asarray(values, dtype=float)
        if smooth > 1 and len(v) >= smooth:
            v = np.convolve(v, np.ones(smooth) / smooth, mode="valid")
        fig.add_trace(go.Scatter(x=np.arange(1, len(v) + 1), y=v, mode="lines", name=m,
                                 line=dict(color=modality_color(m, i))))
    fig.add_hline(y=1.0, line=dict(dash="dash", color="#999999"))
    fig.update_layout(title=title, xaxis_title="training step", yaxis_title=y_title, height=340,
                      legend=dict(title="modality"), **LAYOUT)
    return fig


def balance_panel_figure(alone: Mapping[str, Sequence[float]], joint: Mapping[str, Sequence[float]],
                         method: Mapping[str, Sequence[float]], accuracy: Mapping[str, float],
                         modalities: Sequence[str], method_label: str = "method",
                         title: str = "") -> go.Figure:
    """The balance panel's figure: per encoder, probe accuracy per epoch (alone, joint, chosen method),
    and a bar chart of the final fused accuracy (joint vs chosen method).

    Trace order (the panel updates traces in place): for each modality, three
    lines ``alone, joint, method``; then one bar trace.
    """
    names = list(modalities)
    fig = make_subplots(rows=1, cols=len(names) + 1, horizontal_spacing=0.07,
                        column_widths=[1.0] * len(names) + [0.6],
                        subplot_titles=[f"{m} encoder probe" for m in names] + ["fused accuracy"])
    for col, m in enumerate(names, start=1):
        styles = (("alone", alone, "#7f7f7f", "dash"), ("plain joint", joint, "#1f77b4", "dot"),
                  (method_label, method, "#d62728", "solid"))
        for label, curves, color, dash in styles:
            y = list(curves[m])
            fig.add_trace(go.Scatter(x=_epochs(y), y=y, mode="lines+markers", name=label, legendgroup=label,
                                     showlegend=col == 1, marker=dict(size=5), line=dict(color=color, dash=dash)),
                          row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
        fig.update_yaxes(range=[0.45, 1.0], row=1, col=col)
    fig.update_yaxes(title_text="probe accuracy", row=1, col=1)
    labels = list(accuracy)
    values = [float(accuracy[k]) for k in labels]
    fig.add_trace(go.Bar(x=labels, y=values, marker_color=["#1f77b4", "#d62728"][: len(values)], showlegend=False,
                         text=[f"{v:.1%}" for v in values], textposition="outside"), row=1, col=len(names) + 1)
    fig.update_yaxes(range=[0.5, 1.05], row=1, col=len(names) + 1)
    # legend below the plots and room between the panel's title and the subplot titles
    fig.update_layout(title=dict(text=title, y=0.97, yanchor="top"), height=460,
                      legend=dict(orientation="h", y=-0.3),
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=100, b=110)})
    return fig
