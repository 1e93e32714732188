"""Figures for multimodal interactions (notebook 07): PID bars, synergy bounds, fusion per interaction, the meter.

Numbers in, ``go.Figure`` out; PID terms are dicts (or :class:`~mmlearn.interactions.PIDResult`) in bits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .core import LAYOUT, PALETTE

#: the four PID terms, as keys and as axis labels
PID_TERMS = ("redundancy", "unique1", "unique2", "synergy")
PID_LABELS = ("R", "U1", "U2", "S")
#: one colour per term (redundancy blue, unique x1 green, unique x2 purple, synergy red)
PID_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#d62728")
FUSION_LABELS = {"late": "late", "early": "early", "concat": "concat", "tensor": "tensor (TFN)",
                 "low_rank": "low-rank (LMF)", "cross_attention": "attention"}


def _terms(result) -> dict[str, float]:
    d = result.as_dict() if hasattr(result, "as_dict") else dict(result)
    missing = [t for t in PID_TERMS if t not in d]
    if missing:
        raise ValueError(f"a PID result needs the terms {PID_TERMS}; missing {missing}")
    return {t: float(d[t]) for t in PID_TERMS}


def pid_bars_figure(results: Mapping[str, object], title: str = "Partial information decomposition (bits)",
                    y_max: float | None = None, height: int = 380) -> go.Figure:
    """The four PID terms of each data set, grouped by data set: one trace per term (R, U1, U2, S).

    ``results``: ``{set name: PIDResult or dict of the four terms}``.
    """
    if not results:
        raise ValueError("pid_bars_figure needs at least one result")
    names = list(results)
    terms = {n: _terms(r) for n, r in results.items()}
    fig = go.Figure()
    for t, label, color in zip(PID_TERMS, PID_LABELS, PID_COLORS):
        values = [terms[n][t] for n in names]
        fig.add_bar(x=names, y=values, name=f"{label} ({t})", marker_color=color,
                    text=[f"{v:.2f}" for v in values], textposition="outside", textfont=dict(size=10))
    top = y_max if y_max is not None else max(1.0, max(max(v.values()) for v in terms.values())) * 1.15
    many = len(names) > 6  # long category names: angled ticks, legend below them
    fig.update_layout(title=title, barmode="group", height=height + (60 if many else 0),
                      yaxis=dict(title="bits", range=[0, top]), xaxis=dict(tickangle=-35 if many else 0),
                      legend=dict(title="term", orientation="h", y=-0.45 if many else -0.18, yanchor="top"),
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=60, b=190 if many else 110)})
    return fig


def synergy_bounds_figure(rows: Sequence[Mapping[str, float]],
                          title: str = "Label-free synergy bounds (Eq. 8) against the true synergy",
                          height: int = 400) -> go.Figure:
    """One interval per distribution, from ``lower`` to ``upper``, and the true synergy as a marker.

    ``rows``: dicts with ``name``, ``lower``, ``upper``, ``synergy``.
    """
    if not rows:
        raise ValueError("synergy_bounds_figure needs at least one row")
    names = [str(r["name"]) for r in rows]
    lower = np.array([r["lower"] for r in rows], dtype=float)
    upper = np.array([r["upper"] for r in rows], dtype=float)
    true = np.array([r["synergy"] for r in rows], dtype=float)
    fig = go.Figure()
    fig.add_bar(x=names, y=np.maximum(upper - lower, 0.004), base=lower, name="bounds [lower, upper]",
                marker_color="rgba(214,39,40,0.25)", marker_line=dict(color="#d62728", width=1), width=0.6)
    fig.add_scatter(x=names, y=true, mode="markers", name="true synergy S",
                    marker=dict(symbol="diamond", size=10, color="#222222"))
    fig.update_layout(title=title, height=height, yaxis=dict(title="synergy (bits)", rangemode="tozero"),
                      xaxis=dict(tickangle=-45 if len(names) > 8 else 0),
                      legend=dict(orientation="h", y=-0.25 if len(names) > 8 else -0.15, yanchor="top"),
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=60, b=120)})
    return fig


def fusion_interaction_figure(accuracies: Mapping[str, Mapping[str, Sequence[float]]],
                              title: str = "Which fusion wins on which interaction (mean over seeds, bars: min-max)",
                              y_range: tuple[float, float] | None = None, height: int = 400) -> go.Figure:
    """Grouped bars: one group per data set, one bar per fusion method, error bars spanning the seeds.

    ``accuracies``: ``{data set: {method: [accuracy per seed]}}``.
    """
    if not accuracies:
        raise ValueError("fusion_interaction_figure needs at least one data set")
    sets = list(accuracies)
    methods = list(next(iter(accuracies.values())))
    fig = go.Figure()
    lows = []
    for i, m in enumerate(methods):
        runs = [np.asarray(accuracies[s][m], dtype=float) for s in sets]
        mean = np.array([r.mean() for r in runs])
        lows.append(min(r.min() for r in runs))
        fig.add_bar(x=sets, y=mean, name=FUSION_LABELS.get(m, m), marker_color=PALETTE[i % len(PALETTE)],
                    error_y=dict(type="data", symmetric=False, array=[r.max() - r.mean() for r in runs],
                                 arrayminus=[r.mean() - r.min() for r in runs], thickness=1.2, width=3))
    lo = y_range if y_range is not None else (max(0.0, min(lows) - 0.05), 1.0)
    fig.update_layout(title=title, barmode="group", height=height, yaxis=dict(title="test accuracy", range=list(lo)),
                      legend=dict(title="fusion", orientation="h", y=-0.15, yanchor="top"),
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=60, b=110)})
    return fig


# --------------------------------------------------------------------------------------
# The interaction meter
# --------------------------------------------------------------------------------------


#: the meter's colours: design, estimate, bounds, synergy markers, best fusion
METER_COLORS = ("#1f3b73", "#8fb3e0", "rgba(214,39,40,0.25)", "#222222", "#d62728")


def meter_title(summary: Mapping) -> str:
    """The meter's title: the state and the verdict on fusion."""
    r, u, s = summary["state"]
    v = summary["verdict"]
    best = FUSION_LABELS.get(v["best"], v["best"])
    if v["clear"]:
        verdict = f"{best} wins"
    else:
        verdict = f"{best} best, tied with {', '.join(FUSION_LABELS.get(t, t) for t in v['tied'])}"
    return f"redundancy {r:g}, uniqueness {u:g}, synergy {s:g}: {verdict}"[:110]


