"""The robustness panel (notebook 05): pure functions, figure builders and the panel driven by control values."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from mmlearn.data import make_latent_views, modality_stats, to_batch
from mmlearn.evaluation import robustness_table
from mmlearn.models import build_classifier
from mmlearn.robustness import ScaleShiftAdapter, corrupted_accuracy, missing_batch, robustness_sweep
from mmlearn.train import evaluate, fit
from mmlearn.viz import attack_figure, missing_heatmap_figure, noise_sweep_figure
from mmlearn.viz.robustness import MAX_WIDTH, panel_trace_count, robustness_panel_traces
from mmlearn.widgets import (
    AdapterRouter,
    FeatureCache,
    RobustnessPanel,
    condition_accuracy,
    condition_batch,
    fill_sweep,
    filled_accuracy,
    robustness_controls_disabled,
    robustness_result,
)

NAMES = ["x1", "x2"]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    data = to_batch(make_latent_views(700, dim=8, noise={"x1": 0.3, "x2": 0.8}, seed=3))
    train, test = data.index(slice(0, 500)), data.index(slice(500, None))
    stats = modality_stats(train.inputs)
    shapes = {m: (8,) for m in NAMES}
    models = {}
    for fusion in ("concat", "late"):
        model = build_classifier(shapes, 2, fusion, seed=0, feature_dim=8)
        fit(model, train, epochs=4, batch_size=64, lr=1e-2, progress=False)
        models[fusion] = model
    return models, train, test, stats


def _state(**kw):
    state = {"x1_noise": 0.0, "x2_noise": 0.0, "x1_missing": False, "x2_missing": False, "x1_attack": 0.0,
             "x2_attack": 0.0, "attack": "FGSM", "methods": ("concat", "late")}
    state.update(kw)
    return state


# ------------------------------------------------------------------ layer 1 equals the library's definitions


def test_noise_only_equals_corrupted_accuracy(setup):
    models, _, test, stats = setup
    model = models["concat"]
    for m in NAMES:
        for level in (0.3, 0.8):
            ours = condition_accuracy(model, test, noise={m: level}, stats=stats, seed=2)
            ref = corrupted_accuracy(model, test, "gaussian_noise", level, [m], seed=2, stats=stats)
            assert ours == ref
    # noise on both: each modality's noise does not depend on whether the other is noisy
    both = condition_batch(model, test, noise={"x1": 0.5, "x2": 0.5}, stats=stats)
    one = condition_batch(model, test, noise={"x1": 0.5}, stats=stats)
    assert torch.equal(both.inputs["x1"], one.inputs["x1"])
    assert not torch.equal(both.inputs["x2"], one.inputs["x2"])


def test_missing_and_attacks_equal_corrupted_accuracy(setup):
    models, _, test, stats = setup
    model = models["late"]
    for m in NAMES:
        assert condition_accuracy(model, test, missing={m: True}, stats=stats) == corrupted_accuracy(
            model, test, "missing", 1.0, [m])
        sd = stats[m][1]
        assert condition_accuracy(model, test, attack={m: 0.3}, stats=stats, method="FGSM") == corrupted_accuracy(
            model, test, "fgsm", 0.3 * sd, [m])
        assert condition_accuracy(model, test, attack={m: 0.3}, stats=stats, method="PGD", steps=3,
                                  seed=4) == corrupted_accuracy(model, test, "pgd", 0.3 * sd, [m], seed=4, steps=3)


def test_attack_at_strength_zero_is_clean_and_a_strong_attack_hurts(setup):
    models, _, test, stats = setup
    model = models["concat"]
    clean = evaluate(model, test)["accuracy"]
    zero = condition_batch(model, test, attack={"x1": 0.0, "x2": 0.0}, stats=stats, method="PGD")
    assert all(torch.equal(zero.inputs[m], test.inputs[m]) for m in NAMES)
    assert condition_accuracy(model, test, attack={"x1": 0.0}, stats=stats) == clean
    assert condition_accuracy(model, test, attack={"x1": 1.0, "x2": 1.0}, stats=stats, method="PGD") < clean - 0.2
    # a missing modality is not attacked (its input stays zero)
    b = condition_batch(model, test, missing={"x1": True}, attack={"x1": 1.0}, stats=stats)
    assert torch.equal(b.inputs["x1"], torch.zeros_like(test.inputs["x1"]))


def test_feature_cache_equals_the_whole_model(setup):
    models, _, test, stats = setup
    for model in models.values():
        cache = FeatureCache(model, test, stats, seed=1)
        for noise, missing in [({}, {}), ({"x1": 0.4}, {}), ({"x1": 0.7, "x2": 0.2}, {"x2": True}),
                               ({"x2": 1.0}, {"x1": True})]:
            assert cache.accuracy(noise, missing) == condition_accuracy(model, test, noise=noise, missing=missing,
                                                                        stats=stats, seed=1)


def test_result_curves_equal_the_sweep_and_removed_lines_equal_missing(setup):
    models, _, test, stats = setup
    levels = [0.0, 0.5, 1.0]
    result = robustness_result(models, test, _state(), stats=stats, levels=levels)
    sweep = robustness_sweep(models, test, "gaussian_noise", levels, joint=False, stats=stats)
    for name, r in result["results"].items():
        for m in NAMES:
            expected = sweep[(sweep["model"] == name) & (sweep["modality"] == m)].sort_values("level")["accuracy"]
            assert r["curves"][m] == pytest.approx(list(expected), abs=0)
            assert r["removed"][m] == corrupted_accuracy(models[name], test, "missing", 1.0, [m])
        assert r["now"] == r["clean"] == evaluate(models[name], test)["accuracy"]
    # with noise on x2 and an attack on x1, "now" is the whole condition and the removed line of x1 keeps x2's noise
    state = _state(x2_noise=0.6, x1_attack=0.5)
    result = robustness_result(models, test, state, stats=stats, levels=levels)
    for name, r in result["results"].items():
        assert r["now"] == condition_accuracy(models[name], test, noise={"x2": 0.6}, attack={"x1": 0.5}, stats=stats)
        assert r["removed"]["x1"] == condition_accuracy(models[name], test, noise={"x2": 0.6},
                                                        missing={"x1": True}, stats=stats)


def test_states_that_cannot_be_drawn_are_refused(setup):
    models, _, test, stats = setup
    with pytest.raises(ValueError, match="at least one fusion method"):
        robustness_result(models, test, _state(methods=()), stats=stats)
    with pytest.raises(ValueError, match="Every modality is marked missing"):
        robustness_result(models, test, _state(x1_missing=True, x2_missing=True), stats=stats)
    with pytest.raises(ValueError, match="unknown modality"):
        condition_batch(models["concat"], test, noise={"x3": 0.1}, stats=stats)


def test_controls_that_do_nothing_are_disabled():
    off = robustness_controls_disabled(_state(), NAMES)
    assert off == {"x1_noise": False, "x1_attack": False, "x1_missing": False, "x2_noise": False,
                   "x2_attack": False, "x2_missing": False, "attack": True}
    off = robustness_controls_disabled(_state(x1_missing=True, x1_attack=0.3), NAMES)
    assert off["x1_noise"] and off["x1_attack"] and off["x2_missing"] and not off["x1_missing"]
    assert off["attack"]  # the only attacked modality is missing
    assert not robustness_controls_disabled(_state(x2_attack=0.1), NAMES)["attack"]


# ------------------------------------------------------------------ the panel


def test_panel_updates_in_place_and_disables_controls(setup):
    models, _, test, stats = setup
    panel = RobustnessPanel(models, test, stats=stats)
    figure = panel.figure
    assert len(figure.data) == panel_trace_count(["concat", "late"], NAMES)
    assert figure.layout.width <= MAX_WIDTH
    names = {t.name for t in figure.data}
    assert {"dashed: modality removed", "star: now (attack included)", "concat", "late"} <= names
    assert any(n.startswith("chance (") for n in names)
    before = [list(t.y) if t.y is not None else None for t in figure.data]
    bars_before = list(figure.data[-4].y)

    panel.controls["x1_noise"].value = 1.0
    assert panel.error is None and panel.figure is figure
    star = figure.data[2]  # concat, x1: curve, removed, star
    assert star.x == (1.0,)
    assert star.y[0] == pytest.approx(panel.last_result["results"]["concat"]["curves"]["x1"][-1])
    assert [list(t.y) if t.y is not None else None for t in figure.data] != before

    panel.controls["x1_attack"].value = 0.5
    assert not panel.controls["attack"].disabled
    now = panel.last_result["results"]["concat"]["now"]
    assert now == condition_accuracy(models["concat"], test, noise={"x1": 1.0}, attack={"x1": 0.5}, stats=stats)
    assert list(figure.data[-4].y) != bars_before
    assert figure.layout.title.text.startswith("accuracy now")

    panel.controls["x1_missing"].value = True
    assert panel.controls["x1_noise"].disabled and panel.controls["x1_attack"].disabled
    assert panel.controls["x2_missing"].disabled and panel.controls["attack"].disabled
    r = panel.last_result["results"]["late"]
    assert len(set(r["curves"]["x1"])) == 1  # a missing modality's noise does nothing
    assert r["now"] == corrupted_accuracy(models["late"], test, "missing", 1.0, ["x1"])

    panel.controls["methods"].value = ("late",)
    assert figure.data[0].visible is False and figure.data[3 * len(NAMES)].visible is True
    assert figure.data[-4].y[0] is None
    panel.controls["methods"].value = ()
    assert panel.error is not None and "at least one" in panel.message.value
    assert panel.output.children == (panel.message,)
    panel.controls["methods"].value = ("concat",)
    assert panel.error is None and panel.output.children == (figure,)


def test_panel_trace_values_keep_the_figure_order(setup):
    models, _, test, stats = setup
    result = robustness_result(models, test, _state(methods=("late",)), stats=stats)
    values = robustness_panel_traces(result, ["concat", "late"], NAMES, 0.5)
    assert len(values) == panel_trace_count(["concat", "late"], NAMES)
    assert values[0] == {"visible": False}
    late_x1 = values[3 * len(NAMES)]
    assert late_x1["y"] == result["results"]["late"]["curves"]["x1"]


# ------------------------------------------------------------------ missing-modality helpers


def test_filled_accuracy_mask_equals_corrupted_accuracy_and_fills_differ(setup):
    models, train, test, _ = setup
    from mmlearn.robustness import training_means

    model = models["concat"]
    for rate in (0.0, 0.5, 1.0):
        assert filled_accuracy(model, test, "x1", rate, "mask", seed=3) == corrupted_accuracy(
            model, test, "missing", rate, ["x1"], seed=3)
    means = training_means(train)
    assert filled_accuracy(model, test, "x1", 0.0, "mean", means=means) == evaluate(model, test)["accuracy"]
    table = fill_sweep({"zeros": (model, "mask", {}), "mean": (model, "mean", {"means": means})}, test,
                       [0.0, 0.5, 1.0])
    assert list(table.columns) == ["model", "kind", "modality", "level", "accuracy"]
    scores = robustness_table(table, reference="zeros", normalize=True, reduce="mean")
    assert scores.set_index(["model", "modality"]).loc[("zeros", "x1"), "effective_robustness"] == 0
    with pytest.raises(ValueError, match="fill must be"):
        filled_accuracy(model, test, "x1", 0.5, "median")


def test_adapter_router_routes_rows_by_pattern(setup):
    models, _, test, _ = setup
    base = models["concat"]
    adapters = {m: ScaleShiftAdapter(build_classifier({k: (8,) for k in NAMES}, 2, "concat", seed=0, feature_dim=8),
                                     missing=[m]) for m in NAMES}
    for a in adapters.values():  # a different backbone, so routing is visible
        a.model.load_state_dict(base.state_dict())
        a.beta["fusion"].data.fill_(0.5)
    router = AdapterRouter(base, adapters)
    b = missing_batch(test, {"x1": 0.5}, seed=0)
    with torch.no_grad():
        out = router(b.inputs, b.present)
        ref_base = base(b.inputs, b.present)
        ref_x1 = adapters["x1"](b.inputs, b.present)
    gone = ~b.present["x1"]
    assert 0 < int(gone.sum()) < test.size
    assert torch.equal(out[~gone], ref_base[~gone])
    assert torch.allclose(out[gone], ref_x1[gone])
    assert not torch.allclose(out[gone], ref_base[gone])
    with torch.no_grad():
        assert torch.equal(router(test.inputs), base(test.inputs))


# ------------------------------------------------------------------ figure builders


def test_figure_builders_label_every_reference_and_fit_the_width():
    table = pd.DataFrame([{"model": f, "kind": "gaussian_noise", "modality": m, "level": lv, "accuracy": 0.9 - lv / 2}
                          for f in ("a", "b") for m in NAMES for lv in (0.0, 0.5, 1.0)])
    fig = noise_sweep_figure(table, {"a": {"x1": 0.6, "x2": 0.5}, "b": {"x1": 0.55, "x2": 0.4}}, 0.5)
    names = [t.name for t in fig.data]
    assert "a: x1 removed (60%)" in names and "b: x2 removed (40%)" in names and "chance (50%)" in names
    assert fig.layout.width <= MAX_WIDTH
    heat = pd.DataFrame([{"fusion": f, "train_rate": r, "modality": m, "level": lv, "accuracy": 0.5 + r - lv / 4}
                         for f in ("a", "b", "c") for r in (0.0, 0.3) for m in NAMES for lv in (0.0, 1.0)])
    fig = missing_heatmap_figure(heat)
    assert len(fig.data) == 6 and fig.layout.width <= MAX_WIDTH
    z = fig.data[0].z  # fusion a, x1: rows = train rate, columns = test rate
    assert z[1][0] == pytest.approx(0.8) and z[0][1] == pytest.approx(0.25)
    att = pd.DataFrame([{"model": f, "attack": a, "target": t, "accuracy": 0.4}
                        for f in ("a", "b") for a in ("FGSM", "PGD") for t in ("none", "x1")])
    fig = attack_figure(att, chance=0.5)
    assert fig.layout.width <= MAX_WIDTH and any(t.name == "chance (50%)" for t in fig.data)
    assert not math.isnan(fig.data[0].y[0])
