"""The decision-surface figure (notebook 03, :class:`mmlearn.widgets.SurfacePanel`): numbers in, ``go.Figure`` out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from .core import LAYOUT

CLASS_COLORS = ("#2166ac", "#b2182b")  # class 0 blue, class 1 red: the ends of the RdBu_r surface
CLASS_SYMBOLS = ("circle", "diamond")

#: trace order of :func:`surface_figure` (the panel updates them in place)
SURFACE_TRACES = ("surface", "x1 alone", "x2 alone", "boundary", "class 0", "class 1", "loss")


def _points(data):
    """``(x1, x2, y)`` numpy arrays from a :class:`~mmlearn.data.Batch` on modalities ``x1``, ``x2``."""
    x1 = np.asarray(data.inputs["x1"], dtype=float).reshape(-1)
    x2 = np.asarray(data.inputs["x2"], dtype=float).reshape(-1)
    return x1, x2, np.asarray(data.y).reshape(-1)


def surface_figure(grid: Sequence[float], surface: np.ndarray, data, unimodal: Mapping[str, Sequence[float]],
                   losses: Sequence[float] = (), title: str = "", height: int = 520) -> go.Figure:
    """Left: the fused decision surface ``P(y = 1 | x1, x2)`` as a heatmap with its ``P = 0.5`` contour and
    the training points (coloured by class); above it a strip with what ``x1`` alone predicts, to its right
    a strip with what ``x2`` alone predicts (the same colour scale: the white band is each one's decision
    line). Right: the training loss per optimiser step (log scale).

    ``grid`` (G,): the coordinates of each axis; ``surface`` (G, G) indexed ``[x2, x1]`` (rows are the y
    axis); ``unimodal``: ``{"x1": (G,), "x2": (G,)}``; ``data``: a Batch with ``x1``, ``x2`` of shape
    ``(n, 1)`` and labels 0/1. Readable from about 700 px wide. Traces, in order: :data:`SURFACE_TRACES`.
    """
    grid = np.asarray(grid, dtype=float)
    z = np.asarray(surface, dtype=float)
    g = len(grid)
    if z.shape != (g, g):
        raise ValueError(f"surface has shape {z.shape}; expected ({g}, {g}) for a grid of {g} points")
    for m in ("x1", "x2"):
        if m not in unimodal or np.asarray(unimodal[m]).shape != (g,):
            raise ValueError(f"unimodal[{m!r}] must have shape ({g},)")
    x1, x2, y = _points(data)
    scale = dict(colorscale="RdBu_r", zmin=0.0, zmax=1.0)
    fig = go.Figure()
    # plain lists, not numpy arrays: FigureWidget's sync code tests values for truth (``if not value``)
    axis, zs = grid.tolist(), z.tolist()
    fig.add_trace(go.Heatmap(x=axis, y=axis, z=zs, name="P(y=1 | x1, x2)", **scale, xaxis="x", yaxis="y",
                             zsmooth="best",
                             colorbar=dict(title=dict(text="P(y = 1)", side="top"), orientation="h", x=0.24,
                                           xanchor="center", y=-0.13, yanchor="top", len=0.44, thickness=12),
                             hovertemplate="x1 %{x:.2f}, x2 %{y:.2f}: P(y=1) = %{z:.2f}<extra>both</extra>"))
    fig.add_trace(go.Heatmap(x=axis, y=[0], z=[np.asarray(unimodal["x1"], dtype=float).tolist()], **scale,
                             showscale=False, name="x1 alone", xaxis="x2", yaxis="y2",
                             hovertemplate="x1 %{x:.2f}, x2 absent: P(y=1) = %{z:.2f}<extra></extra>"))
    fig.add_trace(go.Heatmap(x=[0], y=axis, z=[[float(v)] for v in np.asarray(unimodal["x2"])], **scale,
                             showscale=False, name="x2 alone", xaxis="x3", yaxis="y3",
                             hovertemplate="x2 %{y:.2f}, x1 absent: P(y=1) = %{z:.2f}<extra></extra>"))
    fig.add_trace(go.Contour(x=axis, y=axis, z=zs, contours=dict(start=0.5, end=0.5, size=1, coloring="none"),
                             line=dict(color="black", width=2), showscale=False, name="boundary P = 0.5",
                             showlegend=True, hoverinfo="skip", xaxis="x", yaxis="y"))
    for c in (0, 1):
        fig.add_trace(go.Scatter(x=x1[y == c].tolist(), y=x2[y == c].tolist(), mode="markers", name=f"class {c}",
                                 marker=dict(color=CLASS_COLORS[c], symbol=CLASS_SYMBOLS[c], size=7, opacity=0.9,
                                             line=dict(color="white", width=1)),
                                 xaxis="x", yaxis="y",
                                 hovertemplate=f"class {c}: (%{{x:.2f}}, %{{y:.2f}})<extra></extra>"))
    losses = [float(v) for v in losses]
    fig.add_trace(go.Scatter(x=list(range(1, len(losses) + 1)), y=losses, mode="lines", name="training loss",
                             line=dict(color="#333"), xaxis="x4", yaxis="y4", showlegend=False,
                             hovertemplate="step %{x}: loss %{y:.4f}<extra></extra>"))
    lo, hi = float(grid[0]), float(grid[-1])
    plane = dict(range=[lo, hi], constrain="domain", zeroline=False, showgrid=False)
    fig.update_layout(
        title=dict(text=title, x=0.01, xanchor="left", font=dict(size=15)),
        height=height,
        xaxis=dict(domain=[0.0, 0.47], title=dict(text="x1", standoff=4), **plane),
        yaxis=dict(domain=[0.0, 0.80], title=dict(text="x2", standoff=4), **plane),
        xaxis2=dict(domain=[0.0, 0.47], matches="x", showticklabels=False, showgrid=False, zeroline=False),
        yaxis2=dict(domain=[0.83, 0.91], anchor="x2", tickvals=[0], ticktext=["x1 alone"], showgrid=False,
                    zeroline=False, fixedrange=True),
        xaxis3=dict(domain=[0.485, 0.52], anchor="y3", tickvals=[0], ticktext=["x2<br>alone"], showgrid=False,
                    zeroline=False, fixedrange=True),
        yaxis3=dict(domain=[0.0, 0.80], anchor="x3", matches="y", showticklabels=False, showgrid=False,
                    zeroline=False),
        xaxis4=dict(domain=[0.66, 1.0], anchor="y4", title=dict(text="optimiser step", standoff=4)),
        yaxis4=dict(domain=[0.0, 0.91], anchor="x4", type="log", exponentformat="power",
                    title=dict(text="cross-entropy", standoff=2)),
        annotations=[dict(text="training loss", xref="paper", yref="paper", x=0.83, y=0.93, xanchor="center",
                          yanchor="bottom", showarrow=False, font=dict(size=13))],
        legend=dict(orientation="h", x=0.62, xanchor="left", y=-0.13, yanchor="top", font=dict(size=12)),
        **{**LAYOUT, "margin": dict(l=55, r=15, t=60, b=110)},
    )
    # the same axes ids for the strips as for the plane they sit beside
    fig.layout.xaxis2.anchor = "y2"
    fig.layout.xaxis.anchor = "y"
    fig.layout.yaxis.anchor = "x"
    return fig


def add_reference_lines(fig: go.Figure, lines: Mapping[str, float], x: Sequence, *, row: int | None = None,
                        col: int | None = None, colors: Sequence[str] | None = None, dash: str = "dot") -> go.Figure:
    """Horizontal reference lines *with legend entries* (``add_hline`` draws shapes, which have none).

    ``lines``: ``{legend label: y}``; ``x``: the categories (or two x values) the line spans. In place; returns ``fig``.
    """
    kwargs = {} if row is None else dict(row=row, col=col)
    for i, (label, value) in enumerate(lines.items()):
        color = colors[i % len(colors)] if colors else "grey"
        fig.add_trace(go.Scatter(x=list(x), y=[float(value)] * len(x), mode="lines", name=label,
                                 line=dict(color=color, dash=dash, width=2), hovertemplate=f"{label}: {value:.1%}"
                                 "<extra></extra>"), **kwargs)
    return fig
