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
    errors: Mapping[str, Mapping[str, float]] | None = None,
    names: Mapping[str, str] | None = None,
) -> go.Figure:
    """Grouped bars: one group per method, one bar per quantity (probe accuracy per encoder, fused accuracy).

    ``results``: ``{method label: {"x1": probe, "x2": probe, "fused": accuracy}}``;
    ``reference``: optional horizontal lines ``{label: value}`` (e.g. the weak
    encoder trained alone), each named in the legend; ``errors``: optional
    ``{method label: {key: half-width}}`` drawn as error bars (e.g. the standard
    deviation over seeds); ``names``: legend names per key (default ``"probe
    <key>"``, ``"fused accuracy"``). The y axis starts at 0. Each bar's value is
    written inside it at its base (11 px, vertical), so a reference line or an
    error bar near the top never runs through a label.
    """
    if not results:
        raise ValueError("balance_summary_figure needs at least one method")
    keys = list(keys) if keys is not None else list(next(iter(results.values())))
    methods = list(results)
    names = dict(names or {})
    fig = go.Figure()
    for i, k in enumerate(keys):
        values, spread = [], []
        for method in methods:
            if k not in results[method]:
                raise ValueError(f"method {method!r} has no value {k!r}; it has {sorted(results[method])}")
            values.append(float(results[method][k]))
            spread.append(float((errors or {}).get(method, {}).get(k, float("nan"))))
        color = "#555555" if k == "fused" else modality_color(k, i)
        name = names.get(k, "fused accuracy" if k == "fused" else f"probe {k}")
        error_y = None
        if errors is not None:
            error_y = dict(type="data", array=[0.0 if np.isnan(e) else e for e in spread], visible=True,
                           color="#222222", thickness=1.5, width=3)
        fig.add_trace(go.Bar(x=methods, y=values, name=name, marker_color=color, error_y=error_y,
                             text=[f"{v:.2f}" for v in values], textposition="inside", insidetextanchor="start",
                             textangle=-90, textfont=dict(size=11, color="white")))
    for j, (label, value) in enumerate((reference or {}).items()):
        # a dashed line across the groups, named in the legend (no label over the bars)
        fig.add_trace(go.Scatter(x=methods, y=[float(value)] * len(methods), mode="lines", name=label,
                                 line=dict(dash="dash", color=PALETTE[(j + 3) % len(PALETTE)])))
    fig.update_layout(title=title, barmode="group", yaxis=dict(title="accuracy", range=[0, 1.05]),
                      xaxis=dict(title="training method", tickfont=dict(size=12)), height=440,
                      uniformtext=dict(minsize=11, mode="show"),
                      legend=dict(orientation="h", y=-0.22, yanchor="top"),
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=60, b=120)})
    return fig


def running_mean(values: Sequence[float], width: int) -> np.ndarray:
    """Trailing mean over the last ``width`` values at each step (fewer at the start): same length as ``values``."""
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    v = np.asarray(values, dtype=float)
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - width, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def modulation_figure(coefficients: Mapping[str, Sequence[float]], title: str = "Gradient coefficient per modality",
                      smooth: int = 1, y_title: str = "coefficient") -> go.Figure:
    """The per-step gradient coefficient of each modality (OGM-GE's k, AGM's kappa), optionally smoothed.

    ``coefficients``: ``{modality: [value per step]}``; ``smooth``: width of a
    trailing running mean (1 = raw values only). With ``smooth > 1`` the
    running means come first (one trace per modality, in order, solid), then
    the raw per-step values of each modality, faint. A dashed line marks 1 (no
    modulation); every line is named in the legend.
    """
    if smooth < 1:
        raise ValueError(f"smooth must be >= 1, got {smooth}")
    fig = go.Figure()
    items = [(m, np.asarray(values, dtype=float)) for m, values in coefficients.items()]
    n = max((len(v) for _, v in items), default=0)
    for i, (m, v) in enumerate(items):
        name = f"{m}, mean of last {smooth} steps" if smooth > 1 else m
        y = running_mean(v, smooth) if smooth > 1 else v
        fig.add_trace(go.Scatter(x=np.arange(1, len(v) + 1), y=y, mode="lines", name=name,
                                 line=dict(color=modality_color(m, i), width=2.5)))
    if smooth > 1:
        for i, (m, v) in enumerate(items):
            fig.add_trace(go.Scatter(x=np.arange(1, len(v) + 1), y=v, mode="lines", name=f"{m}, each step",
                                     opacity=0.25, line=dict(color=modality_color(m, i), width=1)))
    fig.add_trace(go.Scatter(x=[1, max(n, 1)], y=[1.0, 1.0], mode="lines", name="1 = no modulation",
                             line=dict(dash="dash", color="#999999")))
    fig.update_layout(title=title, xaxis_title="training step", yaxis_title=y_title, height=360,
                      legend=dict(orientation="h", y=-0.25, yanchor="top"),
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=60, b=100)})
    return fig


