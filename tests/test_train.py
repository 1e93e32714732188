"""The training loop: learning, determinism, extension points, device."""

import warnings

import pytest
import torch

from mmlearn._checks import NonFiniteLossError
from mmlearn.data import Batch, drop_modalities, make_latent_views, to_batch
from mmlearn.models import build_classifier
from mmlearn.train import evaluate, fit, predict, subset_accuracies


@pytest.fixture(scope="module")
def data():
    b = to_batch(make_latent_views(1200, redundancy=1.0, uniqueness=1.0, noise={"x1": 0.3, "x2": 0.3}, seed=0))
    return b.index(slice(0, 1000)), b.index(slice(1000, None))


SHAPES = {"x1": (16,), "x2": (16,)}


def test_fit_learns_and_records_history(data):
    train, test = data
    model = build_classifier(SHAPES, 2, "concat", seed=0)
    before = evaluate(model, test)["accuracy"]
    h = fit(model, train, test, epochs=8, progress=False)
    assert h["epoch"] == list(range(1, 9))
    assert set(h) == {"epoch", "train_loss", "train_acc", "eval_loss", "eval_acc"}
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h["eval_acc"][-1] > 0.85 > before
    assert h["eval_acc"][-1] == pytest.approx(evaluate(model, test)["accuracy"])


def test_fit_is_deterministic_under_a_seed(data):
    train, _ = data
    models = [build_classifier(SHAPES, 2, seed=1) for _ in range(3)]
    fit(models[0], train, epochs=2, seed=5, progress=False)
    fit(models[1], train, epochs=2, seed=5, progress=False)
    fit(models[2], train, epochs=2, seed=6, progress=False)
    p0, p1, p2 = (list(m.parameters()) for m in models)
    assert all(torch.equal(a, b) for a, b in zip(p0, p1))
    assert not all(torch.equal(a, c) for a, c in zip(p0, p2))


def test_extra_loss_receives_outputs_and_changes_training(data):
    train, _ = data
    seen = []

    def unimodal_loss(model, out, batch):
        seen.append((set(out.unimodal), batch.size))
        return sum(torch.nn.functional.cross_entropy(v, batch.y) for v in out.unimodal.values())

    a = build_classifier(SHAPES, 2, seed=0, unimodal_heads=True)
    b = build_classifier(SHAPES, 2, seed=0, unimodal_heads=True)
    ha = fit(a, train, epochs=1, batch_size=500, progress=False)
    h = fit(b, train, epochs=1, batch_size=500, progress=False, extra_losses=[unimodal_loss])
    assert seen == [({"x1", "x2"}, 500), ({"x1", "x2"}, 500)]
    # without the term the unimodal heads never get a gradient
    torch.testing.assert_close(a.unimodal_heads["x1"].weight, build_classifier(SHAPES, 2, seed=0, unimodal_heads=True).unimodal_heads["x1"].weight)
    assert not torch.equal(a.unimodal_heads["x1"].weight, b.unimodal_heads["x1"].weight)
    # the recorded loss includes the two unimodal cross-entropies (about log 2 each for untrained heads)
    assert h["train_loss"][0] > ha["train_loss"][0] + 0.5


