"""Figure builders shared by every notebook: numbers in, ``go.Figure`` out.

Builders never train or evaluate; they take arrays and return a figure, so the
widget panels can reuse them to update a ``FigureWidget`` in place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: one colour per modality name, stable across notebooks
MODALITY_COLORS = {"image": "#1f77b4", "audio": "#ff7f0e", "x1": "#2ca02c", "x2": "#9467bd", "text": "#8c564b"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), font=dict(size=13))


def modality_color(name: str, i: int = 0) -> str:
    return MODALITY_COLORS.get(name, PALETTE[i % len(PALETTE)])


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def json_safe_z(z) -> list:
    """A 2-D array as nested lists with ``None`` where it is NaN.

    Plotly draws ``None`` as a gap, as it does NaN; but a ``FigureWidget`` sends
    its data to the browser as strict JSON, where NaN is not allowed (the kernel
    then warns "Out of range float values are not JSON compliant").
    """
    a = np.asarray(_numpy(z), dtype=float)
    return np.where(np.isnan(a), None, a).tolist()


def training_curves(histories: Mapping[str, Mapping[str, Sequence[float]]] | Mapping[str, Sequence[float]],
                    title: str = "Training curves") -> go.Figure:
    """Loss (left) and accuracy (right) per epoch, train solid and evaluation dashed.

    ``histories``: one history from :func:`mmlearn.train.fit`, or ``{label: history}``.
    """
    if "epoch" in histories:
        histories = {"model": histories}
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for i, (label, h) in enumerate(histories.items()):
        color = PALETTE[i % len(PALETTE)]
        for col, key in ((1, "loss"), (2, "acc")):
            for split, dash in (("train", "solid"), ("eval", "dash")):
                name = f"{split}_{key}"
                if name in h and len(h[name]):
                    fig.add_trace(
                        go.Scatter(
                            x=list(h["epoch"]), y=list(h[name]), mode="lines", name=f"{label} ({split})",
                            line=dict(color=color, dash=dash), legendgroup=label, showlegend=col == 1,
                        ),
                        row=1, col=col,
                    )
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=2)
    fig.update_layout(title=dict(text=title, y=0.97, yanchor="top"), height=400,
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=90, b=50)})
    return fig


def embedding_scatter(embeddings, labels, title: str = "Embeddings (PCA)", label_names: Sequence[str] | None = None,
                      max_points: int = 2000, seed: int = 0) -> go.Figure:
    """2-D PCA (scikit-learn) of ``embeddings`` (N, d), one colour per label.

    At most ``max_points`` points are drawn (a seeded subsample) to keep the
    figure light in the browser.
    """
    from sklearn.decomposition import PCA

    z, y = _numpy(embeddings).reshape(len(labels), -1), _numpy(labels)
    if len(z) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(z), max_points, replace=False))
        z, y = z[keep], y[keep]
    xy = PCA(n_components=2, random_state=seed).fit_transform(z) if z.shape[1] > 2 else z
    fig = go.Figure()
    for i, c in enumerate(np.unique(y)):
        sel = y == c
        name = label_names[int(c)] if label_names is not None else str(c)
        fig.add_trace(go.Scattergl(x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=name,
                                   marker=dict(size=5, color=PALETTE[i % len(PALETTE)], opacity=0.75)))
    fig.update_layout(title=title, xaxis_title="PC 1", yaxis_title="PC 2", height=450, **LAYOUT)
    return fig


def confusion_counts(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class ``i`` predicted as ``j``."""
    y_true, y_pred = _numpy(y_true).astype(int), _numpy(y_pred).astype(int)
    counts = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def confusion_heatmap(counts, class_names: Sequence[str] | None = None, normalize: bool = True) -> go.Heatmap:
    """The heatmap trace of a confusion matrix (rows: true, columns: predicted)."""
    counts = _numpy(counts)
    n = counts.shape[0]
    names = [str(c) for c in (class_names if class_names is not None else range(n))]
    z = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    return go.Heatmap(z=z, x=names, y=names, colorscale="Blues", zmin=0, zmax=1 if normalize else None,
                      text=counts, texttemplate="%{text}", hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
                      colorbar=dict(title="share" if normalize else "count"))


