"""The balance figures and panel: pure lookup, figure builders, and the panel driven through control.value."""

import numpy as np
import plotly.graph_objects as go
import pytest

from mmlearn.balance import make_imbalanced, run_balance_grid
from mmlearn.data import to_batch
from mmlearn.viz import balance_panel_figure, balance_summary_figure, modulation_figure, probe_curves_figure
from mmlearn.widgets import BalancePanel, balance_lookup, grid_alphas


def _run(x1, x2, acc):
    return {"probe": {"x1": list(x1), "x2": list(x2)}, "test_acc": list(acc)}


@pytest.fixture()
def grid():
    """A hand-made grid with known numbers (the shape run_balance_grid returns)."""
    return {
        "modalities": ["x1", "x2"],
        "epochs": 3,
        "unimodal": {"probe": {"x1": [0.80, 0.88, 0.90], "x2": [0.70, 0.73, 0.74]},
                     "test_acc": {"x1": [0.8, 0.88, 0.9], "x2": [0.7, 0.73, 0.74]}},
        "runs": {
            ("joint", 0.0): _run([0.85, 0.90, 0.91], [0.70, 0.66, 0.64], [0.90, 0.92, 0.93]),
            ("ogm_ge", 1.0): _run([0.84, 0.90, 0.90], [0.71, 0.68, 0.66], [0.89, 0.91, 0.92]),
            ("ogm_ge", 3.0): _run([0.80, 0.83, 0.84], [0.72, 0.71, 0.70], [0.80, 0.81, 0.82]),
            ("mmpareto", 1.5): _run([0.86, 0.90, 0.90], [0.74, 0.75, 0.75], [0.90, 0.91, 0.92]),
            ("ume", 0.0): _run([0.80, 0.88, 0.90], [0.70, 0.73, 0.74], [float("nan"), float("nan"), 0.89]),
        },
    }


def test_lookup_returns_the_grid_numbers(grid):
    r = balance_lookup(grid, "ogm_ge", 3.0)
    assert r["method"]["x2"] == [0.72, 0.71, 0.70]
    assert r["joint"]["x2"] == [0.70, 0.66, 0.64]
    assert r["alone"]["x1"] == [0.80, 0.88, 0.90]
    assert r["accuracy"] == {"plain joint": 0.93, "OGM-GE (3)": 0.82}
    assert r["final"] == {"x1": 0.84, "x2": 0.70}
    assert balance_lookup(grid, "ume", 0)["label"] == "UME (ensemble)"
    assert grid_alphas(grid, "ogm_ge") == [1.0, 3.0]


def test_lookup_errors_say_what_is_available(grid):
    with pytest.raises(ValueError, match="available: 1, 3"):
        balance_lookup(grid, "ogm_ge", 2.0)
    with pytest.raises(ValueError, match="not precomputed"):
        balance_lookup(grid, "agm", 1.0)
    with pytest.raises(ValueError, match="unknown balance method 'magic'"):
        balance_lookup(grid, "magic", 1.0)


def test_probe_curves_figure():
    fig = probe_curves_figure({"alone": {"x1": [0.8, 0.9], "x2": [0.7, 0.75]},
                               "joint": {"x1": [0.85, 0.9], "x2": [0.65, 0.6]}})
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 4
    assert [t.name for t in fig.data] == ["alone", "alone", "joint", "joint"]
    assert fig.data[0].line.dash == "dash" and fig.data[2].line.dash == "dot"
    assert list(fig.data[3].y) == [0.65, 0.6] and list(fig.data[3].x) == [1, 2]
    assert [a.text for a in fig.layout.annotations] == ["encoder x1", "encoder x2"]
    assert fig.layout.title.text and fig.layout.xaxis.title.text == "epoch"
    with pytest.raises(ValueError, match="no probe curve for modality 'x2'"):
        probe_curves_figure({"alone": {"x1": [0.8]}}, modalities=["x1", "x2"])
    with pytest.raises(ValueError, match="at least one run"):
        probe_curves_figure({})


