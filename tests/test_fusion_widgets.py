"""Fusion figures, the pure functions behind the fusion panel, and the panel driven by control.value."""

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from mmlearn.data import add_noise, make_latent_views, modality_stats, to_batch
from mmlearn.experiments.fusion import compare_fusions, fusion_datasets, runs_table, train_fusion
from mmlearn.train import evaluate
from mmlearn.viz import (
    fusion_comparison_figure,
    fusion_panel_figure,
    solver_trace_figure,
    tfn_lmf_cost_figure,
    xor_grid_figure,
)
from mmlearn.widgets import FusionPanel, evaluate_fusions, fusion_weights


@pytest.fixture(scope="module")
def trained():
    """Three small models on a redundant synthetic set, trained once for the module."""
    ds = make_latent_views(600, dim=8, shared_dim=2, unique_dim=2, noise=0.1, seed=0)
    batch = to_batch(ds)
    train, test = batch.index(slice(0, 400)), batch.index(slice(400, None))
    models = {name: train_fusion(name, train, test, epochs=6, batch_size=100).model
              for name in ("gated", "embracenet", "concat")}
    return models, train, test


# ---------------------------------------------------------------- layer 1: pure functions


def test_evaluate_fusions_matches_plain_evaluation_and_reports_weights(trained):
    models, train, test = trained
    stats = modality_stats(train.inputs)
    res = evaluate_fusions(models, test, stats=stats)
    for name, model in models.items():
        assert res[name]["accuracy"] == pytest.approx(evaluate(model, test)["accuracy"])
    assert res["concat"]["weights"] is None
    for name in ("gated", "embracenet"):
        w = res[name]["weights"]
        assert set(w) == {"x1", "x2"}
        assert sum(w.values()) == pytest.approx(1.0, abs=1e-5)
    # switching x2 off: gates and selection shares go entirely to x1
    off = evaluate_fusions(models, test, {"x2": False}, stats=stats)
    assert off["gated"]["weights"] == pytest.approx({"x1": 1.0, "x2": 0.0})
    assert off["embracenet"]["weights"] == pytest.approx({"x1": 1.0, "x2": 0.0})
    with pytest.raises(ValueError, match="Every modality is switched off"):
        evaluate_fusions(models, test, {"x1": False, "x2": False})
    with pytest.raises(ValueError, match="unknown modality 'x3'"):
        evaluate_fusions(models, test, {"x3": False})


def test_fusion_weights_are_the_gates_of_the_noised_inputs(trained):
    models, train, test = trained
    noisy = add_noise(test.inputs, {"x1": 0.8}, seed=0, stats=modality_stats(train.inputs))
    w, label = fusion_weights(models["gated"], noisy)
    with torch.no_grad():
        gates = models["gated"].fusion.gates(models["gated"].encode(noisy))
    assert label == "mean gate g_m"
    assert w["x1"] == pytest.approx(float(gates[:, 0].mean()), abs=1e-6)
    assert fusion_weights(models["concat"], noisy) == (None, "no per-modality weights")


def test_compare_fusions_table_has_one_row_per_dataset_and_method():
    data = fusion_datasets(("redundant",), n_train=200, n_test=100)
    runs = compare_fusions(data, fusions=("late", "tensor"), epochs=2, batch_size=100)
    rows = runs_table(runs)
    assert [(r["dataset"], r["fusion"]) for r in rows] == [("redundant", "late"), ("redundant", "tensor")]
    for r, run in zip(rows, runs):
        assert r["params"] == sum(p.numel() for p in run.model.parameters())
        assert r["fusion_params"] < r["params"] and r["train_s"] >= 0
        assert 0.0 <= r["accuracy"] <= 1.0
    # TFN on two 16-d features into 32 units: (16 + 1)^2 * 32 + 32 parameters in its fusion layer
    assert rows[1]["fusion_params"] == 17 * 17 * 32 + 32


# ---------------------------------------------------------------- layer 2: figures