def confusion_matrix_figure(y_true, y_pred, n_classes: int, class_names: Sequence[str] | None = None,
                            title: str = "Confusion matrix") -> go.Figure:
    """Row-normalised confusion matrix with counts written in the cells."""
    fig = go.Figure(confusion_heatmap(confusion_counts(y_true, y_pred, n_classes), class_names))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true", height=450,
                      yaxis=dict(autorange="reversed"), **LAYOUT)
    return fig


def subset_accuracy_figure(accuracies: Mapping[str, float], title: str = "Accuracy per modality subset",
                           chance: float | None = None) -> go.Figure:
    """Bar chart of accuracy per modality subset, e.g. ``{"image": .7, "audio": .6, "image+audio": .9}``."""
    names = list(accuracies)
    values = [float(accuracies[k]) for k in names]
    fig = go.Figure(go.Bar(x=names, y=values, text=[f"{v:.1%}" for v in values], textposition="outside",
                           marker_color=[modality_color(k, i) if "+" not in k else "#2ca02c" for i, k in enumerate(names)]))
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dot", line_color="grey", annotation_text="chance")
    fig.update_layout(title=title, yaxis=dict(title="accuracy", range=[0, 1.1]), height=380, **LAYOUT)
    return fig


def image_grid(images, titles: Sequence[str] | None = None, cols: int = 10, title: str = "",
               colorscale: str = "gray_r", height_per_row: int = 110, origin: str = "upper") -> go.Figure:
    """A grid of small 2-D arrays (digits or spectrograms) as heatmaps.

    ``origin="upper"`` draws row 0 at the top (images); ``"lower"`` at the
    bottom (spectrograms: low frequencies at the bottom).
    """
    arrays = [_numpy(a) for a in images]
    rows = int(np.ceil(len(arrays) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles) if titles else None,
                        horizontal_spacing=0.01, vertical_spacing=0.08 if rows > 1 else 0.02)
    for i, a in enumerate(arrays):
        fig.add_trace(go.Heatmap(z=a, colorscale=colorscale, showscale=False, hoverinfo="skip"),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed" if origin == "upper" else True)
    fig.update_layout(title=title, height=60 + rows * height_per_row, **{**LAYOUT, "margin": dict(l=10, r=10, t=60, b=10)})
    return fig


def accuracy_confusion_figure(accuracy: Mapping[str, float], counts, class_names: Sequence[str] | None = None,
                              title: str = "") -> go.Figure:
    """Left: accuracy bars (e.g. ``{"clean": .93, "now": .71}``); right: confusion matrix.

    The figure of the modality panel; its traces are updated in place.
    """
    fig = make_subplots(rows=1, cols=2, column_widths=[0.3, 0.7], horizontal_spacing=0.12,
                        subplot_titles=("accuracy", "confusion matrix (rows: true digit)"))
    names = list(accuracy)
    values = [float(accuracy[k]) for k in names]
    fig.add_trace(go.Bar(x=names, y=values, text=[f"{v:.1%}" for v in values], textposition="outside",
                         marker_color=["#7f7f7f", "#1f77b4"][: len(names)] + ["#1f77b4"] * max(0, len(names) - 2),
                         showlegend=False), row=1, col=1)
    heat = confusion_heatmap(counts, class_names)
    heat.update(colorbar=dict(title="share", x=1.0, len=0.9))
    fig.add_trace(heat, row=1, col=2)
    fig.update_yaxes(range=[0, 1.15], title_text="accuracy", row=1, col=1)
    fig.update_yaxes(autorange="reversed", title_text="true", row=1, col=2)
    fig.update_xaxes(title_text="predicted", row=1, col=2)
    # room above the subplot titles for the panel's own title
    fig.update_layout(title=dict(text=title, y=0.97, yanchor="top"), height=460,
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=100, b=60)})
    return fig
