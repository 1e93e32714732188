"""The modality panel: layer 1 (evaluate_condition) and the panel driven by control values."""


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
