"""The training loop: learning, determinism, extension points, device."""

import pytest
import torch

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
    fit(a, train, epochs=1, batch_size=500, progress=False)
    h = fit(b, train, epochs=1, batch_size=500, progress=False, extra_losses=[unimodal_loss])
    assert seen == [({"x1", "x2"}, 500), ({"x1", "x2"}, 500)]
    # without the term the unimodal heads never get a gradient
    torch.testing.assert_close(a.unimodal_heads["x1"].weight, build_classifier(SHAPES, 2, seed=0, unimodal_heads=True).unimodal_heads["x1"].weight)
    assert not torch.equal(a.unimodal_heads["x1"].weight, b.unimodal_heads["x1"].weight)
    assert h["train_loss"][0] > 0


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
    assert predict(model, ds).shape == (300, 2)
    assert 0 <= h["eval_acc"][0] <= 1


def test_fit_bad_arguments(data):
    train, _ = data
    model = build_classifier(SHAPES, 2)
    with pytest.raises(ValueError, match="optimizer"):
        fit(model, train, epochs=1, optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, train, epochs=1, batch_size=0, progress=False)


def test_fit_on_the_given_device(data):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    train, test = data
    model = build_classifier(SHAPES, 2)
    fit(model, train, test, epochs=1, device=device, progress=False)
    assert next(model.parameters()).device.type == device
