"""Figures for the fusion zoo (notebook 03): numbers in, ``go.Figure`` out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .core import LAYOUT, PALETTE, modality_color, preview_array

SELECTED_COLOR = "#d62728"
OTHER_COLOR = "#9ecae1"


def _ordered(values: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def fusion_comparison_figure(rows: Sequence[Mapping], title: str = "Fusion methods: accuracy, size and cost",
                             chance: Mapping[str, float] | None = None) -> go.Figure:
    """Three stacked panels sharing the x axis (fusion method), one bar colour per dataset:
    test accuracy, number of parameters (log scale) and training time (s).

    ``rows``: dicts with ``dataset``, ``fusion``, ``accuracy``, ``params``,
    ``train_s`` (as from :func:`mmlearn.experiments.fusion.runs_table`).
    ``chance``: optional ``{dataset: chance accuracy}`` drawn as dotted lines.
    """
    if not rows:
        raise ValueError("fusion_comparison_figure needs at least one row")
    for key in ("dataset", "fusion", "accuracy", "params", "train_s"):
        if key not in rows[0]:
            raise ValueError(f"rows need a {key!r} entry; got keys {sorted(rows[0])}")
    datasets = _ordered([r["dataset"] for r in rows])
    fusions = _ordered([r["fusion"] for r in rows])
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=("test accuracy", "parameters (encoders + fusion + head)", "training time"))
    for i, ds in enumerate(datasets):
        by_fusion = {r["fusion"]: r for r in rows if r["dataset"] == ds}
        color = PALETTE[i % len(PALETTE)]
        for row, key, fmt in ((1, "accuracy", "{:.1%}"), (2, "params", "{:,}"), (3, "train_s", "{:.2f} s")):
            y = [by_fusion[f][key] if f in by_fusion else None for f in fusions]
            fig.add_trace(go.Bar(x=fusions, y=y, name=ds, legendgroup=ds, showlegend=row == 1, marker_color=color,
                                 customdata=[fmt.format(v) if v is not None else "" for v in y],
                                 hovertemplate=f"{ds}<br>%{{x}}: %{{customdata}}<extra></extra>"),
                          row=row, col=1)
        if chance and ds in chance:
            fig.add_hline(y=chance[ds], line_dash="dot", line_color=color, row=1, col=1,
                          name=f"chance ({ds}, {chance[ds]:.0%})", showlegend=True, legendgroup=ds)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(title_text="parameters", type="log", dtick=1, row=2, col=1)
    fig.update_yaxes(title_text="seconds", row=3, col=1)
    fig.update_xaxes(title_text="fusion method", row=3, col=1)
    fig.update_layout(title=title, barmode="group", height=780, legend_title_text="dataset",
                      **{**LAYOUT, "margin": dict(l=70, r=20, t=90, b=60)})
    return fig


def fusion_panel_figure(accuracy: Mapping[str, float], reference: Mapping[str, float], selected: str,
                        weights: Mapping[str, float] | None, weight_label: str = "per-modality weight",
                        modalities: Sequence[str] = (), title: str = "", *, chance: float | None = None,
                        previews: Mapping[str, object] | None = None,
                        preview_ranges: Mapping[str, tuple[float, float]] | None = None,
                        preview_label: str = "input now") -> go.Figure:
    """Left: accuracy of every fusion under the current condition (the selected one highlighted)
    with each one's clean accuracy as a marker and a labelled chance line. Right: the selected
    fusion's mean per-modality weights (gates, selection shares), or an empty panel with a note;
    with ``previews`` (``{modality: one input}``), under it the corrupted input of one test sample.

    The figure of :class:`mmlearn.widgets.FusionPanel`; its traces are updated in place:
    trace 0 current accuracy bars, trace 1 clean markers, trace 2 weight bars, traces ``3 ..``
    the previews in the order of ``previews``.
    """
    names = list(accuracy)
    if selected not in accuracy:
        raise ValueError(f"selected fusion {selected!r} is not among {names}")
    previews = dict(previews or {})
    n_prev = len(previews)
    if n_prev:
        specs = [[{"rowspan": 2}, {"colspan": n_prev}] + [None] * (n_prev - 1),
                 [None] + [{} for _ in range(n_prev)]]
        fig = make_subplots(rows=2, cols=1 + n_prev, specs=specs, column_widths=[0.6] + [0.4 / n_prev] * n_prev,
                            row_heights=[0.5, 0.5], horizontal_spacing=0.08, vertical_spacing=0.2,
                            subplot_titles=["accuracy of every fusion now", "weights of the selected fusion"]
                            + list(previews))
    else:
        fig = make_subplots(rows=1, cols=2, column_widths=[0.68, 0.32], horizontal_spacing=0.1,
                            subplot_titles=("accuracy of every fusion now", "weights of the selected fusion"))
    values = [float(accuracy[n]) for n in names]
    fig.add_trace(go.Bar(x=names, y=values, name="now", text=[f"{v:.0%}" for v in values], textposition="outside",
                         marker_color=[SELECTED_COLOR if n == selected else OTHER_COLOR for n in names]),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=names, y=[float(reference[n]) for n in names], mode="markers", name="clean, all on",
                             marker=dict(symbol="line-ew-open", size=22, line=dict(width=3, color="#333"))),
                  row=1, col=1)
    mods = list(weights) if weights else list(modalities)
    w = [float(weights[m]) for m in mods] if weights else [0.0] * len(mods)
    fig.add_trace(go.Bar(x=mods, y=w, name=weight_label, showlegend=False, text=[f"{v:.2f}" for v in w],
                         textposition="outside", marker_color=[modality_color(m, i) for i, m in enumerate(mods)]),
                  row=1, col=2)
    for i, (m, x) in enumerate(previews.items()):
        lo, hi = (preview_ranges or {}).get(m, (None, None))
        z = preview_array(x)
        spectrogram = m == "audio"
        fig.add_trace(go.Heatmap(z=z, colorscale="Viridis" if spectrogram else "gray_r", zmin=lo, zmax=hi,
                                 showscale=False, showlegend=False, hovertemplate=f"{m}: %{{z:.2f}}<extra></extra>"),
                      row=2, col=2 + i)
        fig.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, constrain="domain",
                         title_text="time frame" if spectrogram else "", title_standoff=2, title_font_size=11,
                         row=2, col=2 + i)
        fig.update_yaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, constrain="domain",
                         autorange=True if spectrogram else "reversed", title_text="mel band" if spectrogram else "",
                         title_standoff=2, title_font_size=11, row=2, col=2 + i,
                         **({} if spectrogram or z.shape[0] == 1 else
                            {"scaleanchor": fig.get_subplot(2, 2 + i).xaxis.plotly_name.replace("axis", "")}))
    if n_prev:  # one caption over the previews, whose own titles are just the modality names
        x0, x1 = fig.get_subplot(2, 2).xaxis.domain[0], fig.get_subplot(2, 1 + n_prev).xaxis.domain[1]
        top = fig.get_subplot(2, 2).yaxis.domain[1]
        fig.add_annotation(text=preview_label, x=(x0 + x1) / 2, y=top + 0.075, xref="paper", yref="paper",
                           xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=12, color="#444"))
    if chance is not None:
        fig.add_hline(y=float(chance), line_dash="dot", line_color="grey", name=f"chance ({float(chance):.0%})",
                      showlegend=True, row=1, col=1)
    fig.update_yaxes(title_text="test accuracy", range=[0, 1.12], row=1, col=1)
    fig.update_yaxes(title_text=weight_label, range=[0, 1.12], row=1, col=2)
    fig.update_xaxes(tickangle=-30, row=1, col=1)
    fig.update_layout(title=title, height=520 if n_prev else 460, legend=dict(orientation="h", y=-0.3, x=0),
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=90, b=120)})
    return fig


def solver_trace_figure(traces: Mapping[str, Sequence[float]], tol: float | None = None,
                        title: str = "DEQ fusion: fixed-point residual per solver step") -> go.Figure:
    """Relative residual ``||f(z) - z|| / ||f(z)||`` (log scale) against the solver step, one line per solver."""
    fig = go.Figure()
    for i, (name, values) in enumerate(traces.items()):
        fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=list(values), mode="lines+markers", name=name,
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    if tol is not None:
        fig.add_hline(y=tol, line_dash="dot", line_color="grey", name=f"tolerance ({tol:g})", showlegend=True)
    fig.update_layout(title=title, xaxis_title="evaluations of f",
                      yaxis=dict(title="relative residual", type="log", dtick=1),
                      height=380, **LAYOUT)
    return fig


def xor_grid_figure(probabilities: Mapping[str, np.ndarray], title: str = "P(y = 1 | x1, x2) on the four XOR inputs",
                    truth: np.ndarray | None = None) -> go.Figure:
    """One 2x2 heatmap per method: predicted probability of class 1 for each bit pair.

    ``probabilities[name]``: (2, 2) array indexed ``[x1, x2]``. ``truth`` (2, 2), if given, is drawn first.
    """
    panels = dict(probabilities)
    if truth is not None:
        panels = {"truth<br>x1 XOR x2": np.asarray(truth), **panels}
    names = list(panels)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.04)
    for i, name in enumerate(names, start=1):
        p = np.asarray(panels[name], dtype=float)
        if p.shape != (2, 2):
            raise ValueError(f"probabilities[{name!r}] has shape {p.shape}; expected (2, 2)")
        fig.add_trace(go.Heatmap(z=p, x=["x2 = 0", "x2 = 1"], y=["x1 = 0", "x1 = 1"], zmin=0, zmax=1,
                                 colorscale="RdBu_r", showscale=i == len(names), text=np.round(p, 2),
                                 texttemplate="%{text}", colorbar=dict(title="P(y=1)")),
                      row=1, col=i)
        fig.update_yaxes(autorange="reversed", showticklabels=i == 1, row=1, col=i)
    fig.update_layout(title=title, height=320, **{**LAYOUT, "margin": dict(l=60, r=20, t=110, b=40)})
    return fig


def tfn_lmf_cost_figure(modalities: Sequence[int], tfn_params: Sequence[int], lmf_params: Mapping[str, Sequence[int]],
                        title: str = "Parameters of the fusion layer as modalities are added") -> go.Figure:
    """Parameters (log scale) of TensorFusion vs LowRankFusion (one line per rank) against the number of modalities."""
    fig = go.Figure(go.Scatter(x=list(modalities), y=list(tfn_params), mode="lines+markers", name="TensorFusion",
                               line=dict(color=PALETTE[3])))
    for i, (label, values) in enumerate(lmf_params.items()):
        fig.add_trace(go.Scatter(x=list(modalities), y=list(values), mode="lines+markers", name=label,
                                 line=dict(color=PALETTE[i % 3])))
    fig.update_layout(title=title, xaxis=dict(title="number of modalities M", dtick=1),
                      yaxis=dict(title="parameters", type="log", dtick=1),
                      height=360, **LAYOUT)
    return fig
