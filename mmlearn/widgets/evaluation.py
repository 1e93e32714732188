"""The evaluation panel: pick models, conditions and a metric from a report card; nothing is re-evaluated.

Layer 1 (pure): :func:`evaluation_view` reads a :class:`mmlearn.evaluation.ReportCard`
table (every model already evaluated under every condition) and returns the bar
values for one state. Layer 2: :func:`mmlearn.viz.evaluation.report_card_figure`.
Layer 3: :class:`EvaluationPanel`, one bar trace per model of the card, updated
in place (hidden when the model is not picked).
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as W

from ..viz.evaluation import METRIC_LABELS, report_card_figure, report_card_traces
from .base import Panel

METRICS = ("accuracy", "macro_f1")


def evaluation_view(table, *, models: Sequence[str], conditions: Sequence[str], metric: str = "accuracy",
                    task: str | None = None, all_models: Sequence[str] | None = None) -> dict:
    """What the panel draws for one state: ``{"conditions", "metric", "task", "traces"}``.

    ``traces``: one ``{"name", "x", "y", "visible"}`` per model of ``all_models``
    (default: the models picked), ``y`` the metric under each picked condition (in
    the table's order), ``visible`` whether the model is picked; plus ``best``:
    ``(model, value)`` of the highest mean over the picked conditions. Picking no
    model or no condition is a ``ValueError`` that says so.
    """
    models, conditions = list(models), list(conditions)
    if not models:
        raise ValueError("Pick at least one model to compare.")
    if not conditions:
        raise ValueError("Pick at least one condition to evaluate under.")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    order = list(dict.fromkeys(table["condition"]))
    conditions = [c for c in order if c in conditions]
    all_models = list(models) if all_models is None else list(all_models)
    values = {tr["name"]: tr["y"] for tr in report_card_traces(table, metric, all_models, conditions, task)}
    traces = [{"name": m, "x": conditions, "y": values[m], "visible": m in models} for m in all_models]
    means = {m: sum(values[m]) / len(conditions) for m in models}
    best = max(means, key=means.get)
    return {"conditions": conditions, "metric": metric, "task": task, "traces": traces, "best": (best, means[best])}


class EvaluationPanel(Panel):
    """Compare the models of a report card under the conditions you pick.

    ``card``: a :class:`mmlearn.evaluation.ReportCard`. Controls: ``models`` and
    ``conditions`` (multiple choice), ``metric`` (accuracy or macro-F1) and, when
    the card has several tasks, ``task``. Every number was measured when the card
    was made, so a change only filters the table (cached per state).
    """

    def __init__(self, card, *, chance: float | None = None, title: str = "Report card: pick models and conditions"):
        self.card = card
        self.table = card.table
        self.all_models = card.models
        self.all_conditions = card.conditions
        self.chance = chance
        style = {"description_width": "75px"}
        controls: dict[str, W.Widget] = {
            "models": W.SelectMultiple(options=self.all_models, value=tuple(self.all_models),
                                       rows=min(len(self.all_models), 6), description="models", style=style,
                                       layout=W.Layout(width="250px")),
            "conditions": W.SelectMultiple(options=self.all_conditions, value=tuple(self.all_conditions),
                                           rows=min(len(self.all_conditions), 6), description="conditions",
                                           style=style, layout=W.Layout(width="250px")),
            "metric": W.Dropdown(options=[(METRIC_LABELS[m], m) for m in METRICS], value="accuracy",
                                 description="metric", style=style, layout=W.Layout(width="220px")),
        }
        tasks = card.tasks
        if len(tasks) > 1:
            controls["task"] = W.Dropdown(options=tasks, value=tasks[0], description="task", style=style,
                                          layout=W.Layout(width="250px"))
        self.controls = controls
        state = {k: c.value for k, c in controls.items()}
        first = self.compute(state)
        # built with its final data and title: Voila drops changes made before display
        figure = report_card_figure(self.table, "accuracy", models=self.all_models, conditions=first["conditions"],
                                    task=first["task"], chance=chance, title=self._title(first))
        super().__init__(controls, figure, title)
        self._cache[self._key(state)] = first
        self.last_result = first

    def _title(self, result: dict) -> str:
        best, value = result["best"]
        task = f" ({result['task']})" if len(self.card.tasks) > 1 else ""
        return f"{METRIC_LABELS[result['metric']]}{task}; best mean over the picked conditions: {best} ({value:.2f})"

    def compute(self, state: dict) -> dict:
        return evaluation_view(self.table, models=state["models"], conditions=state["conditions"],
                               metric=state["metric"], task=state.get("task", self.card.tasks[0]),
                               all_models=self.all_models)

    def draw(self, result: dict) -> None:
        label = METRIC_LABELS[result["metric"]]
        for trace, tr in zip(self.figure.data, result["traces"]):
            trace.x = tr["x"]
            trace.y = tr["y"]
            trace.text = [f"{v:.2f}" for v in tr["y"]]
            trace.visible = tr["visible"]
        if len(self.figure.data) > len(result["traces"]):  # the chance line spans the picked conditions
            chance = self.figure.data[len(result["traces"])]
            chance.x = result["conditions"]
            chance.y = [self.chance] * len(result["conditions"])
            chance.visible = result["metric"] == "accuracy"
        self.figure.layout.yaxis.title.text = f"test {label}"
        self.figure.layout.title.text = self._title(result)
