"""The balance panel: pick a balance method and its strength, see what each encoder learned.

Layer 1 is :func:`balance_lookup` (pure: a precomputed grid in, numbers out);
layer 2 is :func:`mmlearn.viz.balance_panel_figure`; layer 3 is
:class:`BalancePanel`. The grid comes from :func:`mmlearn.experiments.balance.run_balance_grid`
(all training happens there, once); moving a control only looks results up.
"""

from __future__ import annotations

import ipywidgets as W

from ..experiments.balance import BALANCE_METHODS
from ..train import subset_accuracies
from ..viz import balance_panel_figure
from .base import Panel

#: how the panel names each method
METHOD_LABELS = {
    "joint": "plain joint",
    "ogm_ge": "OGM-GE",
    "agm": "AGM",
    "mmpareto": "MMPareto",
    "ume": "UME (ensemble)",
    "umt": "UMT (teacher)",
    "attribution": "attribution reg.",
    "mcr": "MCR game",
}


def grid_alphas(grid: dict, method: str) -> list[float]:
    """The strengths precomputed for ``method`` in ``grid``, sorted."""
    return sorted(alpha for (m, alpha) in grid["runs"] if m == method)


def missing_accuracy(model, test, missing: str) -> float:
    """Test accuracy of ``model`` with modality ``missing`` absent in every row (zero-filled, marked absent)."""
    names = list(test.modalities)
    if missing not in names:
        raise ValueError(f"unknown modality {missing!r}; the data has {names}")
    rest = [m for m in names if m != missing]
    if not rest:
        raise ValueError(f"{missing!r} is the only modality: nothing is left when it is missing")
    return subset_accuracies(model, test, [rest])["+".join(rest)]


def with_missing_accuracy(grid: dict, test) -> dict:
    """A copy of ``grid`` whose runs carry ``"missing": {m: accuracy with m missing}`` for every modality.

    Needs the runs' models (``run_balance_grid(..., keep_models=True)``); runs
    that already have ``"missing"`` keep it. The input grid is not changed.
    """
    runs = {}
    for key, run in grid["runs"].items():
        if "missing" not in run:
            if run.get("model") is None:
                raise ValueError(f"run {key} has no model to evaluate with a modality missing: build the grid with "
                                 "run_balance_grid(..., keep_models=True)")
            run = {**run, "missing": {m: missing_accuracy(run["model"], test, m) for m in grid["modalities"]}}
        runs[key] = run
    return {**grid, "runs": runs}


def balance_lookup(grid: dict, method: str, alpha: float, missing: str | None = None) -> dict:
    """Numbers for one (method, strength) of a precomputed grid.

    Returns ``{"alone", "joint", "method": {modality: [probe accuracy per epoch]},
    "accuracy": {"plain joint": acc, label: acc}, "missing": {"plain joint": acc, label: acc} | None,
    "final": {modality: probe}, "label"}``; ``"missing"`` is the test accuracy with modality
    ``missing`` (default: the first, the strong one) absent, from the runs' ``"missing"`` entries
    (:func:`with_missing_accuracy`), or ``None`` when the grid has none.
    Raises ``ValueError`` (shown by the panel) for a method or strength not in the grid.
    """
    if method not in BALANCE_METHODS:
        raise ValueError(f"unknown balance method {method!r}; expected one of {sorted(BALANCE_METHODS)}")
    runs = grid["runs"]
    key = (method, float(alpha))
    if key not in runs:
        have = grid_alphas(grid, method)
        if not have:
            raise ValueError(f"{METHOD_LABELS.get(method, method)} was not precomputed in this grid.")
        raise ValueError(f"{METHOD_LABELS.get(method, method)} with strength {alpha:g} was not precomputed; "
                         f"available: {', '.join(f'{a:g}' for a in have)}.")
    if ("joint", 0.0) not in runs:
        raise ValueError("the grid has no plain joint run ('joint', 0.0) to compare with")
    run, joint = runs[key], runs[("joint", 0.0)]
    label = METHOD_LABELS.get(method, method)
    if method not in ("joint", "ume"):
        label = f"{label} ({alpha:g})"
    missing = grid["modalities"][0] if missing is None else missing
    lost = None
    if "missing" in run and "missing" in joint:
        lost = {"plain joint": joint["missing"][missing], label: run["missing"][missing]}
    return {
        "alone": grid["unimodal"]["probe"],
        "joint": joint["probe"],
        "method": run["probe"],
        "accuracy": {"plain joint": joint["test_acc"][-1], label: run["test_acc"][-1]},
        "missing": lost,
        "final": {m: v[-1] for m, v in run["probe"].items()},
        "label": label,
    }


