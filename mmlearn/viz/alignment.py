"""Figures for alignment (notebook 02): numbers in, ``go.Figure`` out.

Similarity matrices, retrieval examples, the alignment-uniformity plane of
Wang & Isola (2020), method comparisons and the figure of the alignment panel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .core import LAYOUT, PALETTE, _numpy

GOOD, BAD = "#2ca02c", "#d62728"


def similarity_heatmap(sim, row_labels: Sequence | None = None, col_labels: Sequence | None = None,
                       title: str = "Cosine similarity", row_title: str = "image", col_title: str = "audio clip",
                       height: int = 480) -> go.Figure:
    """Heatmap of a similarity matrix (N, M) in [-1, 1]; rows top to bottom.

    ``row_labels`` / ``col_labels`` (e.g. the digit of each item) label the
    axes; sort the items by label beforehand to see class blocks.
    """
    s = _numpy(sim)
    if s.ndim != 2:
        raise ValueError(f"similarity matrix has shape {s.shape}; expected (N, M)")
    rows = [str(v) for v in row_labels] if row_labels is not None else [str(i) for i in range(s.shape[0])]
    cols = [str(v) for v in col_labels] if col_labels is not None else [str(j) for j in range(s.shape[1])]
    # positions on the axes, labels as tick text (labels repeat, so they cannot be the categories)
    fig = go.Figure(go.Heatmap(
        z=s, x=list(range(s.shape[1])), y=list(range(s.shape[0])), colorscale="RdBu_r", zmin=-1, zmax=1,
        colorbar=dict(title="cos"), customdata=np.array([[f"{r} vs {c}" for c in cols] for r in rows]),
        hovertemplate="%{customdata}: %{z:.2f}<extra></extra>",
    ))
    step_r, step_c = max(1, len(rows) // 20), max(1, len(cols) // 20)
    fig.update_xaxes(title_text=col_title, tickvals=list(range(0, len(cols), step_c)), ticktext=cols[::step_c])
    fig.update_yaxes(title_text=row_title, tickvals=list(range(0, len(rows), step_r)), ticktext=rows[::step_r],
                     autorange="reversed")
    fig.update_layout(title=title, height=height, **LAYOUT)
    return fig


def retrieval_examples(queries, retrieved, query_labels, retrieved_labels, similarities=None,
                       title: str = "Given a spoken digit, the closest images",
                       query_name: str = "heard", label_names: Sequence[str] | None = None) -> go.Figure:
    """One row per query: the query's spectrogram, then its top-k retrieved images.

    ``queries`` (Q, mels, frames); ``retrieved`` (Q, k, h, w); ``query_labels``
    (Q,); ``retrieved_labels`` (Q, k); ``similarities`` (Q, k) optional. A
    retrieved item's title is its label, with a check mark when it matches the
    query's label (class-level hit).
    """
    queries, retrieved = _numpy(queries), _numpy(retrieved)
    ql, rl = _numpy(query_labels).astype(int), _numpy(retrieved_labels).astype(int)
    sims = _numpy(similarities) if similarities is not None else None
    n_q, k = retrieved.shape[:2]
    if len(queries) != n_q or rl.shape != (n_q, k) or ql.shape != (n_q,):
        raise ValueError(f"queries {queries.shape}, retrieved {retrieved.shape}, labels {ql.shape} and {rl.shape} "
                         "disagree: expected (Q, ...), (Q, k, h, w), (Q,) and (Q, k)")
    name = (lambda c: label_names[c]) if label_names is not None else str
    titles = []
    for q in range(n_q):
        titles.append(f"{query_name}: <b>{name(ql[q])}</b>")
        for j in range(k):
            hit = rl[q, j] == ql[q]
            mark = f"<span style='color:{GOOD if hit else BAD}'>{'✓' if hit else '✗'}</span>"
            sim = f" ({sims[q, j]:.2f})" if sims is not None else ""
            titles.append(f"{mark} {rl[q, j]}{sim}")
    fig = make_subplots(rows=n_q, cols=k + 1, subplot_titles=titles, horizontal_spacing=0.015,
                        vertical_spacing=min(0.12, 0.5 / n_q), column_widths=[1.6] + [1.0] * k)
    lo, hi = float(queries.min()), float(queries.max())  # one colour scale for every spectrogram, with its bar
    for q in range(n_q):
        fig.add_trace(go.Heatmap(z=queries[q], colorscale="Viridis", zmin=lo, zmax=hi, showscale=q == 0,
                                 colorbar=dict(title=dict(text="log-mel", side="right"), thickness=10, len=0.5,
                                               x=-0.06, xanchor="right", y=1, yanchor="top"),
                                 hovertemplate="%{z:.1f}<extra></extra>"),
                      row=q + 1, col=1)
        for j in range(k):
            fig.add_trace(go.Heatmap(z=retrieved[q, j], colorscale="gray_r", showscale=False, hoverinfo="skip"),
                          row=q + 1, col=j + 2)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    for q in range(n_q):  # images with row 0 on top and square pixels; spectrograms keep low frequencies at the bottom
        for j in range(k):
            x_id = q * (k + 1) + j + 2  # plotly numbers the subplot axes row by row
            fig.update_yaxes(autorange="reversed", scaleanchor=f"x{x_id}", constrain="domain", row=q + 1, col=j + 2)
            fig.update_xaxes(constrain="domain", row=q + 1, col=j + 2)
    for q in range(n_q):  # the spectrogram column: axes named (time runs right, low frequencies at the bottom)
        fig.update_xaxes(visible=True, showticklabels=False, ticks="", showgrid=False, zeroline=False,
                         title_text="time →" if q == n_q - 1 else None, title_standoff=0, title_font_size=10,
                         row=q + 1, col=1)
        fig.update_yaxes(visible=True, showticklabels=False, ticks="", showgrid=False, zeroline=False,
                         title_text="mel band", title_standoff=0, title_font_size=10, row=q + 1, col=1)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=title, height=90 + 105 * n_q, **{**LAYOUT, "margin": dict(l=90, r=10, t=70, b=30)})
    return fig


def contrastive_curves(history: Mapping[str, Sequence[float]], title: str = "Contrastive training") -> go.Figure:
    """Left: training loss per epoch; right: every ``eval ... R@1`` curve of :func:`train_alignment`'s history."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("contrastive loss (train)", "recall@1 (test)"),
                        horizontal_spacing=0.12)
    epochs = list(history["epoch"])
    fig.add_trace(go.Scatter(x=epochs, y=list(history["train_loss"]), mode="lines+markers", name="loss",
                             line=dict(color="#7f7f7f"), showlegend=False), row=1, col=1)
    curves = [k for k in history if k.startswith("eval ") and k.endswith("R@1")]
    for i, key in enumerate(curves):
        # "eval class image->audio R@1" -> "digit-level image→audio"; "eval image->audio R@1" -> "clip-level ..."
        direction = key[5:-4].replace("class ", "").replace("->", "→")
        label = f"{'digit' if key.startswith('eval class ') else 'clip'}-level {direction}"
        fig.add_trace(go.Scatter(x=epochs, y=list(history[key]), mode="lines+markers", name=label,
                                 line=dict(color=PALETTE[i % len(PALETTE)], dash="solid" if "class" in key else "dot")),
                      row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="recall@1", range=[0, 1.02], row=1, col=2)
    fig.update_layout(title=title, height=400, **{**LAYOUT, "margin": dict(l=60, r=20, t=90, b=50)})
    return fig


