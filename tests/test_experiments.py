"""mmlearn.experiments: the runners' home, the layering rule, and the one fusion trainer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import mmlearn
from mmlearn.experiments import fusion_datasets, train_fusion

ROOT = Path(mmlearn.__file__).parent

#: packages that say what a method computes: they must not build classifiers or run the course's experiments
METHOD_PACKAGES = ("fusion", "balance", "representation", "alignment", "robustness", "interactions")
#: what they may not import
FORBIDDEN = ("mmlearn.models", "mmlearn.train", "mmlearn.experiments")

#: temporary re-export shims of the moved runners; the lead empties this list once their importers moved
SHIMS: set[str] = set()

#: imports that are part of a method itself, not an experiment runner: (module, imported name) -> reason
ALLOWED = {
    ("balance/agm.py", "mmlearn.models"): "AGM reads the model's MultimodalOutput (unimodal logits) to modulate",
    ("balance/unimodal.py", "mmlearn.models"): "UME/UMT are methods made of unimodal classifiers",
    ("balance/unimodal.py", "mmlearn.train"): "UME trains its unimodal members with fit (part of the method)",
    ("representation/base.py", "mmlearn.models"): "latent models use the shared MLPEncoder as building block",
    ("representation/factorized.py", "mmlearn.models"): "the factorized model uses the shared MLPEncoder",
    ("representation/training.py", "mmlearn.train"): "fit_representation reuses the shared minibatch iterator",
    ("alignment/model.py", "mmlearn.models"): "the alignment model uses the default encoders",
    ("alignment/model.py", "mmlearn.train"): "train_alignment reuses minibatches and the distributed helpers",
    ("robustness/missing.py", "mmlearn.models"): "MissingEmbeddingClassifier returns a MultimodalOutput",
    ("robustness/sweep.py", "mmlearn.train"): "corrupted_accuracy scores with the one evaluate",
    ("robustness/encoded.py", "mmlearn.train"): "setting_accuracy scores with the one evaluate",
}


def _imports(path: Path) -> set[str]:
    """Absolute names of every mmlearn module ``path`` imports (top level or inside functions)."""
    rel = path.relative_to(ROOT)
    package = ["mmlearn", *rel.parts[:-1]]  # the module's package (for an __init__.py too)
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)  # `from .. import models`
    return out


def _violations() -> list[str]:
    found = []
    for package in METHOD_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in SHIMS:
                continue
            for name in sorted(_imports(path)):
                for forbidden in FORBIDDEN:
                    if (name == forbidden or name.startswith(forbidden + ".")) and (rel, forbidden) not in ALLOWED:
                        found.append(f"mmlearn/{rel} imports {name}")
    return found


def test_method_packages_do_not_import_runners_models_or_train():
    assert _violations() == []


def test_layering_check_sees_relative_and_function_level_imports(tmp_path, monkeypatch):
    fake = tmp_path / "mmlearn"
    (fake / "fusion").mkdir(parents=True)
    (fake / "fusion" / "bad.py").write_text("def f():\n    from ..train import fit\n")
    (fake / "fusion" / "worse.py").write_text("from .. import experiments\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", fake)
    found = _violations()
    assert "mmlearn/fusion/bad.py imports mmlearn.train" in found
    assert "mmlearn/fusion/worse.py imports mmlearn.experiments" in found


def test_allow_list_and_shims_are_not_stale():
    for rel, forbidden in ALLOWED:
        names = _imports(ROOT / rel)
        assert any(n == forbidden or n.startswith(forbidden + ".") for n in names), f"{rel} no longer needs {forbidden}"
    for rel in SHIMS:
        assert (ROOT / rel).exists(), f"shim {rel} is gone: drop it from SHIMS"


def test_the_old_runner_paths_are_gone():
    import mmlearn.balance as balance

    with pytest.raises(ImportError):
        import mmlearn.fusion.experiment  # noqa: F401
    with pytest.raises(ImportError):
        import mmlearn.balance.experiment  # noqa: F401
    assert not hasattr(balance, "run_balance_grid")


def test_train_fusion_options_merge_the_playground_trainer():
    train, test = fusion_datasets(("redundant",), n_train=200, n_test=100)["redundant"]
    run = train_fusion("concat", train, test, epochs=2, seed=1)
    again = train_fusion("concat", train, test, epochs=2, seed=1)
    assert run.accuracy == again.accuracy and not run.model.training
    default = train_fusion("late", train, None, encoders="default", epochs=1, modality_dropout=0.3)
    assert default.accuracy != default.accuracy  # nan without test data
    ticks = []
    train_fusion("gated", train, test, epochs=3, on_epoch_end=lambda *a: ticks.append(1))
    assert len(ticks) == 3
    with pytest.raises(ValueError, match="modality_dropout"):
        train_fusion("concat", train, test, modality_dropout=1.0)
    with pytest.raises(ValueError, match="encoders"):
        train_fusion("concat", train, test, encoders="cnn")
    with pytest.raises(ValueError, match="unknown fusion"):
        train_fusion("nope", train, test)
    assert torch.isfinite(torch.tensor(run.accuracy))


def test_train_fusion_adds_the_fusions_own_loss_term():
    """The bottleneck's beta * KL and DEQ's Jacobian penalty are part of train_fusion's loss: the same run with
    the term weighted up ends with a smaller KL / a smaller Jacobian on the training data than with it off."""
    train, test = fusion_datasets(("redundant",), n_train=300, n_test=100)["redundant"]

    def after_training(fusion_name, options):
        model = train_fusion(fusion_name, train, test, epochs=3, seed=0, options={fusion_name: options}).model
        assert model.fusion.regularizer() is None  # returned in eval mode: no penalty
        model.train()
        torch.manual_seed(0)
        model(train.inputs)  # a training forward on the training data: the fusion computes its term
        term = model.fusion.regularizer()
        model.eval()
        return model.fusion, term

    off, term_off = after_training("information_bottleneck", {"beta": 0.0})
    on, term_on = after_training("information_bottleneck", {"beta": 1.0})
    assert float(on.kl.detach()) < 0.5 * float(off.kl.detach()), (float(on.kl.detach()), float(off.kl.detach()))
    assert float(term_off.detach()) == 0.0 and float(term_on.detach()) == pytest.approx(float(on.kl.detach()))

    off, term_off = after_training("deq", {"jacobian_samples": 1, "jacobian_weight": 0.0})
    on, term_on = after_training("deq", {"jacobian_samples": 1, "jacobian_weight": 10.0})
    assert float(on.last_jacobian_loss.detach()) < 0.5 * float(off.last_jacobian_loss.detach())
    assert float(term_off.detach()) == 0.0 and float(term_on.detach()) == pytest.approx(10.0 * float(on.last_jacobian_loss.detach()))
    plain = train_fusion("deq", train, test, epochs=1, seed=0).model.train()
    plain(train.inputs)
    assert plain.fusion.regularizer() is None  # jacobian_samples = 0 (the default): nothing to add
