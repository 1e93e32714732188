"""The modality panel: layer 1 (evaluate_condition) and the panel driven by control values."""


import numpy as np
import pytest
import torch

from mmlearn.data import add_noise, make_latent_views, to_batch
from mmlearn.models import build_classifier
from mmlearn.train import evaluate, fit
from mmlearn.widgets import ModalityPanel, evaluate_condition


@pytest.fixture(scope="module")
def trained():
    b = to_batch(make_latent_views(1500, redundancy=1.0, uniqueness=1.0, noise={"x1": 0.3, "x2": 0.8}, seed=0))
    train, test = b.index(slice(0, 1200)), b.index(slice(1200, None))
    model = build_classifier({"x1": (16,), "x2": (16,)}, 2, seed=0)
    fit(model, train, epochs=10, progress=False)
    return model, test


def test_evaluate_condition_all_on_and_clean_is_plain_accuracy(trained):
    model, test = trained
    r = evaluate_condition(model, test)
    assert r["accuracy"] == pytest.approx(evaluate(model, test)["accuracy"])
    assert r["counts"].sum() == test.size
    assert r["counts"].trace() == round(r["accuracy"] * test.size)


def test_evaluate_condition_applies_noise_and_masks(trained):
    model, test = trained
    stats = {"x1": (0.0, 1.0), "x2": (0.0, 1.0)}
    r = evaluate_condition(model, test, {"x2": False}, {"x1": 0.5}, seed=3, stats=stats)
    noisy = add_noise(test.inputs, {"x1": 0.5}, seed=3, stats=stats)
    present = {"x1": torch.ones(test.size, dtype=torch.bool), "x2": torch.zeros(test.size, dtype=torch.bool)}
    logits = model({"x1": noisy["x1"], "x2": torch.zeros_like(test.inputs["x2"])}, present)
    assert r["accuracy"] == pytest.approx(float((logits.argmax(1) == test.y).float().mean()))
    assert r["enabled"] == ["x1"]


def test_evaluate_condition_errors(trained):
    model, test = trained
    with pytest.raises(ValueError, match="Every modality is switched off"):
        evaluate_condition(model, test, {"x1": False, "x2": False})
    with pytest.raises(ValueError, match="'x3'"):
        evaluate_condition(model, test, {"x3": False})
    with pytest.raises(ValueError, match=r"'x1'.*\[0, 1\]"):
        evaluate_condition(model, test, noise={"x1": 2.0})


def test_panel_controls_update_the_figure_in_place(trained):
    model, test = trained
    panel = ModalityPanel(model, test)
    fig = panel.figure
    assert set(panel.controls) == {"x1_on", "x1_noise", "x2_on", "x2_noise"}
    clean = evaluate_condition(model, test)["accuracy"]
    assert list(fig.data[0].y) == pytest.approx([clean, clean])
    panel.controls["x1_noise"].value = 1.0
    expected = evaluate_condition(model, test, noise={"x1": 1.0}, stats=panel.stats)["accuracy"]
    assert fig.data[0].y[1] == pytest.approx(expected) and expected < clean
    assert panel.figure is fig  # updated in place, not replaced
    assert f"{expected:.1%}" in fig.layout.title.text
    panel.controls["x2_on"].value = False
    expected = evaluate_condition(model, test, {"x2": False}, {"x1": 1.0}, stats=panel.stats)["accuracy"]
    assert fig.data[0].y[1] == pytest.approx(expected)
    assert fig.data[1].text.sum() == test.size


def test_panel_all_off_shows_a_message_not_a_traceback(trained):
    model, test = trained
    panel = ModalityPanel(model, test)
    panel.controls["x1_on"].value = False
    panel.controls["x2_on"].value = False
    assert panel.output.children == (panel.message,)
    assert "switch at least one on" in panel.message.value
    panel.controls["x2_on"].value = True
    assert panel.output.children == (panel.figure,) and panel.error is None


