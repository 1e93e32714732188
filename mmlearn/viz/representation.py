"""Figures for representation learning (notebook 01): latents, generated images, factor probes.

Numbers in, ``go.Figure`` out; the representation panel updates the traces of
:func:`latent_generation_figure` in place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .core import LAYOUT, PALETTE, _numpy, json_safe_z


def image_strip(images, gap: int = 1) -> np.ndarray:
    """Lay ``n`` images (n, h, w) side by side with ``gap`` blank (NaN) columns between them: (h, n*w + (n-1)*gap)."""
    arr = _numpy(images).astype(float)
    if arr.ndim != 3:
        raise ValueError(f"images have shape {arr.shape}; expected (n, h, w)")
    n, h, w = arr.shape
    out = np.full((h, n * w + (n - 1) * gap), np.nan)
    for i in range(n):
        out[:, i * (w + gap) : i * (w + gap) + w] = arr[i]
    return out


def image_strips_figure(strips: Mapping[str, object], title: str = "", *, zmin: float | None = None,
                        zmax: float | None = None, colorscale: str = "gray_r", origin: str = "upper",
                        height_per_row: int = 95) -> go.Figure:
    """One row per entry ``{row title: images (n, h, w)}``, the images of a row side by side.

    All rows share one colour range (``zmin``/``zmax``, by default the first
    row's range) so a generated image can be compared with the real one.
    """
    if not strips:
        raise ValueError("image_strips_figure needs at least one row of images")
    names = list(strips)
    first = _numpy(strips[names[0]])
    zmin = float(np.nanmin(first)) if zmin is None else zmin
    zmax = float(np.nanmax(first)) if zmax is None else zmax
    fig = make_subplots(rows=len(names), cols=1, subplot_titles=names, vertical_spacing=0.35 / len(names))
    for i, name in enumerate(names):
        fig.add_trace(go.Heatmap(z=json_safe_z(image_strip(strips[name])), colorscale=colorscale, zmin=zmin, zmax=zmax,
                                 showscale=False, hoverinfo="skip"), row=i + 1, col=1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed" if origin == "upper" else True)
    fig.update_layout(title=title, height=70 + height_per_row * len(names),
                      **{**LAYOUT, "margin": dict(l=10, r=10, t=70, b=10)})
    return fig


def latent_generation_figure(
    xy,
    labels,
    true_images,
    generated_images,
    *,
    label_names: Sequence[str] | None = None,
    classes: Sequence[int] | None = None,
    title: str = "",
    scatter_title: str = "inferred latent (first two principal axes)",
    true_title: str = "real images",
    generated_title: str = "generated images",
    zmin: float = 0.0,
    zmax: float = 1.0,
    xy_range: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> go.Figure:
    """The representation panel's figure: a latent scatter above two image strips.

    Row 1: ``xy`` (N, 2) coloured by ``labels`` (N,), one trace per class (in
    ``classes`` order, so traces keep their place when a class has no point).
    Row 2: ``true_images`` (n, h, w); row 3: ``generated_images`` (n, h, w),
    one heatmap trace each. Trace order: the classes, then the two heatmaps;
    subplot titles are ``layout.annotations[0..2]``.
    """
    xy, labels = _numpy(xy), _numpy(labels).astype(int)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(labels):
        raise ValueError(f"xy has shape {xy.shape} and labels {labels.shape}; expected (N, 2) and (N,)")
    classes = list(classes) if classes is not None else sorted(np.unique(labels).tolist())
    if label_names is not None and len(label_names) <= max(int(c) for c in classes):
        raise ValueError(f"label_names has {len(label_names)} names but the classes go up to {max(classes)}")
    fig = make_subplots(rows=3, cols=1, row_heights=[0.62, 0.19, 0.19], vertical_spacing=0.12,
                        subplot_titles=(scatter_title, true_title, generated_title))
    for i, c in enumerate(classes):
        sel = labels == c
        name = label_names[int(c)] if label_names is not None else str(c)
        fig.add_trace(go.Scatter(x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=name, legendgroup=name,
                                 marker=dict(size=6, color=PALETTE[i % len(PALETTE)], opacity=0.75)), row=1, col=1)
    for row, images in ((2, true_images), (3, generated_images)):
        fig.add_trace(go.Heatmap(z=json_safe_z(image_strip(images)), colorscale="gray_r", zmin=zmin, zmax=zmax, showscale=False,
                                 hoverinfo="skip"), row=row, col=1)
    fig.update_xaxes(title_text="latent PC 1", row=1, col=1)
    fig.update_yaxes(title_text="latent PC 2", row=1, col=1)
    if xy_range is not None:
        fig.update_xaxes(range=list(xy_range[0]), row=1, col=1)
        fig.update_yaxes(range=list(xy_range[1]), row=1, col=1)
    for row in (2, 3):
        fig.update_xaxes(visible=False, row=row, col=1)
        # square pixels: a strip of digits is wide and short, not stretched to the row's height
        fig.update_yaxes(visible=False, autorange="reversed", scaleanchor=f"x{row}", constrain="domain",
                         row=row, col=1)
    fig.update_layout(title=title, height=740, legend=dict(title="digit"), **LAYOUT)
    return fig


def probe_accuracy_figure(accuracies: Mapping[str, float], *, chance: float | None = None,
                          ceiling: float | None = None, ceiling_label: str = "ceiling",
                          title: str = "Linear probe accuracy per factor", xaxis_title: str = "factor",
                          yaxis_title: str = "probe accuracy (test)") -> go.Figure:
    """Bars of a score in [0, 1] per entry, e.g. a linear probe's test accuracy per factor
    ``{"shared Z_y": .9, "Z_audio": .4}`` or the coherence per model.

    ``chance`` draws a dotted line, ``ceiling`` a dashed one (e.g. the
    classifier's accuracy on real images, the most coherence can reach), each
    labelled in the right margin and named in the legend (``ceiling_label``).
    Bar labels (12 px) sit above the bars.
    """
    names = list(accuracies)
    values = [float(accuracies[k]) for k in names]
    fig = go.Figure(go.Bar(x=names, y=values, text=[f"{v:.1%}" for v in values], textposition="outside",
                           textfont=dict(size=12), cliponaxis=False,
                           marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(names))], showlegend=False))
    lines = []
    if ceiling is not None:
        lines.append((float(ceiling), ceiling_label, "dash", "#444444"))
    if chance is not None:
        lines.append((float(chance), "chance", "dot", "grey"))
    for value, label, dash, color in lines:
        # the label sits in the right margin, clear of the bars and their labels
        fig.add_hline(y=value, line_dash=dash, line_color=color, name=f"{label} ({value:.1%})", showlegend=True,
                      annotation_text=f"{label}<br>{value:.1%}", annotation_position="right",
                      annotation_font_size=12, annotation_align="left")
    fig.update_layout(title=title, xaxis_title=xaxis_title, yaxis=dict(title=yaxis_title, range=[0, 1.1]),
                      height=400, legend=dict(orientation="h", y=-0.22, yanchor="top"),
                      **{**LAYOUT, "margin": dict(l=60, r=130 if lines else 20, t=50, b=110)})
    return fig


def objective_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], key: str = "loss",
                     title: str = "Training objective per epoch") -> go.Figure:
    """One line per model of ``history[key]`` against ``history["epoch"]`` (from ``fit_representation``)."""
    fig = go.Figure()
    for i, (name, h) in enumerate(histories.items()):
        if key not in h:
            raise ValueError(f"history {name!r} has no {key!r}; it has {sorted(h)}")
        fig.add_trace(go.Scatter(x=list(h["epoch"]), y=list(h[key]), mode="lines", name=name,
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title=key, height=360, **LAYOUT)
    return fig