def meter_trace_updates(summary: Mapping) -> list[dict]:
    """The data of the meter's five traces for one :func:`~mmlearn.widgets.interactions.interaction_summary`.

    Order: design bars, estimate bars, synergy bounds (bars from lower to upper), synergy markers, fusion bars.
    Every trace gets its marker colour each time: a ``FigureWidget`` sends the updates of one ``batch_update`` as
    one restyle, and a trace left out of a property there (``marker.color`` set for the fusion bars only) is reset
    to the default colour in the browser.
    """
    design, est = _terms(summary["design"]), _terms(summary["estimate"])
    b, db = summary["bounds"], summary["design_bounds"]
    stats = summary["verdict"]["stats"]
    methods = list(summary["fusion"])
    best = summary["verdict"]["best"]
    mean = [stats[m]["mean"] for m in methods]
    return [
        dict(x=list(PID_LABELS), y=[design[t] for t in PID_TERMS], text=[f"{design[t]:.2f}" for t in PID_TERMS],
             marker=dict(color=METER_COLORS[0])),
        dict(x=list(PID_LABELS), y=[est[t] for t in PID_TERMS], text=[f"{est[t]:.2f}" for t in PID_TERMS],
             marker=dict(color=METER_COLORS[1])),
        dict(x=["design", "samples"], base=[db["lower"], b["lower"]], marker=dict(color=METER_COLORS[2]),
             y=[max(db["upper"] - db["lower"], 0.004), max(b["upper"] - b["lower"], 0.004)],
             customdata=[[db["lower"], db["upper"]], [b["lower"], b["upper"]]]),
        dict(x=["design", "samples"], y=[design["synergy"], est["synergy"]], marker=dict(color=METER_COLORS[3])),
        dict(x=[FUSION_LABELS.get(m, m) for m in methods], y=mean, text=[f"{v:.1%}" for v in mean],
             marker=dict(color=[METER_COLORS[4] if m == best else "#7f7f7f" for m in methods]),
             error_y=dict(type="data", symmetric=False, array=[stats[m]["max"] - stats[m]["mean"] for m in methods],
                          arrayminus=[stats[m]["mean"] - stats[m]["min"] for m in methods], thickness=1.2, width=3)),
    ]


def interaction_meter_figure(summary: Mapping, width: int = 820, height: int = 470) -> go.Figure:
    """The meter: the PID the sliders mean (design) next to the estimate from samples, the synergy bounds,
    and the test accuracy of each fusion method (mean over seeds, bars: min-max; the best in red).

    ``summary``: :func:`mmlearn.widgets.interactions.interaction_summary`. 820 px wide by default: it fits an
    860 px page, and JupyterLab's output area (848 px in the browser test, padding included).
    """
    fig = make_subplots(rows=1, cols=3, column_widths=[0.36, 0.24, 0.40], horizontal_spacing=0.09,
                        subplot_titles=("PID (bits)", "synergy: bounds", "fusion test accuracy"))
    up = meter_trace_updates(summary)
    fig.add_trace(go.Bar(name="design (latents)", textposition="outside",
                         textfont=dict(size=9), legendgroup="pid", **up[0]), row=1, col=1)
    fig.add_trace(go.Bar(name="estimate (samples)", textposition="outside",
                         textfont=dict(size=9), legendgroup="pid", **up[1]), row=1, col=1)
    fig.add_trace(go.Bar(name="label-free bounds", width=0.5,
                         hovertemplate="%{x}: [%{customdata[0]:.2f}, %{customdata[1]:.2f}] bits<extra></extra>",
                         **up[2]), row=1, col=2)
    fig.add_trace(go.Scatter(name="synergy S", mode="markers", **up[3]), row=1, col=2)
    fig.data[2].marker.line = dict(color="#d62728", width=1)
    fig.data[3].marker.update(symbol="diamond", size=11)
    fig.add_trace(go.Bar(name="fusion (best in red)", textposition="outside", textfont=dict(size=9),
                         showlegend=True, **up[4]), row=1, col=3)
    fig.update_yaxes(range=[0, 1.18], title_text="bits", row=1, col=1)
    fig.update_yaxes(range=[0, 1.18], row=1, col=2)
    fig.update_yaxes(range=[0.4, 1.08], title_text="accuracy", row=1, col=3)
    fig.update_xaxes(tickangle=-30, row=1, col=3)
    # the colorway repeats the trace colours: JupyterLab showed the default colours on a FigureWidget that had
    # been updated before display, while the Python state kept ours; trace i falls back to colorway[i]
    fig.update_layout(colorway=list(METER_COLORS[:4]) + ["#7f7f7f"])
    fig.update_layout(title=dict(text=meter_title(summary), font=dict(size=14)), barmode="group",
                      width=width, height=height, legend=dict(orientation="h", y=-0.22, yanchor="top", x=0),
                      **{**LAYOUT, "margin": dict(l=55, r=15, t=70, b=110)})
    return fig