def balance_panel_figure(alone: Mapping[str, Sequence[float]], joint: Mapping[str, Sequence[float]],
                         method: Mapping[str, Sequence[float]], accuracy: Mapping[str, float],
                         modalities: Sequence[str], method_label: str = "method",
                         title: str = "", missing: Mapping[str, float] | None = None,
                         missing_label: str = "x1 missing") -> go.Figure:
    """The balance panel's figure: per encoder, probe accuracy per epoch (alone, joint, chosen method),
    and bars of the final test accuracy (joint vs chosen method) with every modality present ("fused") and,
    if ``missing`` is given (``{run label: accuracy}``, same keys as ``accuracy``), with one modality missing.

    Every y axis starts at 0 and a dotted line marks chance (0.5, binary labels). Trace order (the panel
    updates traces in place): for each modality, three lines ``alone, joint, method``; then the "fused" bar
    trace, the ``missing_label`` bar trace (if ``missing``), then one chance line per encoder.
    """
    names = list(modalities)
    fig = make_subplots(rows=1, cols=len(names) + 1, horizontal_spacing=0.08,
                        column_widths=[1.0] * len(names) + [0.8],
                        subplot_titles=[f"{m} encoder probe" for m in names] + ["test accuracy"])
    for col, m in enumerate(names, start=1):
        styles = (("alone", alone, "#7f7f7f", "dash"), ("plain joint", joint, "#1f77b4", "dot"),
                  (method_label, method, "#d62728", "solid"))
        for label, curves, color, dash in styles:
            y = list(curves[m])
            fig.add_trace(go.Scatter(x=_epochs(y), y=y, mode="lines+markers", name=label, legendgroup=label,
                                     showlegend=col == 1, marker=dict(size=5), line=dict(color=color, dash=dash)),
                          row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
        fig.update_yaxes(range=[0, 1.02], row=1, col=col)
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    labels = list(accuracy)
    bars = [("fused (all present)", [float(accuracy[k]) for k in labels], "#555555")]
    if missing is not None:
        bars.append((missing_label, [float(missing[k]) for k in labels], "#2ca02c"))
    for name, values, color in bars:
        fig.add_trace(go.Bar(x=labels, y=values, name=name, marker_color=color,
                             text=[f"{v:.0%}" for v in values], textposition="inside", insidetextanchor="start",
                             textangle=-90, textfont=dict(size=11, color="white")), row=1, col=len(names) + 1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=len(names) + 1)
    fig.update_xaxes(tickfont=dict(size=11), row=1, col=len(names) + 1)
    n_epochs = max((len(v) for v in alone.values()), default=1)
    for col in range(1, len(names) + 1):
        fig.add_trace(go.Scatter(x=[1, n_epochs], y=[0.5, 0.5], mode="lines", name="chance (0.5)",
                                 legendgroup="chance", showlegend=col == 1,
                                 line=dict(color="#aaaaaa", dash="dashdot", width=1)), row=1, col=col)
    # legend below the plots and room between the panel's title and the subplot titles
    fig.update_layout(title=dict(text=title, y=0.97, yanchor="top", font=dict(size=14)), height=480,
                      barmode="group", uniformtext=dict(minsize=11, mode="show"),
                      legend=dict(orientation="h", y=-0.3, yanchor="top"),
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=100, b=120)})
    return fig