def alignment_uniformity_figure(points: Mapping[str, tuple[float, float]], highlight: str | None = None,
                                title: str = "Alignment and uniformity (lower is better for both)") -> go.Figure:
    """Each setting as a point (alignment, uniformity), as in Wang & Isola (2020), Fig. 5."""
    names = list(points)
    xy = np.array([points[n] for n in names], dtype=float).reshape(-1, 2)
    colors = [BAD if n == highlight else "#1f77b4" for n in names]
    fig = go.Figure(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers+text", text=names, textposition="top center",
                               marker=dict(size=11, color=colors), hovertemplate="%{text}<br>alignment %{x:.3f}"
                               "<br>uniformity %{y:.3f}<extra></extra>",
                               name="one point per setting" + (f" (red: {highlight})" if highlight else "")))
    fig.update_layout(title=title, xaxis_title="alignment E||f(x)-f(y)||² (positive pairs)",
                      yaxis_title="uniformity log E exp(-2||f(x)-f(y)||²)", height=420, **LAYOUT)
    return fig


def method_comparison_figure(scores: Mapping[str, Mapping[str, float]], metrics: Sequence[str],
                             chance: Mapping[str, float] | float | None = None,
                             title: str = "Retrieval on the test set", yaxis_title: str = "recall") -> go.Figure:
    """Grouped bars: one group per metric, one bar per method (``{method: {metric: value}}``)."""
    fig = go.Figure()
    for i, (method, values) in enumerate(scores.items()):
        v = [float(values[m]) for m in metrics]
        fig.add_trace(go.Bar(x=list(metrics), y=v, name=method, marker_color=PALETTE[i % len(PALETTE)],
                             text=[f"{x:.0%}" for x in v], textposition="outside"))
    if chance is not None:
        levels = chance if isinstance(chance, Mapping) else {m: chance for m in metrics}
        fig.add_trace(go.Scatter(x=list(levels), y=[levels[m] for m in levels], mode="markers", name="chance",
                                 marker=dict(symbol="line-ew-open", size=40, color="#555", line=dict(width=2))))
    fig.update_layout(title=title, barmode="group", yaxis=dict(title=yaxis_title, range=[0, 1.12]), height=420,
                      **LAYOUT)
    return fig


