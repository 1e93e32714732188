"""The interaction meter: the design, the committed grid, the pure summary, the figures and the panel."""

import time

import numpy as np
import plotly.graph_objects as go
import pytest

from mmlearn.interactions import pairwise_marginals, pid, pid_from_samples, synergy_bounds
from mmlearn.viz import fusion_interaction_figure, interaction_meter_figure, pid_bars_figure, synergy_bounds_figure
from mmlearn.widgets import InteractionMeter, interaction_summary
from mmlearn.widgets.interactions import (
    GRID_SETTINGS,
    SLIDER_VALUES,
    design_codes,
    design_labels,
    design_pid,
    direction,
    fusion_verdict,
    grid_directions,
    latent_views_split,
    load_interaction_grid,
    meter_point,
)

TERMS = ("redundancy", "unique1", "unique2", "synergy")


@pytest.fixture(scope="module")
def grid():
    return load_interaction_grid()


def test_direction_is_scale_free_and_refuses_all_zero():
    assert direction(0.5, 0.5, 0) == direction(1, 1, 0) == (1.0, 1.0, 0.0)
    assert direction(0.5, 0, 1) == (0.5, 0.0, 1.0)
    with pytest.raises(ValueError, match="All three sliders are at 0"):
        direction(0, 0, 0)
    with pytest.raises(ValueError, match=">= 0"):
        direction(-1, 0, 1)
    assert len(grid_directions()) == 19  # 26 non-zero states of {0, .5, 1}^3, 7 of them scaled copies


def test_design_labels_are_the_generators_labels():
    from mmlearn.data import make_latent_views

    for state in [(1.0, 0.5, 1.0), (0.0, 0.0, 1.0), (0.5, 1.0, 0.0)]:
        ds = make_latent_views(400, dim=8, shared_dim=2, unique_dim=2, redundancy=state[0], uniqueness=state[1],
                               synergy=state[2], seed=3)
        y = design_labels(*state, np.asarray(ds["latent_shared"]), np.asarray(ds["latent_unique_x1"]),
                          np.asarray(ds["latent_unique_x2"]))
        np.testing.assert_array_equal(y, np.asarray(ds["label"]))


def test_pure_designs_are_one_bit_of_their_kind():
    for state, term in [((1, 0, 0), "redundancy"), ((0, 1, 0), "unique1"), ((0, 0, 1), "synergy")]:
        r = design_pid(*state, n=100_000).as_dict()
        assert r[term] > 0.97, (state, r)
        assert sum(r[t] for t in TERMS if t != term) < 0.02, (state, r)
    codes1, codes2, sizes = design_codes(np.zeros((3, 1)), np.zeros((3, 2)), np.zeros((3, 2)), bins=4)
    assert sizes == (64, 16) and codes1.max() < 64 and codes2.max() < 16


def test_grid_covers_every_state_and_its_bounds_hold(grid):
    assert set(grid["points"]) == {",".join(f"{v:g}" for v in d) for d in grid_directions(grid["values"])}
    for key, point in grid["points"].items():
        for what, bounds in (("estimate", "bounds"), ("design", "design_bounds")):
            s = point[what]["synergy"]
            # the bounds are computed from the same distribution's pairwise marginals: they must contain its S
            assert point[bounds]["lower"] - 2e-3 <= s <= point[bounds]["upper"] + 2e-3, (key, what, point)
            total = sum(point[what][t] for t in TERMS)
            assert abs(total - point[what]["total"]) < 2e-3, (key, what)
        assert all(len(a) == len(GRID_SETTINGS["seeds"]) for a in point["fusion"].values())


def test_grid_says_late_fusion_loses_on_synergy_only(grid):
    pure_s = interaction_summary(0, 0, 1, grid)
    stats = pure_s["verdict"]["stats"]
    # late fusion sums unimodal predictions: an XOR-like label is out of its reach (chance), the others learn it
    assert stats["late"]["max"] < 0.6
    assert min(stats[f]["min"] for f in ("concat", "tensor", "low_rank")) > 0.85
    assert pure_s["verdict"]["best"] != "late"
    # on purely redundant or unique data every method is within a couple of points
    for state in [(1, 0, 0), (0, 1, 0)]:
        means = [v["mean"] for v in interaction_summary(*state, grid)["verdict"]["stats"].values()]
        assert max(means) - min(means) < 0.03, (state, means)


