"""Tests for the alignment figures (mmlearn.viz.alignment) and the alignment panel (mmlearn.widgets.alignment)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
import torch.nn.functional as F

from mmlearn.alignment import AlignmentModel, alignment, retrieval_metrics, uniformity
from mmlearn.viz import (
    alignment_panel_figure,
    alignment_uniformity_figure,
    contrastive_curves,
    method_comparison_figure,
    retrieval_examples,
    similarity_heatmap,
)
from mmlearn.widgets import AlignmentPanel, precompute_alignment_grid, summarize_alignment
from mmlearn.widgets import alignment as alignment_widgets
from mmlearn.widgets.alignment import shown_rows

TEMPS, SIZES = (0.05, 0.5), (8, 32)


def _labelled_pairs(n: int, seed: int):
    """4 classes; x1 and x2 are two linear views of a class centre plus a per-pair latent."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.Generator().manual_seed(99)
    centres = 2 * torch.randn(4, 6, generator=mix)
    A, B = torch.randn(6, 10, generator=mix), torch.randn(6, 7, generator=mix)
    y = torch.arange(n) % 4
    s = centres[y] + torch.randn(n, 6, generator=g)
    inputs = {"x1": s @ A + 0.3 * torch.randn(n, 10, generator=g), "x2": s @ B + 0.3 * torch.randn(n, 7, generator=g)}
    return inputs, y


@pytest.fixture(scope="module")
def data():
    return _labelled_pairs(128, 0), _labelled_pairs(64, 1)


@pytest.fixture(scope="module")
def grid(data):
    train, test = data
    return precompute_alignment_grid(train, test, TEMPS, SIZES, epochs=2, embed_dim=6, feature_dim=16, per_class=2)


# ----------------------------------------------------------------------------- layer 1


def test_summarize_alignment_matches_the_metrics(data):
    train, test = data
    model = AlignmentModel({"x1": (10,), "x2": (7,)}, embed_dim=6, feature_dim=16, seed=3)
    rows = shown_rows(test[1].numpy(), 2)
    np.testing.assert_array_equal(test[1].numpy()[rows], [0, 0, 1, 1, 2, 2, 3, 3])
    got = summarize_alignment(model, train, test, rows)
    z = model.embed(test[0])
    digit = retrieval_metrics(z["x1"], z["x2"], test[1], ks=(1,))
    clip = retrieval_metrics(z["x1"], z["x2"], ks=(1,))
    assert got["recall"]["x1→x2"] == digit["a->b R@1"] and got["recall"]["x2→x1"] == digit["b->a R@1"]
    assert got["clip recall@1"] == {"x1→x2": clip["a->b R@1"], "x2→x1": clip["b->a R@1"]}
    assert got["alignment"] == pytest.approx(alignment(z["x1"], z["x2"]))
    assert got["uniformity"]["mean"] == pytest.approx((uniformity(z["x1"]) + uniformity(z["x2"])) / 2)
    # zero-shot: nearest training-x2 class prototype, written out here
    zt = model.embed(train[0])["x2"]
    protos = F.normalize(torch.stack([zt[train[1] == c].mean(0) for c in range(4)]), dim=1)
    want = float(((z["x1"] @ protos.T).argmax(1) == test[1]).float().mean())
    assert got["recall"]["zero-shot x1"] == pytest.approx(want)
    np.testing.assert_allclose(got["sim"], (z["x1"][rows] @ z["x2"][rows].T).numpy(), atol=1e-6)


def test_grid_has_every_setting_and_training_changes_the_numbers(grid, data):
    assert set(grid["settings"]) == {(t, b) for t in TEMPS for b in SIZES}
    np.testing.assert_array_equal(grid["labels"], [0, 0, 1, 1, 2, 2, 3, 3])
    for s in grid["settings"].values():
        assert s["sim"].shape == (8, 8) and np.all(np.abs(s["sim"]) <= 1 + 1e-6)
        # the bounds of unit vectors: alignment in [0, 4]; uniformity in [-2 t N / (N - 1), 0] with t = 2, N = 64
        assert 0 <= s["alignment"] <= 4 and -4 * 64 / 63 - 1e-6 <= s["uniformity"]["mean"] <= 0
        # a trained model aligns pairs better than independent random unit vectors would (E||u - v||^2 = 2)
        assert s["alignment"] < 2
    # different settings give different trained models
    alignments = {round(s["alignment"], 6) for s in grid["settings"].values()}
    assert len(alignments) == len(grid["settings"])
    # after 2 epochs every setting retrieves the right class far above chance (25%)
    assert min(s["recall"]["x1→x2"] for s in grid["settings"].values()) > 0.5


# ----------------------------------------------------------------------------- layer 2


