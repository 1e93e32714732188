"""The balance figures and panel: pure lookup, figure builders, and the panel driven through control.value."""

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from mmlearn.experiments.balance import make_imbalanced, run_balance_grid
from mmlearn.data import Batch, to_batch
from mmlearn.train import evaluate
from mmlearn.viz import balance_panel_figure, balance_summary_figure, modulation_figure, probe_curves_figure
from mmlearn.viz.balance import running_mean
from mmlearn.widgets import BalancePanel, balance_lookup, grid_alphas
from mmlearn.widgets.balance import missing_accuracy, with_missing_accuracy


def _run(x1, x2, acc, missing=None):
    run = {"probe": {"x1": list(x1), "x2": list(x2)}, "test_acc": list(acc)}
    if missing is not None:
        run["missing"] = {"x1": missing[0], "x2": missing[1]}
    return run


@pytest.fixture()
def grid():
    """A hand-made grid with known numbers (the shape run_balance_grid returns)."""
    return {
        "modalities": ["x1", "x2"],
        "epochs": 3,
        "unimodal": {"probe": {"x1": [0.80, 0.88, 0.90], "x2": [0.70, 0.73, 0.74]},
                     "test_acc": {"x1": [0.8, 0.88, 0.9], "x2": [0.7, 0.73, 0.74]}},
        "runs": {
            ("joint", 0.0): _run([0.85, 0.90, 0.91], [0.70, 0.66, 0.64], [0.90, 0.92, 0.93], (0.55, 0.90)),
            ("ogm_ge", 1.0): _run([0.84, 0.90, 0.90], [0.71, 0.68, 0.66], [0.89, 0.91, 0.92], (0.60, 0.89)),
            ("ogm_ge", 3.0): _run([0.80, 0.83, 0.84], [0.72, 0.71, 0.70], [0.80, 0.81, 0.82], (0.71, 0.84)),
            ("mmpareto", 1.5): _run([0.86, 0.90, 0.90], [0.74, 0.75, 0.75], [0.90, 0.91, 0.92], (0.56, 0.9)),
            ("ume", 0.0): _run([0.80, 0.88, 0.90], [0.70, 0.73, 0.74], [float("nan"), float("nan"), 0.89],
                               (0.74, 0.90)),
        },
    }


def test_lookup_returns_the_grid_numbers(grid):
    r = balance_lookup(grid, "ogm_ge", 3.0)
    assert r["method"]["x2"] == [0.72, 0.71, 0.70]
    assert r["joint"]["x2"] == [0.70, 0.66, 0.64]
    assert r["alone"]["x1"] == [0.80, 0.88, 0.90]
    assert r["accuracy"] == {"plain joint": 0.93, "OGM-GE (3)": 0.82}
    assert r["final"] == {"x1": 0.84, "x2": 0.70}
    assert r["missing"] == {"plain joint": 0.55, "OGM-GE (3)": 0.71}  # x1 (the first modality) missing
    assert balance_lookup(grid, "ogm_ge", 3.0, missing="x2")["missing"] == {"plain joint": 0.90, "OGM-GE (3)": 0.84}
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
    # readable labels, inside the bars at their base (clear of reference lines near the top); axis from 0
    assert all(t.textfont.size >= 11 and t.textposition == "inside" and t.insidetextanchor == "start"
               for t in fig.data[:3])
    assert fig.layout.uniformtext.minsize >= 11 and fig.layout.yaxis.range[0] == 0
    with pytest.raises(ValueError, match="has no value 'fused'"):
        balance_summary_figure({"joint": {"x1": 0.9}}, keys=["x1", "fused"])
    # error bars from a spread over seeds, and chosen keys with legend names
    fig = balance_summary_figure({"joint": {"x2": 0.64, "x1 missing": 0.55}, "UMT": {"x2": 0.75, "x1 missing": 0.75}},
                                 errors={"joint": {"x2": 0.02, "x1 missing": 0.03}, "UMT": {"x2": 0.01}},
                                 names={"x1 missing": "accuracy, x1 missing"})
    assert list(fig.data[0].error_y.array) == [0.02, 0.01] and list(fig.data[1].error_y.array) == [0.03, 0.0]
    assert fig.data[1].name == "accuracy, x1 missing"

    mod = modulation_figure({"x1": [1.0, 0.5, 0.2, 0.2], "x2": [1.0, 1.0, 1.0, 1.0]}, smooth=2)
    # running means first (same length as the steps), then the raw values faint, then the "no modulation" line
    np.testing.assert_allclose(mod.data[0].y, [1.0, 0.75, 0.35, 0.2])
    assert [t.name for t in mod.data] == ["x1, mean of last 2 steps", "x2, mean of last 2 steps", "x1, each step",
                                          "x2, each step", "1 = no modulation"]
    np.testing.assert_allclose(mod.data[2].y, [1.0, 0.5, 0.2, 0.2])
    assert mod.data[2].opacity < 0.5 and list(mod.data[4].y) == [1.0, 1.0]
    assert all(t.showlegend is not False for t in mod.data)
    assert mod.layout.yaxis.title.text == "coefficient"
    assert len(modulation_figure({"x1": [1.0, 0.0]}).data) == 2  # raw only, and the reference line
    with pytest.raises(ValueError, match="smooth"):
        modulation_figure({"x1": [1.0]}, smooth=0)