def test_fusion_comparison_figure_has_three_panels_and_one_trace_per_dataset_and_panel():
    rows = [{"dataset": d, "fusion": f, "accuracy": a, "params": p, "train_s": t}
            for d, f, a, p, t in (("A", "late", 0.5, 100, 0.1), ("A", "tensor", 0.9, 1000, 0.2),
                                  ("B", "late", 0.8, 120, 0.1), ("B", "tensor", 0.85, 1200, 0.3))]
    fig = fusion_comparison_figure(rows, chance={"A": 0.5})
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 6
    assert [t.name for t in fig.data] == ["A"] * 3 + ["B"] * 3
    assert list(fig.data[0].y) == [0.5, 0.9] and list(fig.data[4].y) == [120, 1200]
    assert fig.layout.yaxis2.type == "log"
    assert [a.text for a in fig.layout.annotations][:3] == ["test accuracy", "parameters (encoders + fusion + head)",
                                                           "training time"]
    with pytest.raises(ValueError, match="'train_s'"):
        fusion_comparison_figure([{"dataset": "A", "fusion": "x", "accuracy": 1, "params": 1}])


def test_small_fusion_figures():
    fig = xor_grid_figure({"late": np.full((2, 2), 0.5)}, truth=np.array([[0, 1], [1, 0]]))
    assert len(fig.data) == 2 and fig.data[0].z.tolist() == [[0, 1], [1, 0]]
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        xor_grid_figure({"late": np.zeros(3)})
    fig = solver_trace_figure({"anderson": [1, 0.1, 0.01], "plain": [1, 0.5]}, tol=1e-3)
    assert fig.layout.yaxis.type == "log" and list(fig.data[1].y) == [1, 0.5]
    fig = tfn_lmf_cost_figure([2, 3], [100, 1000], {"LMF r=4": [50, 70]})
    assert [t.name for t in fig.data] == ["TensorFusion", "LMF r=4"]
    fig = fusion_panel_figure({"a": 0.7, "b": 0.9}, {"a": 0.8, "b": 0.95}, "b", {"x1": 0.3, "x2": 0.7})
    assert fig.data[0].marker.color[1] != fig.data[0].marker.color[0]
    with pytest.raises(ValueError, match="'c'"):
        fusion_panel_figure({"a": 0.7}, {"a": 0.8}, "c", None)


# ---------------------------------------------------------------- layer 3: the panel, driven by control.value


def test_fusion_panel_controls_update_the_figure_in_place(trained):
    models, train, test = trained
    panel = FusionPanel(models, test, stats=modality_stats(train.inputs))
    assert set(panel.controls) == {"fusion", "x1_on", "x1_noise", "x2_on", "x2_noise"}
    assert panel.controls["fusion"].value == "gated"
    clean = evaluate_fusions(models, test, stats=panel.stats)
    assert list(panel.figure.data[0].y) == pytest.approx([clean[n]["accuracy"] for n in models])
    figure_id = id(panel.figure)

    # switch x2 off: every method is re-evaluated; gated fusion's gate moves entirely to x1
    panel.controls["x2_on"].value = False
    want = evaluate_fusions(models, test, {"x2": False}, stats=panel.stats)
    assert list(panel.figure.data[0].y) == pytest.approx([want[n]["accuracy"] for n in models])
    assert list(panel.figure.data[2].y) == pytest.approx([1.0, 0.0])
    assert "gated" in panel.figure.layout.title.text

    # EmbraceNet: selection shares, same condition; only a lookup, no new evaluation
    n_conditions = len(panel._conditions)
    panel.controls["fusion"].value = "embracenet"
    assert len(panel._conditions) == n_conditions
    assert list(panel.figure.data[2].y) == pytest.approx([1.0, 0.0])
    assert panel.figure.data[0].marker.color[1] == "#d62728"  # embracenet highlighted

    # a method without weights says so
    panel.controls["fusion"].value = "concat"
    assert list(panel.figure.data[2].y) == [0.0, 0.0]
    assert "no per-modality weights" in panel.figure.layout.yaxis2.title.text

    # heavy noise on x1 with x2 back on: accuracies drop below the clean ones
    panel.controls["x2_on"].value = True
    panel.controls["x1_noise"].value = 1.0
    panel.controls["x2_noise"].value = 1.0
    noisy = list(panel.figure.data[0].y)
    assert all(n < c - 0.1 for n, c in zip(noisy, [clean[k]["accuracy"] for k in models]))

    # everything off: a message instead of the figure, then back
    panel.controls["x1_on"].value = False
    panel.controls["x2_on"].value = False
    assert panel.error is not None and "switched off" in panel.message.value
    assert panel.output.children == (panel.message,)
    panel.controls["x1_on"].value = True
    assert panel.error is None and panel.output.children == (panel.figure,)
    assert id(panel.figure) == figure_id