def test_similarity_heatmap_and_errors():
    sim = np.linspace(-1, 1, 12).reshape(3, 4)
    fig = similarity_heatmap(sim, row_labels=[0, 1, 2], col_labels=list("abcd"), title="S")
    assert isinstance(fig, go.Figure) and fig.layout.title.text == "S"
    np.testing.assert_allclose(fig.data[0].z, sim)
    assert list(fig.layout.xaxis.ticktext) == list("abcd") and fig.layout.yaxis.autorange == "reversed"
    with pytest.raises(ValueError, match=r"shape \(12,\); expected \(N, M\)"):
        similarity_heatmap(sim.ravel())


def test_retrieval_examples_marks_hits():
    q, k = 2, 3
    fig = retrieval_examples(np.zeros((q, 20, 20)), np.ones((q, k, 8, 8)), [3, 5], [[3, 1, 3], [5, 5, 5]],
                             similarities=np.full((q, k), 0.5))
    assert len(fig.data) == q * (k + 1)
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "heard: <b>3</b>" and titles[4] == "heard: <b>5</b>"
    assert sum("✓" in t for t in titles) == 5 and sum("✗" in t for t in titles) == 1
    assert "(0.50)" in titles[1]
    with pytest.raises(ValueError, match="disagree"):
        retrieval_examples(np.zeros((q, 20, 20)), np.ones((q, k, 8, 8)), [3], [[3, 1, 3], [5, 5, 5]])


def test_curves_comparison_and_plane_figures():
    history = {"epoch": [1, 2], "train_loss": [3.0, 2.0], "temperature": [0.07, 0.07],
               "eval a->b R@1": [0.1, 0.2], "eval class a->b R@1": [0.5, 0.7]}
    fig = contrastive_curves(history)
    assert [t.name for t in fig.data] == ["loss", "clip-level a→b", "digit-level a→b"]
    assert list(fig.data[2].y) == [0.5, 0.7]
    comp = method_comparison_figure({"CLIP": {"m1": 0.8, "m2": 0.7}, "CCA": {"m1": 0.6, "m2": 0.4}}, ["m1", "m2"],
                                    chance=0.1)
    assert [t.name for t in comp.data] == ["CLIP", "CCA", "chance"] and list(comp.data[1].y) == [0.6, 0.4]
    plane = alignment_uniformity_figure({"a": (0.5, -2.0), "b": (1.0, -1.0)}, highlight="b")
    assert list(plane.data[0].marker.color) == ["#1f77b4", "#d62728"]


# ----------------------------------------------------------------------------- layer 3


def test_panel_looks_up_the_grid_when_controls_move(grid, monkeypatch):
    panel = AlignmentPanel(grid)
    # moving a control must never train again
    monkeypatch.setattr(alignment_widgets, "train_alignment", lambda *a, **k: pytest.fail("trained in a callback"))
    bars, others, current, heat = panel.figure.data
    start = grid["settings"][(TEMPS[1], SIZES[-1])]  # defaults: middle temperature, largest batch
    assert list(bars.y) == list(start["recall"].values())
    assert len(others.x) == len(TEMPS) * len(SIZES)

    panel.controls["temperature"].value = TEMPS[0]
    new = grid["settings"][(TEMPS[0], SIZES[-1])]
    assert panel.error is None
    assert list(panel.figure.data[0].y) == pytest.approx(list(new["recall"].values()))
    assert panel.figure.data[2].x == (pytest.approx(new["alignment"]),)
    assert panel.figure.data[2].y == (pytest.approx(new["uniformity"]["mean"]),)
    np.testing.assert_allclose(np.array(panel.figure.data[3].z), new["sim"])
    assert panel.figure.layout.title.text.startswith(f"τ={TEMPS[0]:g}, B={SIZES[-1]}")

    panel.controls["batch_size"].value = SIZES[0]
    small = grid["settings"][(TEMPS[0], SIZES[0])]
    assert list(panel.figure.data[0].y) == pytest.approx(list(small["recall"].values()))
    np.testing.assert_allclose(np.array(panel.figure.data[3].z), small["sim"])
    assert "B=8" in panel.figure.layout.title.text


def test_panel_explains_a_missing_setting(grid):
    partial = {**grid, "settings": {k: v for k, v in grid["settings"].items() if k != (TEMPS[0], SIZES[0])}}
    panel = AlignmentPanel(partial)
    panel.controls["temperature"].value = TEMPS[0]
    panel.controls["batch_size"].value = SIZES[0]
    assert panel.error is not None and "No precomputed result for temperature 0.05 and batch size 8" in panel.error
    assert panel.output.children == (panel.message,)
    panel.controls["batch_size"].value = SIZES[1]  # back to a known setting: the figure returns
    assert panel.error is None and panel.output.children == (panel.figure,)


def test_panel_figure_trace_order():
    fig = alignment_panel_figure({"a": 0.5, "b": 0.25}, {"s1": (0.4, -2.0), "s2": (0.6, -1.0)}, "s2",
                                 np.eye(3), [0, 1, 2])
    assert [type(t).__name__ for t in fig.data] == ["Bar", "Scatter", "Scatter", "Heatmap"]
    assert fig.data[2].x == (0.6,) and list(fig.data[0].text) == ["50%", "25%"]