def test_running_mean_is_trailing_and_keeps_length():
    np.testing.assert_allclose(running_mean([0, 1, 0, 1, 1], 2), [0, 0.5, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(running_mean([2.0, 4.0], 10), [2.0, 3.0])
    with pytest.raises(ValueError, match="width"):
        running_mean([1.0], 0)


def test_panel_figure_trace_layout(grid):
    r = balance_lookup(grid, "mmpareto", 1.5)
    fig = balance_panel_figure(r["alone"], r["joint"], r["method"], r["accuracy"], ["x1", "x2"], r["label"],
                               missing=r["missing"])
    assert len(fig.data) == 10  # 3 lines per encoder, 2 bar traces, 2 chance lines
    assert list(fig.data[5].y) == [0.74, 0.75, 0.75]  # x2, method
    assert list(fig.data[6].x) == ["plain joint", "MMPareto (1.5)"]
    assert list(fig.data[7].y) == [0.55, 0.56] and fig.data[7].name == "x1 missing"
    # every y axis starts at 0, and every line is in the legend
    assert all(fig.layout[f"yaxis{i}"].range[0] == 0 for i in ("", 2, 3))
    assert {t.name for t in fig.data if t.showlegend is not False} == {"alone", "plain joint", "MMPareto (1.5)",
                                                                       "fused (all present)", "x1 missing",
                                                                       "chance (0.5)"}


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
    assert panel.figure.data[6].text == ("93%", "82%")
    assert list(panel.figure.data[7].y) == [0.55, 0.71]  # x1 missing: joint, OGM-GE (3)
    assert "x1 missing: 71.0%" in panel.figure.layout.title.text
    assert panel.figure.data[2].name == "OGM-GE (3)"
    # the reference lines never move
    assert list(panel.figure.data[1].y) == [0.85, 0.90, 0.91] and list(panel.figure.data[3].y) == [0.70, 0.73, 0.74]
    assert not panel.controls["alpha"].disabled
    panel.controls["method"].value = "ume"
    assert panel.controls["alpha"].options == (0.0,)
    assert panel.controls["alpha"].disabled  # one strength: nothing to slide
    assert list(panel.figure.data[6].y)[1] == 0.89
    assert list(panel.figure.data[7].y) == [0.55, 0.74]
    assert panel.error is None
    panel.controls["method"].value = "ogm_ge"
    assert not panel.controls["alpha"].disabled


def test_panel_slider_disabled_for_a_single_strength_method_at_start(grid):
    assert BalancePanel(grid, method="mmpareto").controls["alpha"].disabled
    assert not BalancePanel(grid, method="ogm_ge").controls["alpha"].disabled


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
    grid = run_balance_grid(train, test, {"joint": [0.0], "agm": [1.0], "umt": [0.3]}, epochs=2, keep_models=True)
    assert set(grid["runs"]) == {("joint", 0.0), ("agm", 1.0), ("umt", 0.3)}
    panel = BalancePanel(grid, method="agm", test=test)
    assert "missing" not in grid["runs"][("agm", 1.0)]  # the input grid is left as it was
    agm_y = list(panel.figure.data[5].y)
    assert agm_y == grid["runs"][("agm", 1.0)]["probe"]["x2"] and len(agm_y) == 2
    # "x1 missing" is the accuracy computed directly with x1 marked absent (and zero-filled) in every row
    for key, position in ((("joint", 0.0), 0), (("agm", 1.0), 1)):
        model = grid["runs"][key]["model"]
        absent = Batch({"x1": torch.zeros_like(test.inputs["x1"]), "x2": test.inputs["x2"]}, test.y,
                       {"x1": torch.zeros(test.size, dtype=torch.bool), "x2": torch.ones(test.size, dtype=torch.bool)})
        direct = evaluate(model, absent)["accuracy"]
        assert panel.figure.data[7].y[position] == pytest.approx(direct)
        assert missing_accuracy(model, test, "x1") == pytest.approx(direct)
    panel.controls["method"].value = "umt"
    assert list(panel.figure.data[5].y) == grid["runs"][("umt", 0.3)]["probe"]["x2"]
    assert panel.figure.data[7].y[1] == pytest.approx(missing_accuracy(grid["runs"][("umt", 0.3)]["model"], test, "x1"))
    with pytest.raises(ValueError, match="unknown balance method"):
        run_balance_grid(train, test, {"magic": [1.0]}, epochs=1)
    with pytest.raises(ValueError, match="keep_models=True"):
        with_missing_accuracy(run_balance_grid(train, test, {"joint": [0.0]}, epochs=1), test)
    with pytest.raises(ValueError, match="unknown modality 'x3'"):
        missing_accuracy(grid["runs"][("joint", 0.0)]["model"], test, "x3")
