"""Evaluation metrics: MM-BigBench's on hand-computed arrays, macro-F1, complexity, the report card and its panel."""

import statistics
import time

import numpy as np
import pytest
import torch

from mmlearn.evaluation import (
    adaptability,
    best_performance,
    complexity,
    macro_f1,
    mean_relative_gain,
    relative_gain,
    report_card,
    scores,
    stability,
    subset_scores,
    top_k,
)

# models x tasks x conditions: 2 x 2 x 3
A = np.array([
    [[0.6, 0.4, 0.2], [0.5, 0.5, 0.8]],
    [[0.2, 0.4, 0.6], [0.5, 0.9, 0.1]],
])


# ----------------------------------------------------------------------------- MM-BigBench
def test_best_performance_by_hand():
    np.testing.assert_allclose(best_performance(A), [[0.6, 0.8], [0.6, 0.9]])
    np.testing.assert_allclose(best_performance(A, total=True), [1.4, 1.5])


def test_mean_relative_gain_over_models_by_hand_and_it_sums_to_zero():
    # task 0: model means per condition 0.4, 0.4, 0.4 -> model 0 gains 50, 0, -50 -> mean 0; model 1 the opposite
    # task 1: means 0.5, 0.7, 0.45 -> model 0: 0, -28.571.., 77.77.. -> mean 16.402..
    mrg = mean_relative_gain(A, over="models", eps=0.0)
    g1 = [0.0, 100 * (0.5 - 0.7) / 0.7, 100 * (0.8 - 0.45) / 0.45]
    np.testing.assert_allclose(mrg, [[0.0, np.mean(g1)], [0.0, -np.mean(g1)]], atol=1e-12)
    # relative to the mean model, so the gains sum to zero over models, per task and per condition
    np.testing.assert_allclose(relative_gain(A, over="models", eps=0.0).sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(mrg.sum(axis=0), 0.0, atol=1e-12)
    # the authors' 1e-6 on the mean leaves a tiny residue only
    np.testing.assert_allclose(mean_relative_gain(A).sum(axis=0), 0.0, atol=1e-3)
    assert mean_relative_gain(A).shape == (2, 2)


def test_mean_relative_gain_over_conditions_by_hand_and_it_sums_to_zero():
    # model 0 task 0: mean 0.4 -> gains 50, 0, -50; model 1 task 0: 0.4 -> -50, 0, 50; averaged over models: 0
    # model 0 task 1: mean 0.6 -> -16.67, -16.67, 33.33; model 1 task 1: 0.5 -> 0, 80, -80
    mrg = mean_relative_gain(A, over="conditions", eps=0.0)
    assert mrg.shape == (3, 2)  # conditions x tasks, as the authors' code returns it
    np.testing.assert_allclose(mrg[:, 0], [0.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(mrg[:, 1], [(-100 / 6 + 0) / 2, (-100 / 6 + 80) / 2, (100 / 3 - 80) / 2])
    np.testing.assert_allclose(mrg.sum(axis=0), 0.0, atol=1e-12)


def test_stability_is_the_population_std():
    s = stability(A)  # over conditions: (M, T)
    np.testing.assert_allclose(s[0, 0], np.sqrt(((0.2**2) + 0 + 0.2**2) / 3))
    np.testing.assert_allclose(s, A.std(axis=2))
    sm = stability(A, over="models")  # over models: (I, T)
    assert sm.shape == (3, 2)
    np.testing.assert_allclose(sm[:, 1], [0.0, 0.2, 0.35])  # |a - b| / 2 for two models
    with pytest.raises(ValueError, match="over"):
        stability(A, over="tasks")


def test_adaptability_by_hand_rows_sum_to_100_and_ties_go_to_the_later_condition():
    # k = 1: model 0 tops condition 0 on task 0 and condition 2 on task 1 -> 50 % each
    np.testing.assert_allclose(adaptability(A, k=1), [[50, 0, 50], [0, 50, 50]])
    # k = 2: model 0: {0, 1} on task 0; on task 1 0.8 then the tie 0.5/0.5 goes to condition 1 -> {2, 1}
    # model 1: {2, 1} on task 0, {1, 0} on task 1
    hr = adaptability(A, k=2)
    np.testing.assert_allclose(hr, [[25, 50, 25], [25, 50, 25]])
    np.testing.assert_allclose(hr.sum(axis=1), 100.0)
    np.testing.assert_allclose(adaptability(A, k=2, total=True), [50, 100, 50])
    assert top_k([1, 1, 0], 1) == [1]
    rng = np.random.default_rng(0)
    big = rng.uniform(size=(5, 7, 10))
    np.testing.assert_allclose(adaptability(big, k=3).sum(axis=1), 100.0)
    with pytest.raises(ValueError, match="k must be"):
        adaptability(A, k=4)


def test_metrics_refuse_bad_arrays():
    with pytest.raises(ValueError, match="models, tasks, conditions"):
        best_performance(np.ones((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        stability(np.full((1, 1, 2), np.nan))
    with pytest.raises(ValueError, match="zero"):
        mean_relative_gain(np.zeros((2, 1, 2)), eps=0.0)


def test_macro_f1_by_hand():
    # class 0: P 1, R 1/2 -> F 2/3; class 1: P 2/3, R 1 -> F 4/5
    assert macro_f1([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx((2 / 3 + 0.8) / 2)
    # a class predicted but absent counts as F1 = 0 with the model's label set
    assert macro_f1([0, 0], [0, 2], n_classes=3) == pytest.approx((2 / 3 + 0.0) / 2)


# ----------------------------------------------------------------------------- report card on AV-Digits
@pytest.fixture(scope="module")
def trained():
    from mmlearn.data import load_av_digits, to_batch
    from mmlearn.models import build_classifier
    from mmlearn.train import fit

    torch.set_num_threads(1)
    av = load_av_digits()
    train, test = to_batch(av["train"]), to_batch(av["test"])
    test = test.index(slice(0, 160))
    shapes = {m: tuple(x.shape[1:]) for m, x in train.inputs.items()}
    models = {}
    for name in ("late", "concat"):
        models[name] = build_classifier(shapes, 10, name, seed=0)
        fit(models[name], train, epochs=2, progress=False)
    models["image only"] = build_classifier({"image": shapes["image"]}, 10, "concat", seed=0)
    fit(models["image only"], train.select(["image"]), epochs=2, progress=False)
    card = report_card(models, {"noisy": test, "first half": test.index(slice(0, 80))}, reference="late",
                       curve_levels=(0.0, 0.5, 1.0))
    return models, test, card


def test_report_card_entries_equal_evaluate_and_corrupted_accuracy(trained):
    from mmlearn.robustness import corrupted_accuracy
    from mmlearn.train import evaluate

    models, test, card = trained
    t = card.table.set_index(["model", "task", "condition"])
    for name in ("late", "concat"):
        assert t.loc[(name, "noisy", "clean"), "accuracy"] == pytest.approx(evaluate(models[name], test)["accuracy"])
        for cond, kind, level in (("noise 0.5", "gaussian_noise", 0.5), ("missing 0.5", "missing", 0.5),
                                  ("fgsm 0.05", "fgsm", 0.05)):
            expected = corrupted_accuracy(models[name], test, kind, level, ["image", "audio"], seed=0)
            assert t.loc[(name, "noisy", cond), "accuracy"] == pytest.approx(expected, abs=1e-6), (name, cond)  # float32 mean
    # the unimodal model sees only its modality
    assert t.loc[("image only", "noisy", "clean"), "accuracy"] == pytest.approx(
        evaluate(models["image only"], test.select(["image"]))["accuracy"])
    # macro-F1 is scikit-learn's on the same predictions
    from sklearn.metrics import f1_score

    pred = card.predictions[("concat", "noisy", "noise 0.5")]
    assert t.loc[("concat", "noisy", "noise 0.5"), "macro_f1"] == pytest.approx(
        f1_score(test.y.numpy(), pred, average="macro"))
    # the second task is the first 80 rows: its clean accuracy is the mean of those rows' correctness
    ok = card.correct[("late", "noisy", "clean")][:80]
    assert t.loc[("late", "first half", "clean"), "accuracy"] == pytest.approx(ok.mean())


def test_report_card_curves_arrays_and_bootstrap(trained):
    models, test, card = trained
    assert card.models == ["late", "concat", "image only"]
    assert card.tasks == ["noisy", "first half"]
    a = card.results_array()
    assert a.shape == (3, 2, 4)
    assert a[1, 0, 0] == pytest.approx(card.table.query("model == 'concat' and task == 'noisy' and "
                                                        "condition == 'clean'")["accuracy"].item())
    # effective robustness of the reference is 0; curves start at the clean accuracy
    rob = card.robustness.set_index(["task", "model"])
    assert rob.loc[("noisy", "late"), "effective_robustness"] == 0.0
    c = card.curves
    clean0 = c[(c.model == "concat") & (c.task == "noisy") & (c.level == 0.0)]["accuracy"].item()
    assert clean0 == pytest.approx(a[1, 0, 0])
    boot = card.bootstrap(lambda arr: arr, n_boot=40, seed=0)
    assert boot.shape == (40, 3, 2, 4)
    # resampled rows: the bootstrap mean is near the point estimate, and the spread is not zero
    assert np.abs(boot.mean(axis=0) - a).max() < 0.05
    assert boot.std(axis=0).max() > 0


def test_report_card_accepts_a_dataset_and_conditions_as_a_list(trained):
    from mmlearn.data import load_av_digits

    models, _, _ = trained
    ds = load_av_digits("test").select(range(60))
    card = report_card({"late": models["late"]}, ds, [("clean", 0), ("blur", 0.5, ["image"])], curve_levels=None)
    assert list(card.table["condition"]) == ["clean", "blur 0.5 (image)"]
    assert card.curves is None and card.robustness is None
    two = report_card({"late": models["late"]}, {"a": ds, "b": ds}, {"clean": ("clean", 0)}, curve_levels=(0, 1),
                      curve_tasks=["b"])
    assert set(two.curves["task"]) == {"b"} and set(two.robustness["task"]) == {"b"}
    with pytest.raises(ValueError, match="unknown kind"):
        report_card({"late": models["late"]}, ds, {"x": ("shout", 0.5)}, curve_levels=None)


def test_subset_scores_equal_subset_accuracies(trained):
    from mmlearn.train import subset_accuracies

    models, test, _ = trained
    table = subset_scores(models["concat"], test)
    expected = subset_accuracies(models["concat"], test)
    assert list(table["subset"]) == list(expected)
    np.testing.assert_allclose(table["accuracy"], list(expected.values()))
    assert (table["macro_f1"] <= 1).all() and (table["macro_f1"] >= 0).all()
    assert scores(models["concat"], test)["accuracy"] == pytest.approx(expected["image+audio"])


def test_complexity_is_measured(trained):
    models, test, _ = trained
    m = models["late"]
    grads = [None if p.grad is None else p.grad.clone() for p in m.parameters()]
    out = complexity(m, lambda model: time.sleep(0.05), test, repeats=3)
    assert out["parameters"] == sum(p.numel() for p in m.parameters())
    assert out["train_time_s"] >= 0.05
    assert out["latency_per_sample_s"] > 0 and out["latency_single_s"] > 0
    assert out["peak_train_step_bytes"] > 0 and out["peak_inference_bytes"] > 0
    assert out["flops_per_sample"] > 0
    for p, g in zip(m.parameters(), grads):  # the train-step probe leaves .grad alone
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert complexity(m, 12.5, test, repeats=1, memory=False)["train_time_s"] == 12.5


# ----------------------------------------------------------------------------- figures and panel
def test_figures_one_trace_per_model_and_fit_860px(trained):
    _, _, card = trained
    figs = card.figures
    assert [tr.name for tr in figs["bars"].data] == card.models
    assert [tr.name for tr in figs["radar"].data] == card.models
    assert len(figs["curves"].data) == len(card.models) * len(card.tasks)
    for fig in figs.values():
        assert fig.layout.width <= 860
        assert all(tr.name for tr in fig.data)


def test_evaluation_view_and_panel_driven_by_control_values(trained):
    from mmlearn.widgets import EvaluationPanel, evaluation_view

    _, _, card = trained
    view = evaluation_view(card.table, models=["concat"], conditions=["fgsm 0.05", "clean"], task="noisy",
                           all_models=card.models)
    assert view["conditions"] == ["clean", "fgsm 0.05"]  # the table's order
    assert [tr["visible"] for tr in view["traces"]] == [False, True, False]
    assert view["best"][0] == "concat"
    panel = EvaluationPanel(card, chance=0.1)
    assert len(panel.figure.data) == len(card.models) + 1  # + chance
    panel.controls["models"].value = ("late",)
    panel.controls["conditions"].value = ("clean", "noise 0.5")
    panel.controls["metric"].value = "macro_f1"
    t = card.table.set_index(["model", "task", "condition"])
    assert panel.figure.data[0].visible is True and panel.figure.data[1].visible is False
    assert list(panel.figure.data[0].y) == pytest.approx([t.loc[("late", "noisy", c), "macro_f1"]
                                                          for c in ("clean", "noise 0.5")])
    assert panel.figure.data[-1].visible is False  # no chance line for macro-F1
    panel.controls["task"].value = "first half"
    assert list(panel.figure.data[0].y) == pytest.approx([t.loc[("late", "first half", c), "macro_f1"]
                                                          for c in ("clean", "noise 0.5")])
    panel.controls["conditions"].value = ()
    assert panel.error is not None and "condition" in panel.error
    panel.controls["conditions"].value = ("clean",)
    assert panel.error is None
    # every change is fast: the numbers were measured when the card was made
    times = []
    for i in range(12):
        t0 = time.perf_counter()
        panel.controls["models"].value = card.models[: 1 + i % 3]
        times.append(time.perf_counter() - t0)
    assert statistics.median(times) < 0.2


def test_import_mmlearn_evaluation_pulls_no_heavy_dependency():
    import subprocess
    import sys

    code = ("import sys, mmlearn.evaluation\n"
            "print(','.join(m for m in ('sklearn', 'scipy', 'pandas', 'datasets', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == ""
