"""Notebook 08's layers 1-3: subset utilities, budget selection, the budget panel and the efficiency figures.

The panel's choice for a budget must equal ``greedy_modality_selection`` run on the same utilities and
costs, its star must equal ``brute_force_selection``; the Pareto highlight must equal ``pareto_front``.
"""

import itertools
import math
import time

import numpy as np
import pytest

from mmlearn.efficiency import brute_force_selection, greedy_modality_selection, mutual_information_utility, pareto_front
from mmlearn.viz import leaderboard_figure, pareto_figure, selection_figure
from mmlearn.viz.efficiency import SELECTION_TRACES, subset_label
from mmlearn.widgets import BudgetPanel, budget_controls_disabled, budget_selection, subset_costs, subset_utilities

COSTS = {"camera": 4.0, "lidar": 3.0, "radar": 2.0, "microphone": 1.0}


def noisy_copies(flips):
    """Y ~ Bern(1/2), X_i = Y xor N_i: the exact distribution as weighted support (conditionally independent)."""
    rows, weights = [], []
    for y in (0, 1):
        for noise in itertools.product((0, 1), repeat=len(flips)):
            rows.append([y ^ n for n in noise] + [y])
            weights.append(0.5 * math.prod(p if n else 1 - p for p, n in zip(flips, noise)))
    a = np.array(rows)
    return {m: a[:, i] for i, m in enumerate(COSTS)}, a[:, -1], np.array(weights)


@pytest.fixture(scope="module")
def utilities():
    x, y, w = noisy_copies((0.05, 0.1, 0.2, 0.4))
    return subset_utilities(mutual_information_utility(x, y, weights=w), list(COSTS))


def test_subset_utilities_and_costs_cover_every_subset(utilities):
    assert len(utilities) == 16 and utilities[frozenset()] == 0.0
    # monotone: adding a modality never loses information
    for s, v in utilities.items():
        for m in COSTS:
            assert utilities[s | {m}] >= v - 1e-12
    costs = subset_costs(COSTS)
    assert costs[frozenset({"camera", "radar"})] == 6.0 and costs[frozenset()] == 0.0 and len(costs) == 16
    with pytest.raises(ValueError, match="no cost"):
        subset_costs({"a": 1.0}, ["a", "b"])
    with pytest.raises(ValueError, match="too many"):
        subset_utilities(lambda s: 0.0, [f"m{i}" for i in range(9)])


@pytest.mark.parametrize("budget", [0.0, 0.5, 1.0, 2.5, 3.0, 4.0, 5.0, 6.5, 7.0, 9.0, 10.0])
def test_budget_selection_equals_greedy_and_brute_force(utilities, budget):
    out = budget_selection(utilities, COSTS, budget)
    sel = greedy_modality_selection(lambda s: utilities[frozenset(s)], list(COSTS), budget, costs=COSTS)
    best, value = brute_force_selection(lambda s: utilities[frozenset(s)], list(COSTS), budget, costs=COSTS)
    assert out["chosen"] == frozenset(sel.order) == out["greedy"]
    assert out["path"][0] == frozenset() and out["path"][-1] == out["chosen"]
    assert all(a < b for a, b in zip(out["path"], out["path"][1:]))  # nested, one modality at a time
    assert out["best"] == frozenset(best) and out["best_utility"] == pytest.approx(value)
    assert out["cost"] <= budget + 1e-9
    assert out["utility"] <= out["best_utility"] + 1e-12


def test_best_single_safeguard_rescues_the_cost_benefit_trap():
    # a cheap modality with a little information has a better gain per cost than a costly excellent one
    costs = {"cheap": 1.0, "costly": 10.0}
    util = {frozenset(): 0.0, frozenset({"cheap"}): 0.2, frozenset({"costly"}): 1.0, frozenset({"cheap", "costly"}): 1.0}
    plain = budget_selection(util, costs, 10.0)
    assert plain["chosen"] == frozenset({"cheap"}) and plain["best"] == frozenset({"costly"})
    safe = budget_selection(util, costs, 10.0, best_single=True)
    assert safe["chosen"] == frozenset({"costly"}) and safe["greedy"] == frozenset({"cheap"})
    assert safe["utility"] == 1.0


def test_budget_selection_refuses_incomplete_utilities():
    with pytest.raises(ValueError, match="lacks the subset"):
        budget_selection({frozenset(): 0.0, frozenset({"a"}): 1.0}, {"a": 1.0, "b": 1.0}, 2.0)