def alignment_panel_figure(recall: Mapping[str, float], plane: Mapping[str, tuple[float, float]],
                           current: str, sim, labels=None, title: str = "") -> go.Figure:
    """The alignment panel's figure: recall@1 bars, the alignment-uniformity plane, a similarity matrix.

    ``recall``: ``{name: value}`` for the current setting; ``plane``: every
    precomputed setting's (alignment, uniformity), the ``current`` one in red;
    ``sim`` (n, n) test similarities (rows images, columns clips) with ``labels`` (n,).
    Trace order (updated in place by the panel): 0 bars, 1 all settings, 2 current setting, 3 heatmap.
    """
    fig = make_subplots(rows=1, cols=3, column_widths=[0.26, 0.37, 0.37], horizontal_spacing=0.11,
                        subplot_titles=("recall@1 on the test set", "alignment vs uniformity",
                                        "similarity: images x clips"))
    names = list(recall)
    values = [float(recall[k]) for k in names]
    fig.add_trace(go.Bar(x=names, y=values, text=[f"{v:.0%}" for v in values], textposition="outside",
                         marker_color=["#1f77b4", "#ff7f0e", "#aec7e8", "#ffbb78"][: len(names)], showlegend=False),
                  row=1, col=1)
    keys = list(plane)
    xy = np.array([plane[k] for k in keys], dtype=float).reshape(-1, 2)
    fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", text=keys,
                             name="grey: every precomputed (τ, B) setting",
                             marker=dict(size=9, color="#bbbbbb"), hovertemplate="%{text}<extra></extra>"),
                  row=1, col=2)
    cx, cy = plane[current]
    fig.add_trace(go.Scatter(x=[cx], y=[cy], mode="markers", text=[current], name="red star: this setting",
                             marker=dict(size=14, color=BAD, symbol="star"), hovertemplate="%{text}<extra></extra>"),
                  row=1, col=2)
    s = _numpy(sim)
    lab = [str(v) for v in (_numpy(labels) if labels is not None else range(len(s)))]
    fig.add_trace(go.Heatmap(z=s, colorscale="RdBu_r", zmin=-1, zmax=1, colorbar=dict(title="cos", len=0.9),
                             hovertemplate="image %{y}, clip %{x}: %{z:.2f}<extra></extra>"), row=1, col=3)
    step = max(1, len(lab) // 10)
    fig.update_yaxes(range=[0, 1.15], title_text="recall@1", row=1, col=1)
    pad_x = 0.1 * max(float(np.ptp(xy[:, 0])), 0.05)
    pad_y = 0.1 * max(float(np.ptp(xy[:, 1])), 0.05)
    fig.update_xaxes(title_text="alignment (lower: closer pairs)", row=1, col=2,
                     range=[xy[:, 0].min() - pad_x, xy[:, 0].max() + pad_x])
    fig.update_yaxes(title_text="uniformity (lower: spread)", row=1, col=2,
                     range=[xy[:, 1].min() - pad_y, xy[:, 1].max() + pad_y])
    fig.update_xaxes(title_text="clip (digit)", tickvals=list(range(0, len(lab), step)), ticktext=lab[::step],
                     row=1, col=3)
    fig.update_yaxes(title_text="image (digit)", tickvals=list(range(0, len(lab), step)), ticktext=lab[::step],
                     autorange="reversed", row=1, col=3)
    fig.update_xaxes(tickangle=-30, row=1, col=1)
    # no fixed width: the figure takes its output area's width (about 880 px beside JupyterLab's file
    # browser at 1280 px; a fixed 940 px hid the colour bar)
    fig.update_layout(title=title, height=520, legend=dict(orientation="h", yanchor="top", y=-0.3, x=0.25),
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=90, b=130)})
    return fig