def test_fusion_panel_rejects_models_on_other_modalities(trained):
    models, _, test = trained
    with pytest.raises(ValueError, match="modalities"):
        FusionPanel(models, test.select(["x1"]))
    with pytest.raises(ValueError, match="'nope'"):
        FusionPanel(models, test, selected="nope")


def test_fusion_figures_label_every_line_and_show_log_axes_by_decade():
    rows = [{"dataset": "A", "fusion": "late", "accuracy": 0.5, "params": 100, "train_s": 0.1}]
    fig = fusion_comparison_figure(rows, chance={"A": 0.5})
    assert [(s.name, s.showlegend) for s in fig.layout.shapes] == [("chance (A, 50%)", True)]
    assert fig.layout.yaxis2.dtick == 1  # labels at 10, 100, 1000: no stray 2 and 5 between decades
    fig = solver_trace_figure({"plain": [1, 0.5]}, tol=1e-3)
    assert fig.layout.yaxis.dtick == 1 and fig.layout.shapes[0].name == "tolerance (0.001)"
    assert not fig.layout.annotations
    assert tfn_lmf_cost_figure([2, 3], [100, 1000], {"r": [50, 70]}).layout.yaxis.dtick == 1
    fig = fusion_panel_figure({"a": 0.7}, {"a": 0.8}, "a", None, modalities=["x1", "x2"], chance=0.25,
                              previews={"x1": np.arange(4.0), "x2": np.ones((3, 2))})
    assert [type(t).__name__ for t in fig.data] == ["Bar", "Scatter", "Bar", "Heatmap", "Heatmap"]
    assert np.asarray(fig.data[3].z).tolist() == [[0.0, 1.0, 2.0, 3.0]] and fig.layout.shapes[0].name == "chance (25%)"
    assert fig.layout.width is None


def test_fusion_panel_shows_the_corrupted_input_and_disables_unused_sliders(trained):
    models, train, test = trained
    stats = modality_stats(train.inputs)
    panel = FusionPanel(models, test, stats=stats, sample=3)
    fig = panel.figure
    np.testing.assert_allclose(np.asarray(fig.data[3].z)[0], test.inputs["x1"][3].numpy(), rtol=1e-6)
    panel.controls["x1_noise"].value = 0.6
    noisy = add_noise(test.inputs, {"x1": 0.6}, seed=0, stats=stats)["x1"][3].numpy()
    np.testing.assert_allclose(np.asarray(fig.data[3].z)[0], noisy, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(fig.data[4].z)[0], test.inputs["x2"][3].numpy(), rtol=1e-6)
    assert not panel.controls["x2_noise"].disabled
    panel.controls["x2_on"].value = False
    assert panel.controls["x2_noise"].disabled and not panel.controls["x1_noise"].disabled
    assert np.abs(np.asarray(fig.data[4].z)).sum() == 0
    panel.controls["x2_on"].value = True
    assert not panel.controls["x2_noise"].disabled
    assert fig.layout.shapes[0].name.startswith("chance") and fig.layout.shapes[0].showlegend
