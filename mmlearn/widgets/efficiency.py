"""The budget panel: a cost budget, and which modalities greedy selection keeps for it.

Layer 1 (pure, no widgets):

- :func:`subset_utilities`: the utility of every subset of modalities, computed once (cheap for 3-5
  modalities: 8-32 subsets), so that the panel only looks values up;
- :func:`subset_costs`: the total cost of every subset;
- :func:`budget_selection`: greedy selection (:func:`mmlearn.efficiency.greedy_modality_selection`, gain
  per cost) and brute force (:func:`mmlearn.efficiency.brute_force_selection`) on the precomputed values,
  optionally with the best-single-modality safeguard of Leskovec et al. (2007);
- :func:`budget_controls_disabled`: which controls do nothing in a state.

Layer 2 is :func:`mmlearn.viz.selection_figure`; layer 3 is :class:`BudgetPanel`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as W

from ..efficiency import brute_force_selection, greedy_modality_selection
from ..viz.efficiency import selection_figure, selection_title, selection_traces
from .base import Panel


def _subsets(modalities: Sequence) -> list[frozenset]:
    return [frozenset(c) for k in range(len(modalities) + 1) for c in itertools.combinations(modalities, k)]


def subset_utilities(utility: Callable[[frozenset], float], modalities: Sequence) -> dict[frozenset, float]:
    """``{subset: utility(subset)}`` for all ``2^M`` subsets of ``modalities`` (the empty one included)."""
    mods = list(modalities)
    if not mods:
        raise ValueError("modalities is empty")
    if len(mods) > 8:
        raise ValueError(f"{len(mods)} modalities make {2 ** len(mods)} subsets: too many to precompute")
    return {s: float(utility(s)) for s in _subsets(mods)}


def subset_costs(costs: Mapping, modalities: Sequence | None = None) -> dict[frozenset, float]:
    """``{subset: sum of its modalities' costs}`` for all subsets of ``modalities`` (default: ``costs``' keys)."""
    mods = list(costs) if modalities is None else list(modalities)
    missing = [m for m in mods if m not in costs]
    if missing:
        raise ValueError(f"costs: no cost given for {missing}")
    return {s: float(sum(costs[m] for m in s)) for s in _subsets(mods)}


def budget_selection(utilities: Mapping[frozenset, float], costs: Mapping, budget: float,
                     best_single: bool = False) -> dict:
    """Greedy and brute-force selection on precomputed subset utilities, for one cost budget.

    ``utilities``: ``{frozenset: value}`` over every subset (:func:`subset_utilities`); ``costs``:
    ``{modality: cost > 0}``. Greedy is :func:`~mmlearn.efficiency.greedy_modality_selection` with
    ``costs`` (largest gain per cost that still fits). With ``best_single``, the result is the better of
    greedy's set and the best single affordable modality (the safeguard that restores a constant-factor
    guarantee for the cost-benefit rule). Returns ``{"chosen", "path", "greedy", "best", "utility",
    "best_utility", "cost", "selection"}``: ``path`` lists the nested sets greedy went through, ``{}`` first;
    ``greedy`` is greedy's own set (before the safeguard).
    """
    mods = list(costs)
    lookup = dict(utilities)
    for s in _subsets(mods):
        if s not in lookup:
            raise ValueError(f"utilities lacks the subset {sorted(map(str, s))}: precompute every subset")

    def f(s):
        return lookup[frozenset(s)]

    sel = greedy_modality_selection(f, mods, budget, costs=costs)
    path = [frozenset()] + [frozenset(sel.order[: i + 1]) for i in range(len(sel.order))]
    greedy = path[-1]
    chosen = greedy
    if best_single:
        singles = [frozenset([m]) for m in mods if costs[m] <= budget + 1e-12]
        if singles:
            single = max(singles, key=lambda s: (lookup[s], -mods.index(next(iter(s)))))
            if lookup[single] > lookup[greedy] + 1e-12:
                chosen = single
    best, best_value = brute_force_selection(f, mods, budget, costs=costs)
    best = frozenset(best)
    return {"chosen": chosen, "path": path, "greedy": greedy, "best": best, "utility": lookup[chosen],
            "best_utility": float(best_value), "cost": float(sum(costs[m] for m in chosen)), "selection": sel}


def budget_controls_disabled(state: Mapping, costs: Mapping) -> dict[str, bool]:
    """The safeguard box does nothing while no single modality fits the budget (nothing can be kept)."""
    return {"best_single": float(state["budget"]) < min(float(c) for c in costs.values()) - 1e-12}


class BudgetPanel(Panel):
    """A cost-budget slider and the best-single-modality box over precomputed subset utilities.

    ``utilities``: ``{frozenset: value}`` over every subset of the modalities (:func:`subset_utilities`,
    e.g. with :func:`mmlearn.efficiency.accuracy_utility`); ``costs``: ``{modality: cost}``. The figure shows
    every subset at (cost, utility), greedy's path and final set, the brute-force optimum and the budget line;
    moving the slider only looks values up (no training), so it answers in milliseconds. ``accuracy``
    (optional, ``{frozenset: accuracy}``): when the utility is not an accuracy (e.g. bits), the title also
    says the accuracy each set buys.
    """

    def __init__(self, utilities: Mapping[frozenset, float], costs: Mapping, *, budget: float | None = None,
                 step: float = 0.5, utility_label: str = "validation accuracy",
                 accuracy: Mapping[frozenset, float] | None = None,
                 title: str = "Greedy modality selection under a cost budget"):
        self.costs = {m: float(c) for m, c in costs.items()}
        self.utilities = {frozenset(s): float(v) for s, v in utilities.items()}
        self.subset_cost = subset_costs(self.costs)
        self.utility_label = utility_label
        self.accuracy = None if accuracy is None else {frozenset(k): float(v) for k, v in accuracy.items()}
        if self.accuracy is not None and set(self.accuracy) != set(self.utilities):
            raise ValueError("accuracy must hold the same subsets as utilities")
        total = sum(self.costs.values())
        budget = total / 2 if budget is None else float(budget)
        controls = {
            "budget": W.FloatSlider(value=budget, min=0.0, max=total, step=step, description="cost budget",
                                    continuous_update=False, readout_format=".1f",
                                    style={"description_width": "90px"}, layout=W.Layout(width="420px")),
            "best_single": W.Checkbox(value=False, description="also try the best single modality",
                                      indent=False, layout=W.Layout(width="280px")),
        }
        first = self.compute({name: c.value for name, c in controls.items()})
        self._y_range = None
        figure = selection_figure(self.utilities, self.subset_cost, first["path"], first["chosen"], first["best"],
                                  budget, utility_label=utility_label, accuracy=self.accuracy)
        self._y_range = tuple(figure.layout.yaxis.range)
        super().__init__(controls, figure, title)
        self._cache[self._key(self.state())] = first
        self.last_result = first
        self._apply_disabled()

    def compute(self, state: dict) -> dict:
        out = budget_selection(self.utilities, self.costs, float(state["budget"]), bool(state["best_single"]))
        out["budget"] = float(state["budget"])
        return out

    def _apply_disabled(self) -> None:
        for name, off in budget_controls_disabled(self.state(), self.costs).items():
            self.controls[name].disabled = off

    def draw(self, result: dict) -> None:
        data = selection_traces(self.utilities, self.subset_cost, result["path"], result["chosen"], result["best"],
                                result["budget"], self._y_range)
        for trace, d in zip(self.figure.data, data):
            trace.update(d)
        self.figure.layout.title.text = selection_title(result["chosen"], result["best"], self.utilities,
                                                        self.subset_cost, result["budget"], self.utility_label,
                                                        self.accuracy)

    def update(self, change=None) -> None:
        super().update(change)
        self._apply_disabled()


__all__ = ["BudgetPanel", "budget_controls_disabled", "budget_selection", "subset_costs", "subset_utilities"]
