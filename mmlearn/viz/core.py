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
                    title: str = "Training curves", eval_label: str = "eval") -> go.Figure:
    """Loss (left) and accuracy (right) per epoch, train solid and evaluation dashed.

    ``histories``: one history from :func:`mmlearn.train.fit`, or ``{label: history}``.
    ``eval_label`` names the evaluation split in the legend (e.g. ``"test"``), so that
    the legend says what a title says about the dashed lines.
    """
    if "epoch" in histories:
        histories = {"model": histories}
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for i, (label, h) in enumerate(histories.items()):
        color = PALETTE[i % len(PALETTE)]
        for col, key in ((1, "loss"), (2, "acc")):
            for split, dash in (("train", "solid"), ("eval", "dash")):
                name = f"{split}_{key}"
                shown = eval_label if split == "eval" else split
                if name in h and len(h[name]):
                    fig.add_trace(
                        go.Scatter(
                            x=list(h["epoch"]), y=list(h[name]), mode="lines", name=f"{label} ({shown})",
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
        fig.add_hline(y=chance, line_dash="dot", line_color="grey", name=f"chance ({chance:.0%})", showlegend=True)
    fig.update_layout(title=title, yaxis=dict(title="accuracy", range=[0, 1.1]), height=380, showlegend=chance is not None,
                      **LAYOUT)
    return fig


def image_grid(images, titles: Sequence[str] | None = None, cols: int = 10, title: str = "",
               colorscale: str = "gray_r", height_per_row: int = 110, origin: str = "upper",
               axis_titles: tuple[str, str] | None = None, colorbar_title: str | None = None) -> go.Figure:
    """A grid of small 2-D arrays (digits or spectrograms) as heatmaps.

    ``origin="upper"`` draws row 0 at the top (images); ``"lower"`` at the
    bottom (spectrograms: low frequencies at the bottom). ``axis_titles``
    ``(x, y)`` shows axes with those titles (on the bottom row and the first
    column); ``colorbar_title`` adds one colour bar shared by every cell (all
    cells then use the same colour range), e.g. for spectrograms, whose values
    mean something.
    """
    arrays = [_numpy(a) for a in images]
    rows = int(np.ceil(len(arrays) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles) if titles else None,
                        horizontal_spacing=0.01 if axis_titles is None else 0.015,
                        vertical_spacing=0.08 if rows > 1 else 0.02)
    lo = float(min(a.min() for a in arrays)) if colorbar_title else None
    hi = float(max(a.max() for a in arrays)) if colorbar_title else None
    for i, a in enumerate(arrays):
        fig.add_trace(go.Heatmap(z=a, colorscale=colorscale, zmin=lo, zmax=hi,
                                 showscale=bool(colorbar_title) and i == 0,
                                 colorbar=dict(title=dict(text=colorbar_title or "", side="right"), thickness=12),
                                 hoverinfo="skip" if not colorbar_title else None,
                                 hovertemplate=None if not colorbar_title else "%{z:.1f}<extra></extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    if axis_titles is None:
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False, autorange="reversed" if origin == "upper" else True)
    else:
        fig.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False)
        fig.update_yaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False,
                         autorange="reversed" if origin == "upper" else True)
        for c in range(1, min(cols, len(arrays)) + 1):
            fig.update_xaxes(title_text=axis_titles[0], title_standoff=2, title_font_size=11, row=rows, col=c)
        for r in range(1, rows + 1):
            fig.update_yaxes(title_text=axis_titles[1], title_standoff=2, title_font_size=11, row=r, col=1)
    margin = dict(l=10, r=10, t=60, b=10) if axis_titles is None else dict(l=40, r=10, t=60, b=40)
    fig.update_layout(title=title, height=60 + rows * height_per_row + (30 if axis_titles else 0),
                      **{**LAYOUT, "margin": margin})
    return fig


def preview_array(x) -> np.ndarray:
    """One input as a 2-D array to draw: images and spectrograms as they are, a vector as one row."""
    a = _numpy(x).astype(float)
    return a.reshape(1, -1) if a.ndim == 1 else a.reshape(a.shape[-2], a.shape[-1])


def accuracy_confusion_figure(accuracy: Mapping[str, float], counts, class_names: Sequence[str] | None = None,
                              title: str = "", *, references: Mapping[str, float] | None = None,
                              chance: float | None = None, previews: Mapping[str, object] | None = None,
                              preview_ranges: Mapping[str, tuple[float, float]] | None = None,
                              preview_label: str = "the input the model sees") -> go.Figure:
    """Left: accuracy bars (e.g. ``{"clean": .93, "now": .71}``); right: confusion matrix.

    ``references``: horizontal reference lines on the bars, labelled in the
    legend (e.g. ``{"image removed": .81, "audio removed": .72}``);
    ``chance``: a dotted chance line, also in the legend. ``previews``:
    ``{modality: one input}`` drawn under the bars (an image as it is, a
    spectrogram with low frequencies at the bottom, a vector as one row), so a
    panel can show the corrupted input next to the accuracy; ``preview_ranges``
    fixes each one's colour range (the clean data's), so noise shows as change.

    The figure of the modality panel; its traces are updated in place:
    trace 0 the bars, trace 1 the confusion matrix, traces ``2 ..`` the previews
    in the order of ``previews``. Reference and chance lines are layout shapes.
    """
    previews = dict(previews or {})
    n_prev = len(previews)
    if n_prev:
        specs = [[{"colspan": n_prev}] + [None] * (n_prev - 1) + [{"rowspan": 2}],
                 [{} for _ in range(n_prev)] + [None]]
        widths = [0.36 / n_prev] * n_prev + [0.64]
        fig = make_subplots(rows=2, cols=n_prev + 1, specs=specs, column_widths=widths, row_heights=[0.55, 0.45],
                            horizontal_spacing=0.06, vertical_spacing=0.22,
                            subplot_titles=["accuracy", "confusion matrix (rows: true digit)"] + list(previews))
        bar_at, heat_at = dict(row=1, col=1), dict(row=1, col=n_prev + 1)
    else:
        fig = make_subplots(rows=1, cols=2, column_widths=[0.3, 0.7], horizontal_spacing=0.12,
                            subplot_titles=("accuracy", "confusion matrix (rows: true digit)"))
        bar_at, heat_at = dict(row=1, col=1), dict(row=1, col=2)
    names = list(accuracy)
    values = [float(accuracy[k]) for k in names]
    fig.add_trace(go.Bar(x=names, y=values, text=[f"{v:.1%}" for v in values], textposition="outside",
                         marker_color=["#7f7f7f", "#1f77b4"][: len(names)] + ["#1f77b4"] * max(0, len(names) - 2),
                         showlegend=False), **bar_at)
    heat = confusion_heatmap(counts, class_names)
    heat.update(colorbar=dict(title="share", x=1.0, len=0.9, thickness=14))
    fig.add_trace(heat, **heat_at)
    for i, (m, x) in enumerate(previews.items()):
        lo, hi = (preview_ranges or {}).get(m, (None, None))
        z = preview_array(x)
        fig.add_trace(go.Heatmap(z=z, colorscale="gray_r" if m != "audio" else "Viridis", zmin=lo, zmax=hi,
                                 showscale=False, hovertemplate=f"{m}: %{{z:.2f}}<extra></extra>"), row=2, col=i + 1)
        spectrogram = m == "audio"
        fig.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, row=2, col=i + 1,
                         title_text="time frame" if spectrogram else "", title_standoff=2, title_font_size=11,
                         constrain="domain")
        fig.update_yaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, row=2, col=i + 1,
                         autorange=True if spectrogram else "reversed", title_standoff=2, title_font_size=11,
                         title_text="mel band" if spectrogram else "", constrain="domain",
                         **({} if spectrogram or z.shape[0] == 1 else
                            {"scaleanchor": fig.get_subplot(2, i + 1).xaxis.plotly_name.replace("axis", "")}))
    if n_prev:  # one caption over the previews, whose own titles are just the modality names
        x0, x1 = fig.get_subplot(2, 1).xaxis.domain[0], fig.get_subplot(2, n_prev).xaxis.domain[1]
        top = fig.get_subplot(2, 1).yaxis.domain[1]
        fig.add_annotation(text=preview_label, x=(x0 + x1) / 2, y=top + 0.07, xref="paper", yref="paper",
                           xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=12, color="#444"))
    fig.update_yaxes(range=[0, 1.15], title_text="accuracy", **bar_at)
    # the subplot title says the rows are the true digit; an axis title here would run into the bars
    fig.update_yaxes(autorange="reversed", title_text=None if n_prev else "true", **heat_at)
    fig.update_xaxes(title_text="predicted", **heat_at)
    line = dict(xref="x domain", x0=0, x1=1, yref="y", type="line")
    dashes = ["dash", "dashdot", "longdash", "longdashdot"]
    for i, (label, value) in enumerate((references or {}).items()):
        fig.add_shape(**line, y0=float(value), y1=float(value), name=f"{label} ({float(value):.0%})", showlegend=True,
                      line=dict(color=PALETTE[(i + 2) % len(PALETTE)], dash=dashes[i % len(dashes)], width=2))
    if chance is not None:
        fig.add_shape(**line, y0=float(chance), y1=float(chance), name=f"chance ({float(chance):.0%})",
                      showlegend=True, line=dict(color="grey", dash="dot", width=2))
    # room above the subplot titles for the panel's own title; the legend (reference lines) below
    fig.update_layout(title=dict(text=title, y=0.98, yanchor="top"), height=600 if n_prev else 460,
                      legend=dict(orientation="h", yanchor="top", y=-0.06, x=0, font_size=12),
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=100, b=70)})
    return fig