class BalancePanel(Panel):
    """A method dropdown and a strength slider over a precomputed grid; the figure updates in place.

    ``grid``: the output of :func:`mmlearn.balance.run_balance_grid`. The
    strength slider offers only the strengths computed for the chosen method,
    and is disabled for a method with a single one (plain joint, UME).
    ``test``: the test batch; with it (and a grid built with
    ``keep_models=True``) the panel also shows the accuracy with ``missing``
    (default: the first modality, the strong one) absent, what balancing buys.
    """

    def __init__(self, grid: dict, *, method: str = "mmpareto", test=None, missing: str | None = None,
                 title: str = "Modality balance: pick a method"):
        if test is not None:
            grid = with_missing_accuracy(grid, test)
        self.grid = grid
        self.modalities = list(grid["modalities"])
        self.missing = self.modalities[0] if missing is None else missing
        if self.missing not in self.modalities:
            raise ValueError(f"unknown modality {self.missing!r}; the grid has {self.modalities}")
        methods = [m for m in BALANCE_METHODS if grid_alphas(grid, m)]
        if not methods:
            raise ValueError("the grid holds no runs")
        if method not in methods:
            method = methods[0]
        alphas = grid_alphas(grid, method)
        method_control = W.Dropdown(options=[(METHOD_LABELS.get(m, m), m) for m in methods], value=method,
                                    description="method")
        alpha_control = W.SelectionSlider(options=alphas, value=alphas[len(alphas) // 2], description="strength",
                                          continuous_update=False, disabled=len(alphas) < 2)
        # before Panel registers its observers: keep the strength options in step with the method
        method_control.observe(self._sync_alphas, names="value")
        self._alpha_control = alpha_control
        first = self.compute({"method": method, "alpha": alpha_control.value})
        figure = balance_panel_figure(first["alone"], first["joint"], first["method"], first["accuracy"],
                                      self.modalities, method_label=first["label"], title=self._title(first),
                                      missing=first["missing"], missing_label=f"{self.missing} missing")
        super().__init__({"method": method_control, "alpha": alpha_control}, figure, title)
        self._cache[self._key(self.state())] = first
        self.last_result = first

    def _sync_alphas(self, change) -> None:
        alphas = grid_alphas(self.grid, change["new"])
        current = self._alpha_control.value
        nearest = min(alphas, key=lambda a: abs(a - current))
        # every intermediate state is a grid entry of the new method, so each lookup succeeds
        self._alpha_control.options = alphas
        self._alpha_control.value = nearest
        self._alpha_control.disabled = len(alphas) < 2

    def _title(self, result: dict) -> str:
        parts = ", ".join(f"{m} probe {v:.1%}" for m, v in result["final"].items())
        if result["missing"] is not None:
            parts += f"; {self.missing} missing: {result['missing'][result['label']]:.1%}"
        return f"{result['label']}: {parts}"

    def compute(self, state: dict) -> dict:
        return balance_lookup(self.grid, state["method"], state["alpha"], missing=self.missing)

    def draw(self, result: dict) -> None:
        n = len(self.modalities)
        for i, m in enumerate(self.modalities):
            line = self.figure.data[3 * i + 2]
            line.y = list(result["method"][m])
            line.x = list(range(1, len(result["method"][m]) + 1))
            line.name = result["label"]
        bar_sets = [result["accuracy"]] + ([result["missing"]] if result["missing"] is not None else [])
        for j, values in enumerate(bar_sets):
            bars = self.figure.data[3 * n + j]
            bars.x = list(values)
            bars.y = list(values.values())
            bars.text = [f"{v:.0%}" for v in values.values()]
        self.figure.layout.title.text = self._title(result)
