"""Figure builders for notebook 08 (efficiency): subset selection under a budget, search leaderboards and
the accuracy-versus-cost Pareto front. Numbers in, ``go.Figure`` out; nothing here trains.

:func:`selection_figure` is also the figure of :class:`mmlearn.widgets.BudgetPanel`, which updates it in
place with :func:`selection_traces` (same trace order, so ``fig.data[i]`` is always the same thing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from .core import LAYOUT, PALETTE

#: trace order of :func:`selection_figure`
SELECTION_TRACES = ("every subset", "greedy path", "greedy keeps", "best within budget", "budget")


def subset_label(subset) -> str:
    """``"{}"`` for the empty set, else the names joined by ``+`` in sorted order."""
    names = sorted(map(str, subset))
    return "+".join(names) if names else "{}"


def selection_traces(
    utilities: Mapping[frozenset, float],
    costs: Mapping[frozenset, float],
    path: Sequence[frozenset],
    chosen: frozenset,
    best: frozenset,
    budget: float,
    y_range: tuple[float, float],
) -> list[dict]:
    """The data of the five traces of :func:`selection_figure`, as dicts of ``x``, ``y``, ``text`` (and, for
    greedy's path, ``textposition``: labels alternate above-left and below-right so neighbours do not overlap).

    ``utilities`` / ``costs``: every subset's utility and total cost; ``path``: the nested sets greedy went
    through, ``{}`` first; ``chosen``: greedy's final set; ``best``: the brute-force optimum within ``budget``.
    """
    subsets = sorted(utilities, key=lambda s: (costs[s], len(s), subset_label(s)))
    every = dict(x=[float(costs[s]) for s in subsets], y=[float(utilities[s]) for s in subsets],
                 text=[subset_label(s) for s in subsets])
    walk = dict(x=[float(costs[s]) for s in path], y=[float(utilities[s]) for s in path],
                text=[subset_label(s) for s in path],
                textposition=["top left" if i % 2 == 0 else "bottom right" for i in range(len(path))])
    pick = dict(x=[float(costs[chosen])], y=[float(utilities[chosen])], text=[subset_label(chosen)])
    top = dict(x=[float(costs[best])], y=[float(utilities[best])], text=[subset_label(best)])
    line = dict(x=[float(budget), float(budget)], y=[float(y_range[0]), float(y_range[1])], text=["", ""])
    return [every, walk, pick, top, line]


def selection_title(chosen: frozenset, best: frozenset, utilities, costs, budget: float, label: str,
                    accuracy: Mapping[frozenset, float] | None = None) -> str:
    """Two lines: what greedy keeps for this budget and what it buys; the optimum.

    ``accuracy`` (optional, ``{subset: accuracy}``): also say the accuracy each set buys.
    """
    def buys(s):
        extra = f", accuracy {accuracy[s]:.1%}" if accuracy is not None else ""
        return f"{label} {utilities[s]:.3f}{extra}"

    head = f"budget {budget:g}: greedy keeps {subset_label(chosen)} (cost {costs[chosen]:g}, {buys(chosen)})"
    if utilities[best] > utilities[chosen] + 1e-12:
        return head + f"<br>brute force: {subset_label(best)} (cost {costs[best]:g}, {buys(best)}): greedy misses it"
    return head + "<br>brute force finds nothing better"


def selection_figure(
    utilities: Mapping[frozenset, float],
    costs: Mapping[frozenset, float],
    path: Sequence[frozenset],
    chosen: frozenset,
    best: frozenset,
    budget: float,
    *,
    utility_label: str = "validation accuracy",
    accuracy: Mapping[frozenset, float] | None = None,
    title: str | None = None,
    height: int = 460,
) -> go.Figure:
    """Every subset of modalities as a point (total cost, utility); greedy's path, its pick and the optimum.

    The dashed vertical line is the budget: points to its right are not affordable. The axis ranges are
    fixed from all subsets, so moving the budget does not rescale the figure. ``accuracy`` (optional): each
    subset's accuracy, named in the title when the utility is something else (e.g. bits).
    """
    values = np.array([float(v) for v in utilities.values()])
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.05 * (hi - lo), 0.01)
    y_range = (lo - pad, hi + 3 * pad)
    max_cost = max(float(c) for c in costs.values())
    data = selection_traces(utilities, costs, path, chosen, best, budget, y_range)
    # only greedy's path and the optimum are labelled (hover names every point): 16 labels would overlap
    styles = [
        dict(mode="markers", marker=dict(size=9, color="#bbbbbb", line=dict(color="#777", width=1))),
        dict(mode="lines+markers+text", textfont=dict(size=11, color=PALETTE[0]),
             line=dict(color=PALETTE[0], width=2), marker=dict(size=7, color=PALETTE[0])),
        dict(mode="markers", marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(color=PALETTE[0], width=3))),
        dict(mode="markers+text", textposition="top right", textfont=dict(size=11, color=PALETTE[3]),
             marker=dict(size=16, symbol="star", color=PALETTE[3], line=dict(color="black", width=1))),
        dict(mode="lines", line=dict(color="#444", dash="dash", width=2), hoverinfo="skip"),
    ]
    fig = go.Figure()
    for name, d, style in zip(SELECTION_TRACES, data, styles):
        fig.add_scatter(name=name, hovertemplate="%{text}: cost %{x}, %{y:.3f}<extra></extra>"
                        if name != "budget" else None, **d, **style)
    fig.update_layout(
        title=dict(text=title if title is not None else
                   selection_title(chosen, best, utilities, costs, budget, utility_label, accuracy), font=dict(size=14)),
        xaxis=dict(title="total cost of the modalities kept", range=[-0.5, max_cost + 1]),
        yaxis=dict(title=utility_label, range=list(y_range)),
        legend=dict(orientation="h", x=0, y=-0.18, yanchor="top"),
        height=height, width=None, **{**LAYOUT, "margin": dict(l=60, r=20, t=80, b=110)},
    )
    return fig


def leaderboard_figure(leaderboard: Sequence[tuple[str, float]], *, top: int = 10, title: str = "Leaderboard",
                       x_title: str = "validation accuracy", highlight: int = 0) -> go.Figure:
    """Horizontal bars, best at the top: ``leaderboard`` is ``[(label, value)]`` best first."""
    rows = list(leaderboard)[:top]
    labels = [str(r[0]) for r in rows][::-1]
    values = [float(r[1]) for r in rows][::-1]
    colors = [PALETTE[3] if i == len(rows) - 1 - highlight else PALETTE[0] for i in range(len(rows))]
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=colors, name=x_title,
                           text=[f"{v:.3f}" for v in values], textposition="outside", cliponaxis=False))
    lo = min(values) if values else 0.0
    hi = max(values) if values else 1.0
    fig.update_layout(title=title, xaxis=dict(title=x_title, range=[max(0.0, lo - 0.1), min(1.0, hi + 0.06)]),
                      yaxis=dict(automargin=True), height=max(260, 40 + 30 * len(rows)), showlegend=False,
                      **{**LAYOUT, "margin": dict(l=20, r=40, t=50, b=50)})
    return fig


def pareto_figure(points: Mapping[str, Mapping[str, float]], front: Sequence[str], *, cost: str = "flops_per_sample",
                  cost_title: str = "FLOPs per sample (log scale)", accuracy: str = "accuracy",
                  title: str = "Accuracy versus cost", log_x: bool = True, height: int = 460) -> go.Figure:
    """Every model as a labelled point (cost, accuracy); the Pareto front (``front``: names) as a line.

    ``points``: ``{model name: {cost: float, accuracy: float, ...}}``.
    """
    names = list(points)
    on = [n for n in names if n in front]
    off = [n for n in names if n not in front]
    fig = go.Figure()
    for group, style, label in ((off, dict(color="#999999", size=11), "dominated"),
                                (on, dict(color=PALETTE[3], size=14, line=dict(color="black", width=1)),
                                 "on the Pareto front")):
        fig.add_scatter(x=[points[n][cost] for n in group], y=[points[n][accuracy] for n in group], text=group,
                        mode="markers+text", textposition="top center", marker=style, name=label,
                        hovertemplate="%{text}: %{x:.3g}, %{y:.3f}<extra></extra>")
    ordered = sorted(on, key=lambda n: points[n][cost])
    fig.add_scatter(x=[points[n][cost] for n in ordered], y=[points[n][accuracy] for n in ordered], mode="lines",
                    line=dict(color=PALETTE[3], dash="dot"), name="front (cheapest first)", hoverinfo="skip")
    accs = [points[n][accuracy] for n in names]
    costs = [float(points[n][cost]) for n in names]
    if log_x:  # pad by 15 % of the decades spanned, so labels at the ends are not clipped
        lo, hi = np.log10(min(costs)), np.log10(max(costs))
        pad = 0.15 * max(hi - lo, 0.3)
        xaxis = dict(title=cost_title, type="log", range=[lo - pad, hi + pad], tickformat="~s")
    else:
        pad = 0.1 * max(max(costs) - min(costs), 1e-9)
        xaxis = dict(title=cost_title, range=[min(costs) - pad, max(costs) + pad])
    fig.update_layout(title=title, xaxis=xaxis,
                      yaxis=dict(title=accuracy.replace("_", " "),
                                 range=[max(0.0, min(accs) - 0.08), min(1.02, max(accs) + 0.06)]),
                      legend=dict(orientation="h", x=0, y=-0.18, yanchor="top"), height=height,
                      **{**LAYOUT, "margin": dict(l=60, r=30, t=50, b=100)})
    return fig


__all__ = [
    "SELECTION_TRACES",
    "leaderboard_figure",
    "pareto_figure",
    "selection_figure",
    "selection_title",
    "selection_traces",
    "subset_label",
]