def test_regenerating_grid_points_matches_the_committed_file(grid):
    for state in [(0.0, 0.0, 1.0), (1.0, 0.5, 0.0)]:
        fresh = meter_point(*state, fusions=("concat",), seeds=(0,), design=False)
        stored = grid["points"][",".join(f"{v:g}" for v in direction(*state))]
        for t in TERMS + ("total",):
            assert abs(fresh["estimate"][t] - stored["estimate"][t]) < 2e-3, (state, t)
        assert abs(fresh["bounds"]["upper"] - stored["bounds"]["upper"]) < 2e-3
        # training is seeded; allow for a different CPU's float rounding
        assert abs(fresh["fusion"]["concat"][0] - stored["fusion"]["concat"][0]) < 0.02, (fresh, stored)
    d = design_pid(0.0, 0.0, 1.0, n=GRID_SETTINGS["design_samples"]).as_dict()
    assert abs(d["synergy"] - grid["points"]["0,0,1"]["design"]["synergy"]) < 1e-3


def test_meter_estimate_is_pid_from_samples_on_that_data(grid):
    train, test = latent_views_split(1.0, 0.0, 0.0, seed=0)
    x1 = np.concatenate([train.inputs["x1"].numpy(), test.inputs["x1"].numpy()])
    x2 = np.concatenate([train.inputs["x2"].numpy(), test.inputs["x2"].numpy()])
    y = np.concatenate([train.y.numpy(), test.y.numpy()])
    direct = pid_from_samples(x1, x2, y, n_clusters=GRID_SETTINGS["n_clusters"]).as_dict()
    shown = interaction_summary(0.5, 0.0, 0.0, grid)["estimate"]
    for t in TERMS:
        assert abs(direct[t] - shown[t]) < 2e-3, (t, direct, shown)


def test_summary_lookup_and_errors(grid):
    a, b = interaction_summary(0.5, 0.5, 0.5, grid), interaction_summary(1, 1, 1, grid)
    assert a["design"] == b["design"] and a["state"] == (0.5, 0.5, 0.5)
    assert interaction_summary(0, 0, 1, grid)["dominant"] == "synergy"
    assert interaction_summary(1, 0, 0, grid)["dominant"] == "redundancy"
    with pytest.raises(ValueError, match="not on the precomputed grid"):
        interaction_summary(0.3, 0, 1, grid)
    with pytest.raises(ValueError, match="All three"):
        interaction_summary(0, 0, 0, grid)
    # continuous sliders (the playground's): the nearest grid direction answers, and says which it is
    snapped = interaction_summary(0.3, 0, 1, grid, snap=True)
    assert snapped["direction"] == (0.5, 0.0, 1.0) and snapped["state"] == (0.3, 0.0, 1.0)
    assert snapped["design"] == grid["points"]["0.5,0,1"]["design"]
    assert interaction_summary(0.9, 0.05, 0.02, grid, snap=True)["direction"] == (1.0, 0.0, 0.0)


def test_fusion_verdict_claims_a_winner_only_outside_the_seed_spread():
    v = fusion_verdict({"late": [0.50, 0.52], "concat": [0.90, 0.945], "tensor": [0.94, 0.95]})
    assert v["best"] == "tensor" and v["tied"] == ["concat"] and not v["clear"]
    v = fusion_verdict({"late": [0.50, 0.52], "tensor": [0.94, 0.95]})
    assert v["best"] == "tensor" and v["clear"]
    assert v["stats"]["late"] == {"mean": 0.51, "min": 0.5, "max": 0.52}
    with pytest.raises(ValueError):
        fusion_verdict({})


