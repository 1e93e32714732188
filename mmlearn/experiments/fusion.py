"""Train every fusion method on the same data with the same encoders: the comparison of notebook 03,
the fusion panel, the interaction meter and the playground.

:func:`fusion_datasets` builds the synthetic sets whose label needs redundant,
unique or synergistic information (and AV-Digits when asked); :func:`train_fusion`
(the course's one fusion trainer) trains one encoders + fusion + head model and
records accuracy, parameter count and training time; :func:`compare_fusions`
does it for every (dataset, fusion) pair. Everything is seeded; small enough to
run in seconds on one CPU.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data import Batch, as_batch, make_latent_views, to_batch
from ..models import MLPEncoder, MultimodalClassifier, build_classifier
from ..train import evaluate, fit
from ..fusion import FUSIONS

#: the order methods appear in tables and dropdowns
FUSION_ORDER = ("early", "concat", "late", "tensor", "low_rank", "cross_attention", "gated", "embracenet", "deq")

#: small, fast settings per method (the notebook and the panel use them)
DEFAULT_OPTIONS: dict[str, dict] = {
    "concat": {"hidden": 32},
    "low_rank": {"rank": 4},
    "cross_attention": {"dim": 16, "heads": 2, "tokens": 2},
    "deq": {"max_iter": 8, "tol": 1e-3, "backward_max_iter": 8},
}

#: what each synthetic set's label needs (survey Sec. IX: redundancy, uniqueness, synergy)
SYNTHETIC_KINDS = {
    "redundant": dict(redundancy=1.0, uniqueness=0.0, synergy=0.0),
    "unique": dict(redundancy=0.0, uniqueness=1.0, synergy=0.0),
    "synergy": dict(redundancy=0.0, uniqueness=0.0, synergy=1.0),
}


def fusion_datasets(
    kinds: Sequence[str] = ("redundant", "unique", "synergy"),
    *,
    n_train: int = 1000,
    n_test: int = 500,
    dim: int = 8,
    noise: float = 0.1,
    seed: int = 0,
) -> dict[str, tuple[Batch, Batch]]:
    """``{kind: (train, test)}`` from :func:`mmlearn.data.make_latent_views`.

    ``redundant``: the label is a shared latent seen by both ``x1`` and ``x2``;
    ``unique``: a latent only ``x1`` sees; ``synergy``: the sign of a product
    of one private latent of each view (XOR-like: neither view alone says
    anything about it).
    """
    out = {}
    for kind in kinds:
        if kind not in SYNTHETIC_KINDS:
            raise ValueError(f"unknown synthetic kind {kind!r}; expected one of {sorted(SYNTHETIC_KINDS)}")
        ds = make_latent_views(n_train + n_test, dim=dim, shared_dim=2, unique_dim=2, noise=noise, seed=seed,
                               **SYNTHETIC_KINDS[kind])
        batch = to_batch(ds)
        out[kind] = (batch.index(slice(0, n_train)), batch.index(slice(n_train, None)))
    return out


def mlp_encoders(shapes: Mapping[str, Sequence[int]], feature_dim: int = 16, hidden: Sequence[int] = (32,),
                 identity: bool = False) -> dict[str, nn.Module]:
    """One small MLP per modality (flattening its input); identity (flatten only) for early fusion."""
    if identity:
        return {m: MLPEncoder(tuple(s), out_dim=None) for m, s in shapes.items()}
    return {m: MLPEncoder(tuple(s), feature_dim, hidden=tuple(hidden)) for m, s in shapes.items()}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass
class FusionRun:
    """One trained model and its numbers."""

    dataset: str
    fusion: str
    model: MultimodalClassifier
    accuracy: float
    params: int
    fusion_params: int
    seconds: float
    history: dict = field(repr=False, default_factory=dict)

    def row(self) -> dict:
        return {"dataset": self.dataset, "fusion": self.fusion, "accuracy": round(self.accuracy, 4),
                "params": self.params, "fusion_params": self.fusion_params, "train_s": round(self.seconds, 2)}


#: the encoders :func:`train_fusion` can build: small MLPs per modality (notebook 03, the meter), or
#: :func:`mmlearn.models.build_classifier`'s defaults (a small CNN for images; the playground)
ENCODERS = ("mlp", "default")


def train_fusion(
    fusion: str,
    train,
    test=None,
    *,
    n_classes: int | None = None,
    encoders: str = "mlp",
    feature_dim: int | None = None,
    hidden: Sequence[int] = (32,),
    fusion_dim: int = 32,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    options: Mapping[str, dict] | None = None,
    early_hidden: int = 32,
    modality_dropout: float = 0.0,
    on_epoch_end=None,
    dataset: str = "",
) -> FusionRun:
    """Train encoders + ``fusion`` + a head on ``train``; test accuracy on ``test`` (``nan`` without one).

    ``encoders="mlp"``: one small MLP per modality (``feature_dim`` default 16, ``hidden``) and a fusion of
    width ``fusion_dim``; early fusion (Eq. 4) gets identity encoders (it fuses the raw inputs) and
    ``early_hidden`` units, so its head is a one-hidden-layer MLP on the concatenated inputs.
    ``encoders="default"``: :func:`mmlearn.models.build_classifier` (``feature_dim`` default 32).
    ``options`` overrides :data:`DEFAULT_OPTIONS` per method. ``modality_dropout``: drop each modality of
    each training sample with this probability (zero-filled, marked absent, seeded by the step), which
    teaches the model to cope with missing inputs. ``on_epoch_end`` goes to :func:`mmlearn.train.fit`
    (e.g. a progress bar). The fusion's own loss term, if it has one (:meth:`mmlearn.fusion.Fusion.regularizer`:
    the information bottleneck's ``beta * KL``, DEQ's Jacobian penalty when switched on), is added to the
    cross-entropy. The model is returned in eval mode.
    """
    from ..data import drop_modalities

    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; available: {sorted(FUSIONS)}")
    if encoders not in ENCODERS:
        raise ValueError(f"encoders must be one of {ENCODERS}, got {encoders!r}")
    if not 0 <= modality_dropout < 1:
        raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
    train = as_batch(train)
    test = None if test is None else as_batch(test)
    n_classes = int(train.y.max()) + 1 if n_classes is None else n_classes
    opts = dict(DEFAULT_OPTIONS.get(fusion, {}))
    opts.update((options or {}).get(fusion, {}))
    shapes = {m: tuple(x.shape[1:]) for m, x in train.inputs.items()}
    if encoders == "default":
        model = build_classifier(shapes, n_classes, fusion, feature_dim=feature_dim or 32, seed=seed, **opts)
    else:
        torch.manual_seed(seed)
        modules = mlp_encoders(shapes, feature_dim or 16, hidden, identity=fusion == "early")
        width = early_hidden if fusion == "early" else fusion_dim
        model = MultimodalClassifier(modules, fusion, n_classes, fusion_dim=width, **opts)

    transform = None
    if modality_dropout > 0:
        def transform(batch: Batch, step: int) -> Batch:
            inputs, present = drop_modalities(batch.inputs, modality_dropout, seed=seed * 100_003 + step,
                                              present=batch.present)
            return Batch(inputs, batch.y, present)

    start = time.perf_counter()
    history = fit(model, train, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=False,
                  train_transform=transform, on_epoch_end=on_epoch_end, extra_losses=[fusion_regularizer])
    seconds = time.perf_counter() - start
    model.eval()
    accuracy = evaluate(model, test)["accuracy"] if test is not None else float("nan")
    return FusionRun(dataset, fusion, model, accuracy, count_parameters(model), count_parameters(model.fusion),
                     seconds, history)


def fusion_regularizer(model, out, batch):
    """An ``extra_losses`` term for :func:`mmlearn.train.fit`: the fusion's own loss term
    (:meth:`mmlearn.fusion.Fusion.regularizer`, e.g. the bottleneck's ``beta * KL``), or 0 when it has none."""
    fusion = getattr(model, "fusion", None)
    term = fusion.regularizer() if fusion is not None else None
    return out.logits.new_zeros(()) if term is None else term


def compare_fusions(
    datasets: Mapping[str, tuple],
    fusions: Sequence[str] = FUSION_ORDER,
    **kwargs,
) -> list[FusionRun]:
    """:func:`train_fusion` for every dataset and fusion (same seed, same encoders): a list of runs.

    ``kwargs`` go to :func:`train_fusion`; a dict ``per_dataset={name: {...}}``
    overrides them for one dataset (e.g. more epochs for a harder set).
    """
    per_dataset = kwargs.pop("per_dataset", {})
    runs = []
    for name, (train, test) in datasets.items():
        settings = {**kwargs, **per_dataset.get(name, {})}
        for fusion in fusions:
            runs.append(train_fusion(fusion, train, test, dataset=name, **settings))
    return runs


def runs_table(runs: Sequence[FusionRun]) -> list[dict]:
    """One dict per run: dataset, fusion, accuracy, params, fusion_params, train_s."""
    return [r.row() for r in runs]