def test_panel_caches_results_per_state(trained):
    model, test = trained
    panel = ModalityPanel(model, test)
    calls = []
    original = panel.compute
    panel.compute = lambda state: calls.append(1) or original(state)
    panel.controls["x1_noise"].value = 0.5
    panel.controls["x1_noise"].value = 0.0  # the initial state: cached at build time
    panel.controls["x1_noise"].value = 0.5  # cached
    assert len(calls) == 1


# ---------------------------------------------------------------- reference lines, input preview, disabled controls
from mmlearn.widgets.modality import (  # noqa: E402
    chance_accuracy,
    corrupt_batch,
    noise_controls_disabled,
    preview_ranges,
    removed_references,
)


def test_noise_controls_disabled_follows_the_checkboxes():
    state = {"x1_on": False, "x1_noise": 0.3, "x2_on": True, "x2_noise": 0.0}
    assert noise_controls_disabled(state, ["x1", "x2"]) == {"x1_noise": True, "x2_noise": False}
    assert noise_controls_disabled({}, ["image"]) == {"image_noise": False}


def test_chance_and_removed_references(trained):
    model, test = trained
    assert chance_accuracy(torch.tensor([0, 0, 1])) == pytest.approx(2 / 3)
    assert chance_accuracy(torch.tensor([2, 2, 2, 1]), 5) == pytest.approx(0.75)
    refs = removed_references(model, test)
    assert list(refs) == ["x1 removed", "x2 removed"]
    assert refs["x2 removed"] == pytest.approx(evaluate_condition(model, test, {"x2": False})["accuracy"])
    assert refs["x1 removed"] != refs["x2 removed"]  # x2 is the noisier view here: losing it costs less
    assert removed_references(model, test.select(["x1"])) == {}


def test_panel_disables_the_noise_slider_of_a_switched_off_modality(trained):
    model, test = trained
    panel = ModalityPanel(model, test)
    assert not panel.controls["x1_noise"].disabled
    panel.controls["x1_on"].value = False
    assert panel.controls["x1_noise"].disabled and not panel.controls["x2_noise"].disabled
    panel.controls["x1_on"].value = True
    assert not panel.controls["x1_noise"].disabled


def test_panel_shows_the_corrupted_input_and_labelled_reference_lines(trained):
    model, test = trained
    panel = ModalityPanel(model, test, sample=5)
    fig = panel.figure
    assert [type(t).__name__ for t in fig.data] == ["Bar", "Heatmap", "Heatmap", "Heatmap"]
    np.testing.assert_allclose(np.asarray(fig.data[2].z)[0], test.inputs["x1"][5].numpy(), rtol=1e-6)
    # every line is named in the legend: chance and the accuracy with each modality removed
    names = [s.name for s in fig.layout.shapes]
    assert all(s.showlegend for s in fig.layout.shapes)
    refs = removed_references(model, test, stats=panel.stats)
    assert names == [f"x1 removed ({refs['x1 removed']:.0%})", f"x2 removed ({refs['x2 removed']:.0%})",
                     f"chance ({chance_accuracy(test.y):.0%})"]
    assert fig.layout.shapes[0].y0 == pytest.approx(refs["x1 removed"])
    panel.controls["x1_noise"].value = 0.5
    noisy = corrupt_batch(test, None, {"x1": 0.5}, stats=panel.stats).inputs["x1"][5].numpy()
    np.testing.assert_allclose(np.asarray(fig.data[2].z)[0], noisy, rtol=1e-5)
    assert not np.allclose(noisy, test.inputs["x1"][5].numpy())
    panel.controls["x2_on"].value = False  # what the model receives: zeros
    assert np.abs(np.asarray(fig.data[3].z)).sum() == 0
    lo, hi = preview_ranges(test, 5, panel.stats)["x1"]
    assert fig.data[2].zmin == pytest.approx(lo) and fig.data[2].zmax == pytest.approx(hi)


def test_panel_figure_fits_the_output_area(trained):
    model, test = trained
    fig = ModalityPanel(model, test).figure
    assert fig.layout.width is None or fig.layout.width <= 860