def test_bounds_contain_the_true_synergy_on_bitwise_and_random_tables():
    rng = np.random.default_rng(1)
    tables = [rng.dirichlet(np.ones(8)).reshape(2, 2, 2) for _ in range(4)]
    and_table = np.zeros((2, 2, 2))
    for a in (0, 1):
        for b in (0, 1):
            and_table[a, b, a & b] = 0.25
    for p in tables + [and_table]:
        s = pid(p).synergy
        b = synergy_bounds(*pairwise_marginals(p))
        assert b.lower - 1e-4 <= s <= b.upper + 1e-4, (s, b)


def test_figures(grid):
    summary = interaction_summary(1, 0, 1, grid)
    fig = interaction_meter_figure(summary)
    assert isinstance(fig, go.Figure) and fig.layout.width <= 848  # JupyterLab's output area in the browser test
    # every update names every trace's colour: a FigureWidget's batched restyle resets a colour left out
    from mmlearn.viz.interactions import meter_trace_updates

    assert all(u["marker"]["color"] for u in meter_trace_updates(summary))
    assert fig.data[2].marker.line.color == "#d62728" and fig.data[3].marker.symbol == "diamond"
    assert len(fig.data) == 5 and all(t.name for t in fig.data)
    assert list(fig.data[0].y) == pytest.approx([summary["design"][t] for t in TERMS])
    assert list(fig.data[1].y) == pytest.approx([summary["estimate"][t] for t in TERMS])
    # bounds bars start at the lower bound and reach the upper one
    assert fig.data[2].base[1] == pytest.approx(summary["bounds"]["lower"])
    assert fig.data[2].base[1] + fig.data[2].y[1] == pytest.approx(max(summary["bounds"]["upper"],
                                                                       summary["bounds"]["lower"] + 0.004))
    assert "wins" in fig.layout.title.text or "tied" in fig.layout.title.text
    bars = pid_bars_figure({"xor": {"redundancy": 0, "unique1": 0, "unique2": 0, "synergy": 1}})
    assert [t.name.split()[0] for t in bars.data] == ["R", "U1", "U2", "S"]
    with pytest.raises(ValueError, match="missing"):
        pid_bars_figure({"bad": {"redundancy": 1}})
    b = synergy_bounds_figure([{"name": "and", "lower": 0.31, "upper": 0.5, "synergy": 0.5}])
    assert b.data[0].base[0] == pytest.approx(0.31) and b.data[1].y[0] == pytest.approx(0.5)
    f = fusion_interaction_figure({"synergy": {"late": [0.5, 0.52], "tensor": [0.9, 0.94]}})
    assert list(f.data[1].y) == pytest.approx([0.92]) and list(f.data[1].error_y.array) == pytest.approx([0.02])


def test_meter_panel_updates_in_place_and_fast(grid):
    meter = InteractionMeter(grid, redundancy=1.0, uniqueness=0.0, synergy=0.0)
    assert meter.figure.data[0].y[0] == pytest.approx(grid["points"]["1,0,0"]["design"]["redundancy"])
    meter.controls["redundancy"].value = 0.0
    meter.controls["synergy"].value = 1.0
    assert meter.error is None
    assert meter.figure.data[0].y[3] == pytest.approx(grid["points"]["0,0,1"]["design"]["synergy"])
    late = list(meter.figure.data[4].x).index("late")
    assert meter.figure.data[4].marker.color[late] == "#7f7f7f"  # not the winner on synergy
    assert "synergy 1" in meter.figure.layout.title.text
    meter.controls["synergy"].value = 0.0  # all zero: a message instead of the figure
    assert meter.error and "All three" in meter.message.value and meter.output.children == (meter.message,)
    meter.controls["uniqueness"].value = 1.0
    assert meter.error is None and meter.output.children == (meter.figure,)
    # latency of an uncached change (lookup + redraw)
    times = []
    for v in SLIDER_VALUES * 4:
        meter._cache.clear()
        t = time.perf_counter()
        meter.controls["redundancy"].value = 1.0 if meter.controls["redundancy"].value != 1.0 else 0.5
        times.append(time.perf_counter() - t)
    assert np.median(times) < 0.2, times