def test_grad_hook_runs_between_backward_and_step(data):
    train, _ = data
    calls = []

    def freeze_x2(model, out, batch, step):
        assert model.encoders["x2"].net[1].weight.grad is not None  # after backward
        calls.append(step)
        for p in model.encoders["x2"].parameters():
            p.grad.mul_(0.0)  # rescale this modality's gradients to zero

    model = build_classifier(SHAPES, 2, seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fit(model, train, epochs=1, batch_size=250, progress=False, grad_hook=freeze_x2, optimizer="sgd", lr=0.1)
    assert calls == [0, 1, 2, 3]
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed != n.startswith("encoders.x2."), n


def test_train_transform_reaches_the_model(data):
    train, _ = data
    seen = []

    def dropout(batch, step):
        inputs, present = drop_modalities(batch.inputs, 0.3, seed=step, keep_one=False)
        return Batch(inputs, batch.y, present)

    def record(model, out, batch):
        seen.append((batch.present, batch.inputs))
        return torch.zeros(())

    model = build_classifier(SHAPES, 2, seed=0)
    fit(model, train, epochs=2, progress=False, train_transform=dropout, extra_losses=[record])
    absent = torch.cat([p["x1"] for p, _ in seen]).logical_not().float().mean()
    assert 0.25 < float(absent) < 0.35
    present, inputs = seen[0]
    assert torch.equal(inputs["x2"][~present["x2"]], torch.zeros_like(inputs["x2"][~present["x2"]]))
    # two epochs differ in their masks (seeded by step, not by epoch-constant seed)
    assert not torch.equal(seen[0][0]["x1"], seen[len(seen) // 2][0]["x1"])


def test_subset_accuracies_match_manual_masking(data):
    train, test = data
    model = build_classifier(SHAPES, 2, seed=0)
    fit(model, train, epochs=2, progress=False)
    acc = subset_accuracies(model, test, subsets=[["x1"]])
    present = {"x1": torch.ones(test.size, dtype=torch.bool), "x2": torch.zeros(test.size, dtype=torch.bool)}
    logits = model({"x1": test.inputs["x1"], "x2": torch.zeros_like(test.inputs["x2"])}, present)
    assert acc["x1"] == pytest.approx(float((logits.argmax(1) == test.y).float().mean()))
    with pytest.raises(ValueError, match="'x3'"):
        subset_accuracies(model, test, subsets=[["x3"]])


def test_predict_and_fit_on_a_dataset_object():
    ds = make_latent_views(300, seed=2)
    model = build_classifier(SHAPES, 2, seed=0)
    h = fit(model, ds, ds, epochs=1, progress=False)
    logits = predict(model, ds)
    assert logits.shape == (300, 2)
    # the dataset path gives the same numbers as the batch path, computed by hand
    b = to_batch(ds)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(logits, model(b.inputs))
    acc = float((logits.argmax(1) == b.y).float().mean())
    loss = float(torch.nn.functional.cross_entropy(logits, b.y))
    assert h["eval_acc"][0] == pytest.approx(acc) and h["eval_loss"][0] == pytest.approx(loss, rel=1e-5)
    assert evaluate(model, ds) == pytest.approx({"loss": loss, "accuracy": acc}, rel=1e-5)


# ---------------------------------------------------------------- no silent NaN, no empty data


def test_fit_stops_on_a_non_finite_loss_naming_epoch_and_step(data):
    train, test = data
    model = build_classifier(SHAPES, 2, seed=0)
    with pytest.raises(NonFiniteLossError, match=r"fit: the loss became (nan|inf) at epoch 1, step \d+"):
        fit(model, train, test, epochs=3, lr=1e10, progress=False)


def test_fit_on_nonfinite_warn_skips_the_updates_and_keeps_parameters_finite(data):
    train, test = data
    model = build_classifier(SHAPES, 2, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = fit(model, train, epochs=2, lr=1e10, progress=False, on_nonfinite="warn")
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert messages and all("skipped" in m for m in messages)
    assert sum(h["skipped_steps"]) == len(messages) > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(ValueError, match="on_nonfinite"):
        fit(model, train, epochs=1, progress=False, on_nonfinite="ignore")
    # a healthy run skips nothing and matches on_nonfinite="raise" exactly
    a, b = build_classifier(SHAPES, 2, seed=0), build_classifier(SHAPES, 2, seed=0)
    ha = fit(a, train, epochs=1, progress=False)
    hb = fit(b, train, epochs=1, progress=False, on_nonfinite="warn")
    assert hb["skipped_steps"] == [0] and hb["train_loss"] == ha["train_loss"]


def test_evaluate_refuses_nan_logits(data):
    _, test = data
    model = build_classifier(SHAPES, 2, seed=0)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"NaN or inf logits for 200 of 200 rows"):
        evaluate(model, test)
    with pytest.raises(ValueError, match="NaN or inf logits"):
        subset_accuracies(model, test)


def test_labels_are_checked_against_the_model(data):
    train, test = data
    model = build_classifier(SHAPES, 2, seed=0)
    bad = Batch(test.inputs, test.y.clone().index_fill_(0, torch.tensor([3]), 2))
    with pytest.raises(ValueError, match=r"fit labels must lie in 0\.\.1 \(2 classes\), got 2"):
        fit(model, bad, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"eval_data labels must lie in 0\.\.1"):
        fit(model, train, bad, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"evaluate labels must be class ids >= 0"):
        evaluate(model, Batch(test.inputs, test.y - 1))
    with pytest.raises(ValueError, match="non-integer"):
        evaluate(model, Batch(test.inputs, test.y.float() + 0.5))


def test_empty_data_is_refused_and_predict_gives_an_empty_result(data):
    train, test = data
    empty = test.index(slice(0, 0))
    model = build_classifier(SHAPES, 2, seed=0)
    with pytest.raises(ValueError, match="training data has no rows"):
        fit(model, empty, epochs=1, progress=False)
    with pytest.raises(ValueError, match="eval_data has no rows"):
        fit(model, train, empty, epochs=1, progress=False)
    with pytest.raises(ValueError, match="no rows"):
        evaluate(model, empty)
    out = predict(model, empty)
    assert out.shape == (0, 2) and out.dtype == torch.float32


def test_fit_bad_arguments(data):
    train, _ = data
    model = build_classifier(SHAPES, 2)
    with pytest.raises(ValueError, match="optimizer"):
        fit(model, train, epochs=1, optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, train, epochs=1, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="lr must be finite"):
        fit(model, train, epochs=1, lr=float("nan"), progress=False)
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        fit(model, train, epochs=-1, progress=False)


def test_fit_on_the_given_device(data):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    train, test = data
    model = build_classifier(SHAPES, 2)
    fit(model, train, test, epochs=1, device=device, progress=False)
    assert next(model.parameters()).device.type == device


@pytest.mark.parametrize("lr", [1e2, 1e4, 1e8])
def test_a_diverging_run_is_reported_as_divergence_not_as_bad_data(lr):
    """Huge steps can make features inf before the loss is; fit must still call it divergence."""
    from mmlearn.experiments.balance import balance_model
    from mmlearn.data import make_latent_views, to_batch

    train = to_batch(make_latent_views(n=256, seed=0))
    dims = {m: int(x.shape[1]) for m, x in train.inputs.items()}
    for method_seed in range(3):
        model = balance_model(dims, seed=method_seed)
        # plain SGD at these rates diverges within two epochs (Adam's steps are bounded by lr);
        # at 1e4 and above the features overflow before the loss does
        with pytest.raises(NonFiniteLossError, match=r"at epoch [12], step \d+"):
            fit(model, train, epochs=3, lr=lr, optimizer="sgd", progress=False, seed=method_seed)