def test_summary_and_modulation_figures():
    fig = balance_summary_figure({"joint": {"x1": 0.9, "x2": 0.64, "fused": 0.93},
                                  "MMPareto": {"x1": 0.9, "x2": 0.75, "fused": 0.92}},
                                 reference={"x2 alone": 0.74})
    assert [t.name for t in fig.data] == ["probe x1", "probe x2", "fused accuracy", "x2 alone"]
    assert list(fig.data[1].y) == [0.64, 0.75] and list(fig.data[1].x) == ["joint", "MMPareto"]
    assert list(fig.data[3].y) == [0.74, 0.74] and fig.data[3].line.dash == "dash"
    with pytest.raises(ValueError, match="has no value 'fused'"):
        balance_summary_figure({"joint": {"x1": 0.9}}, keys=["x1", "fused"])
    mod = modulation_figure({"x1": [1.0, 0.5, 0.2, 0.2], "x2": [1.0, 1.0, 1.0, 1.0]}, smooth=2)
    np.testing.assert_allclose(mod.data[0].y, [0.75, 0.35, 0.2])
    assert mod.layout.yaxis.title.text == "coefficient"
    with pytest.raises(ValueError, match="smooth"):
        modulation_figure({"x1": [1.0]}, smooth=0)


def test_panel_figure_trace_layout(grid):
    r = balance_lookup(grid, "mmpareto", 1.5)
    fig = balance_panel_figure(r["alone"], r["joint"], r["method"], r["accuracy"], ["x1", "x2"], r["label"])
    assert len(fig.data) == 7
    assert list(fig.data[5].y) == [0.74, 0.75, 0.75]  # x2, method
    assert list(fig.data[6].x) == ["plain joint", "MMPareto (1.5)"]


def test_panel_driven_by_control_values(grid):
    panel = BalancePanel(grid, method="mmpareto")
    assert panel.state() == {"method": "mmpareto", "alpha": 1.5}
    assert list(panel.figure.data[5].y) == [0.74, 0.75, 0.75]
    assert "x2 probe 75.0%" in panel.figure.layout.title.text
    # switching method offers that method's strengths and picks the nearest
    panel.controls["method"].value = "ogm_ge"
    assert panel.controls["alpha"].options == (1.0, 3.0)
    assert panel.state() == {"method": "ogm_ge", "alpha": 1.0}
    assert list(panel.figure.data[5].y) == [0.71, 0.68, 0.66]
    panel.controls["alpha"].value = 3.0
    assert list(panel.figure.data[2].y) == [0.80, 0.83, 0.84]  # x1, method
    assert list(panel.figure.data[5].y) == [0.72, 0.71, 0.70]
    assert list(panel.figure.data[6].y) == [0.93, 0.82]
    assert panel.figure.data[6].text == ("93.0%", "82.0%")
    assert panel.figure.data[2].name == "OGM-GE (3)"
    # the reference lines never move
    assert list(panel.figure.data[1].y) == [0.85, 0.90, 0.91] and list(panel.figure.data[3].y) == [0.70, 0.73, 0.74]
    panel.controls["method"].value = "ume"
    assert panel.controls["alpha"].options == (0.0,)
    assert list(panel.figure.data[6].y)[1] == 0.89
    assert panel.error is None


def test_panel_shows_a_message_for_a_state_off_the_grid(grid):
    panel = BalancePanel(grid, method="ogm_ge")
    assert panel.state() == {"method": "ogm_ge", "alpha": 3.0}  # the middle strength
    drawn = list(panel.figure.data[5].y)
    grid["runs"].pop(("ogm_ge", 1.0))  # the slider still offers 1.0, the grid no longer has it
    panel.controls["alpha"].value = 1.0
    assert panel.error is not None and "available: 3" in panel.error
    assert panel.output.children == (panel.message,)
    assert list(panel.figure.data[5].y) == drawn  # the figure keeps the last drawable state
    panel.controls["alpha"].value = 3.0
    assert panel.error is None and panel.output.children == (panel.figure,)


def test_panel_on_a_real_small_grid():
    b = to_batch(make_imbalanced(500, seed=1))
    train, test = b.index(slice(0, 300)), b.index(slice(300, None))
    grid = run_balance_grid(train, test, {"joint": [0.0], "agm": [1.0], "umt": [0.3]}, epochs=2)
    assert set(grid["runs"]) == {("joint", 0.0), ("agm", 1.0), ("umt", 0.3)}
    assert all("model" not in r for r in grid["runs"].values())
    panel = BalancePanel(grid, method="agm")
    agm_y = list(panel.figure.data[5].y)
    assert agm_y == grid["runs"][("agm", 1.0)]["probe"]["x2"] and len(agm_y) == 2
    panel.controls["method"].value = "umt"
    assert list(panel.figure.data[5].y) == grid["runs"][("umt", 0.3)]["probe"]["x2"]
    with pytest.raises(ValueError, match="unknown balance method"):
        run_balance_grid(train, test, {"magic": [1.0]}, epochs=1)
