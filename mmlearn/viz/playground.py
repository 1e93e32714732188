"""The Fusion Playground's figure: accuracy per method, the robustness curve, and (optionally) the data's
information decomposition. Numbers in, ``go.Figure`` out (DESIGN.md, layer 2).

The trace layout is fixed once for all registered methods, so the panel can update the figure in place:

- trace 0: bars, accuracy of each selected method on clean test data;
- trace 1: bars, accuracy under the current noise and missing rates;
- traces ``2 .. 2+K-1``: the robustness curve of each of the K methods (hidden when not selected);
- traces ``2+K .. 2+2K-1``: a marker per method at the current setting, on its curve;
- traces ``2+2K .. 2+3K-1``: per method, a dashed line at its accuracy with the curve's modality removed
  (marked absent): the level a noisy modality can fall below (noise is worse than absence);
- trace ``2+3K``: the legend key of those dashed lines ("<modality> removed"), no data;
- with a decomposition, one more bar trace (the last): redundancy, uniqueness per modality, synergy (bits).

The chance level is a dotted line on both plots (layout shapes), named in the legend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .core import LAYOUT, PALETTE


#: one colour per registered method (13 today): the course palette, then darker tones that stay distinct from it
METHOD_COLORS = [*PALETTE, "#393b79", "#8c6d31", "#637939", "#7b4173", "#843c39", "#3182bd"]

#: more selected methods than this and the bar chart drops its per-bar labels and turns its method names
#: upright (:func:`fit_to_selection`)
CROWDED = 6


def method_color(method: str, methods: Sequence[str]) -> str:
    """A stable colour per fusion method (its position among all methods; distinct for up to 16 methods)."""
    return METHOD_COLORS[list(methods).index(method) % len(METHOD_COLORS)]


def fit_to_selection(fig, n_selected: int) -> None:
    """Lay the figure out for ``n_selected`` methods, in place. Up to :data:`CROWDED`: percentages above the
    bars, method names under them. More (the screenshot with all 13: labels of 5 px, names cut off, the legend
    over the axis title): no per-bar labels (hover shows the values), names upright in a smaller font, no axis
    title, and a taller figure with the legend moved down to make room."""
    crowded = n_selected > CROWDED
    for trace in fig.data[:2]:
        trace.textposition = "none" if crowded else "outside"
    fig.update_xaxes(tickangle=-90 if crowded else None, tickfont_size=10 if crowded else None,
                     title_text="" if crowded else "fusion method", row=1, col=1)
    fig.update_layout(height=600 if crowded else 480, legend_y=-0.36 if crowded else -0.2,
                      margin_b=190 if crowded else 110)


def curve_trace_index(method: str, methods: Sequence[str]) -> int:
    return 2 + list(methods).index(method)


def marker_trace_index(method: str, methods: Sequence[str]) -> int:
    return 2 + len(methods) + list(methods).index(method)


def removed_trace_index(method: str, methods: Sequence[str]) -> int:
    return 2 + 2 * len(methods) + list(methods).index(method)


def removed_key_index(methods: Sequence[str]) -> int:
    return 2 + 3 * len(methods)


BUSY_OPACITY = 0.25


def set_busy(fig, busy: bool, note: str = "training …") -> None:
    """Dim every trace of ``fig`` and put ``note`` in the title while a panel trains (``busy``), restore
    full opacity after (the panel's next draw writes the real title). Works in place on a FigureWidget,
    whose changes reach the browser at once, even while the kernel is still busy training."""
    for trace in fig.data:
        trace.opacity = BUSY_OPACITY if busy else 1.0
    if busy:
        fig.layout.title.text = note


def playground_figure(
    all_methods: Sequence[str],
    selected: Sequence[str],
    clean: Mapping[str, float],
    now: Mapping[str, float],
    levels: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    current_level: float,
    *,
    curve_label: str = "noise level",
    chance: float | None = None,
    removed: Mapping[str, float] | None = None,
    removed_label: str = "modality removed",
    decomposition: Mapping[str, float] | None = None,
    with_decomposition: bool = False,
    title: str = "Fusion playground",
    now_label: str = "with noise / missing",
) -> go.Figure:
    """The whole playground figure, built with its final layout (the panel then updates it in place).

    ``clean[m]``, ``now[m]``: accuracy of method ``m`` on clean data and under the current corruption;
    ``curves[m]``: accuracy at each of ``levels`` of the corruption named by ``curve_label``;
    ``current_level``: where the marker sits. ``removed[m]``: method ``m``'s accuracy with the curve's
    modality removed, drawn as a dashed line across the curve plot (legend: ``removed_label``).
    ``with_decomposition`` reserves a third panel for
    ``decomposition`` (``{"redundancy": r, "unique x1": u, ..., "synergy": s}`` in bits).
    """
    all_methods, selected = list(all_methods), list(selected)
    unknown = [m for m in selected if m not in all_methods]
    if unknown:
        raise ValueError(f"selected methods {unknown} are not among {all_methods}")
    cols = 3 if with_decomposition else 2
    titles = ["accuracy: clean (grey), now (colour)", f"robustness: accuracy vs {curve_label}"]
    if with_decomposition:
        titles.append("information in the data")
    widths = [0.34, 0.42, 0.24] if with_decomposition else [0.4, 0.6]
    fig = make_subplots(rows=1, cols=cols, subplot_titles=titles, column_widths=widths, horizontal_spacing=0.09)
    # traces 0, 1: grouped bars, clean and now
    fig.add_trace(go.Bar(x=selected, y=[clean[m] for m in selected], name="clean test data",
                         marker_color="#b0b0b0", text=[f"{clean[m]:.0%}" for m in selected], textposition="outside",
                         textfont_size=11,
                         showlegend=False, hovertemplate="%{x}, clean: %{y:.1%}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=selected, y=[now[m] for m in selected], name=now_label,
                         marker_color=[method_color(m, all_methods) for m in selected],
                         text=[f"{now[m]:.0%}" for m in selected], textposition="outside", showlegend=False,
                         textfont_size=11,
                         hovertemplate="%{x}, now: %{y:.1%}<extra></extra>"), row=1, col=1)
    levels = [float(v) for v in levels]
    for m in all_methods:  # curves
        on = m in selected
        fig.add_trace(go.Scatter(x=levels, y=list(curves[m]) if on else [None] * len(levels), mode="lines",
                                 name=m, visible=on, line=dict(color=method_color(m, all_methods), width=2.5),
                                 legendgroup=m, hovertemplate=f"{m}: %{{y:.1%}} at %{{x:.2f}}<extra></extra>"),
                      row=1, col=2)
    for m in all_methods:  # markers at the current setting
        on = m in selected
        fig.add_trace(go.Scatter(x=[current_level], y=[now[m] if on else None], mode="markers", name=f"{m} now",
                                 visible=on, showlegend=False, legendgroup=m,
                                 marker=dict(color=method_color(m, all_methods), size=12, symbol="circle",
                                             line=dict(color="white", width=1.5)),
                                 hovertemplate=f"{m} now: %{{y:.1%}}<extra></extra>"), row=1, col=2)
    removed = dict(removed or {})
    span = [min(levels), max(levels)]
    for m in all_methods:  # the accuracy with the curve's modality removed, per method
        on = m in selected and m in removed
        fig.add_trace(go.Scatter(x=span, y=[removed[m]] * 2 if on else [None, None], mode="lines",
                                 name=f"{m}: {removed_label}", visible=on, showlegend=False, legendgroup=m,
                                 line=dict(color=method_color(m, all_methods), width=1.5, dash="dash"),
                                 hovertemplate=f"{m}, {removed_label}: %{{y:.1%}}<extra></extra>"), row=1, col=2)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"dashed: {removed_label}",
                             line=dict(color="#555", width=1.5, dash="dash"), hoverinfo="skip"), row=1, col=2)
    if with_decomposition:
        parts = dict(decomposition or {})
        fig.add_trace(go.Bar(x=list(parts), y=list(parts.values()), name="information", showlegend=False,
                             marker_color=PALETTE[4], text=[f"{v:.2f}" for v in parts.values()],
                             textposition="outside", hovertemplate="%{x}: %{y:.3f} bits<extra></extra>"),
                      row=1, col=3)
        fig.update_yaxes(title_text="bits", rangemode="tozero", row=1, col=3)
    fig.update_yaxes(title_text="test accuracy", range=[0, 1.12], row=1, col=1)
    fig.update_yaxes(title_text="test accuracy", range=[0, 1.02], row=1, col=2)
    fig.update_xaxes(title_text="fusion method", row=1, col=1)
    fig.update_xaxes(title_text=curve_label, range=[min(levels) - 0.02, max(levels) + 0.02], row=1, col=2)
    if chance is not None:
        # the chance line on both plots, named once in the legend (the panel moves both with the data)
        fig.add_hline(y=chance, line_dash="dot", line_color="grey", row=1, col=1)
        fig.add_hline(y=chance, line_dash="dot", line_color="grey", row=1, col=2, name=chance_name(chance),
                      showlegend=True)
    # no fixed width: the figure takes its output area's width (a JupyterLab output beside the file browser
    # is about 880 px at 1280 px; a fixed 960 px hid the right end of the curve)
    fig.update_layout(title=title, barmode="group", height=480, bargap=0.25,
                      legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=80, b=110)})
    fit_to_selection(fig, len(selected))
    return fig


def chance_name(chance: float) -> str:
    return f"chance ({chance:.0%})"


def robustness_levels(step: float = 0.1) -> np.ndarray:
    """The grid of corruption levels a curve is drawn on: 0, step, ..., 1."""
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    return np.round(np.linspace(0.0, 1.0, int(round(1 / step)) + 1), 6)