def test_controls_disabled_when_nothing_fits():
    assert budget_controls_disabled({"budget": 0.5}, COSTS) == {"best_single": True}
    assert budget_controls_disabled({"budget": 1.0}, COSTS) == {"best_single": False}


def test_selection_figure_shows_greedy_and_the_optimum(utilities):
    out = budget_selection(utilities, COSTS, 5.0)
    fig = selection_figure(utilities, subset_costs(COSTS), out["path"], out["chosen"], out["best"], 5.0)
    assert [t.name for t in fig.data] == list(SELECTION_TRACES)
    assert len(fig.data[0].x) == 16
    assert fig.data[2].text == (subset_label(out["chosen"]),)
    assert fig.data[3].text == (subset_label(out["best"]),)
    assert fig.data[4].x == (5.0, 5.0)
    assert "budget 5" in fig.layout.title.text


def test_budget_panel_follows_the_slider_and_matches_greedy(utilities):
    panel = BudgetPanel(utilities, COSTS, budget=3.0)
    fig = panel.figure
    assert fig.data[4].x == (3.0, 3.0)
    for budget in (0.0, 1.0, 4.0, 6.0, 10.0):
        before = (fig.data[2].text, fig.data[4].x)
        panel.controls["budget"].value = budget
        assert panel.error is None
        sel = greedy_modality_selection(lambda s: utilities[frozenset(s)], list(COSTS), budget, costs=COSTS)
        best, _ = brute_force_selection(lambda s: utilities[frozenset(s)], list(COSTS), budget, costs=COSTS)
        assert fig.data[2].text == (subset_label(frozenset(sel.order)),)
        assert fig.data[3].text == (subset_label(frozenset(best)),)
        assert fig.data[4].x == (budget, budget)
        assert (fig.data[2].text, fig.data[4].x) != before
        assert panel.controls["best_single"].disabled == (budget < 1.0)
    panel.controls["budget"].value = 4.0
    panel.controls["best_single"].value = True
    assert panel.last_result["utility"] >= panel.last_result["best_utility"] - 1.0  # still a valid lookup
    assert panel.last_result["cost"] <= 4.0


def test_budget_panel_names_the_accuracy_a_set_buys(utilities):
    accuracy = {s: 0.5 + 0.1 * len(s) for s in utilities}
    panel = BudgetPanel(utilities, COSTS, budget=4.0, utility_label="bits", accuracy=accuracy)
    chosen = panel.last_result["chosen"]
    assert f"accuracy {accuracy[chosen]:.1%}" in panel.figure.layout.title.text
    panel.controls["budget"].value = 1.0
    assert "greedy keeps microphone" in panel.figure.layout.title.text
    assert "accuracy 60.0%" in panel.figure.layout.title.text
    with pytest.raises(ValueError, match="same subsets"):
        BudgetPanel(utilities, COSTS, accuracy={frozenset(): 0.5})


def test_budget_panel_answers_fast(utilities):
    panel = BudgetPanel(utilities, COSTS)
    times = []
    for i in range(30):
        t0 = time.perf_counter()
        panel.controls["budget"].value = float(i % 21) * 0.5
        times.append(time.perf_counter() - t0)
    assert float(np.median(times)) < 0.2


def test_pareto_figure_highlights_exactly_the_front():
    points = {"a": {"accuracy": 0.9, "flops_per_sample": 1e5}, "b": {"accuracy": 0.8, "flops_per_sample": 1e4},
              "c": {"accuracy": 0.7, "flops_per_sample": 5e4}, "d": {"accuracy": 0.95, "flops_per_sample": 1e6},
              "e": {"accuracy": 0.85, "flops_per_sample": 2e5}}
    front = pareto_front(list(points.values()))
    names = [n for n, p in points.items() if any(p is q for q in front)]
    assert sorted(names) == ["a", "b", "d"]
    fig = pareto_figure(points, names)
    assert sorted(fig.data[1].text) == names and sorted(fig.data[0].text) == ["c", "e"]
    assert list(fig.data[2].x) == sorted(points[n]["flops_per_sample"] for n in names)
    assert fig.layout.xaxis.type == "log"


def test_leaderboard_figure_best_on_top():
    fig = leaderboard_figure([("x", 0.9), ("y", 0.8), ("z", 0.7)], top=2)
    assert fig.data[0].y == ("y", "x") and fig.data[0].x == (0.8, 0.9)
