"""A small, fast modality-competition experiment: the imbalanced synthetic set, the
model, one training function per balance method, and the grid the notebook and
the panel use.

The set (:func:`make_imbalanced`) has one *easy* modality and one *slow but
needed* modality, built with :func:`mmlearn.data.make_latent_views`:

- the label is ``y = 1[s_1 + 0.3 u_1 > 0]``: ``s_1`` a shared latent, ``u_1`` a
  latent that only ``x2`` sees (``unique_to="x2"``);
- ``x1`` (16-d) is a clean view of ``s``: learned in a few steps, and alone it
  reaches about 90 % (it misses ``u_1``);
- ``x2`` (32-d) is a noisy view of ``s`` and ``u``: slower to learn, but it
  carries what ``x1`` misses.

The encoders are small MLPs with a 4-d linear output, so an encoder that has
not learned the label's directions loses them (a random 4-d projection of 32
noisy dimensions keeps little). In joint training ``x1`` quickly explains most
of the label and the gradient reaching the ``x2`` encoder shrinks: ``x2``'s
encoder ends up knowing less about the label than the same encoder trained
alone (a lower linear-probe accuracy): modality competition.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .._checks import check_number
from ..data import as_batch, make_latent_views
from ..fusion import LateFusion
from ..models import MLPEncoder, MultimodalClassifier
from ..train import evaluate, fit
from ..balance.agm import AGM
from ..balance.attribution import AttributionRegularizer
from ..balance.mcr import CompetitionRegularizer
from ..balance.mmpareto import MMPareto
from ..balance.ogm_ge import OGMGE
from ..balance.probes import encoder_features, probe_accuracy_from_features
from ..balance.unimodal import UniModalEnsemble, UniModalTeacher, unimodal_classifier

#: method name -> what its strength ``alpha`` means
BALANCE_METHODS = {
    "joint": "plain joint training (no strength)",
    "ogm_ge": "OGM-GE modulation alpha (k = 1 - tanh(alpha * rho))",
    "agm": "AGM modulation alpha (kappa = exp(alpha * (rbar - r)))",
    "mmpareto": "MMPareto gradient boost gamma (paper: 1.5)",
    "ume": "uni-modal ensemble (no strength)",
    "umt": "UMT distillation weight lambda",
    "attribution": "attribution-share penalty weight lambda",
    "mcr": "MCR competition-game weight lambda",
}


def default_alphas() -> dict[str, list[float]]:
    """The strengths precomputed for the notebook's panel (small, so the grid trains in seconds)."""
    return {
        "joint": [0.0],
        "ogm_ge": [1.0, 3.0],
        "agm": [1.0, 3.0],
        "mmpareto": [1.5],
        "ume": [0.0],
        "umt": [0.1, 0.3],
        "attribution": [1.0, 3.0],
        "mcr": [0.5, 2.0],
    }


def make_imbalanced(n: int = 3000, *, dims: Mapping[str, int] | None = None, noise_weak: float = 1.0,
                    noise_easy: float = 0.1, uniqueness: float = 0.3, seed: int = 0):
    """The imbalanced two-modality set of notebook 04 (a ``datasets.Dataset``, binary label).

    ``make_latent_views(n, dim={"x1": 16, "x2": 32}, shared_dim=4, unique_dim=4,
    redundancy=1, uniqueness=0.3, unique_to="x2", noise={"x1": 0.1, "x2": 1.0})``:
    ``x1`` easy (clean, the shared latent only), ``x2`` slow but needed (noisy,
    the only view of the unique latent).
    """
    dims = {"x1": 16, "x2": 32} if dims is None else dict(dims)
    check_number(noise_weak, "noise_weak", low=0.0)
    check_number(noise_easy, "noise_easy", low=0.0)
    check_number(uniqueness, "uniqueness", low=0.0)
    return make_latent_views(n, dim=dims, modalities=tuple(dims), shared_dim=4, unique_dim=4, redundancy=1.0,
                             uniqueness=uniqueness, unique_to=list(dims)[1],
                             noise={list(dims)[0]: noise_easy, list(dims)[1]: noise_weak}, seed=seed)


def _encoder(in_dim: int, feature_dim: int, hidden: int) -> MLPEncoder:
    return MLPEncoder(in_dim, feature_dim, hidden=(hidden,), activation=False)


def balance_model(dims: Mapping[str, int] | None = None, n_classes: int = 2, *, feature_dim: int = 4,
                  hidden: int = 32, unimodal_heads: bool = False, seed: int = 0) -> MultimodalClassifier:
    """MLP encoders (``in -> hidden -> ReLU -> feature_dim``, linear output) + a linear
    classifier on the concatenated features (OGM-GE's setting).

    The classifier is late fusion with fixed uniform weights,
    ``f = 1/2 (W_1 z_1 + b_1) + 1/2 (W_2 z_2 + b_2)``: a linear layer on
    ``[z_1; z_2]`` whose weight splits per modality.
    """
    dims = {"x1": 16, "x2": 32} if dims is None else dict(dims)
    check_number(feature_dim, "feature_dim", low=1, integer=True)
    check_number(hidden, "hidden", low=1, integer=True)
    check_number(n_classes, "n_classes", low=2, integer=True)
    torch.manual_seed(seed)
    encoders = {m: _encoder(d, feature_dim, hidden) for m, d in dims.items()}
    fusion = LateFusion({m: feature_dim for m in dims}, n_classes, weights="uniform")
    return MultimodalClassifier(encoders, fusion, n_classes, unimodal_heads=unimodal_heads)


def _check_run_options(epochs, lr, batch_size, seed, feature_dim, hidden, on_nonfinite) -> None:
    check_number(epochs, "epochs", low=0, integer=True)
    check_number(lr, "lr", low=0.0, low_open=True)
    check_number(batch_size, "batch_size", low=1, integer=True)
    check_number(seed, "seed", low=0, integer=True)
    check_number(feature_dim, "feature_dim", low=1, integer=True)
    check_number(hidden, "hidden", low=1, integer=True)
    if on_nonfinite not in ("raise", "warn"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}")


def _probe_all(model, train, test, names) -> dict[str, float]:
    out = {}
    for m in names:
        out[m] = probe_accuracy_from_features(
            encoder_features(model, train, m), train.y.numpy(), encoder_features(model, test, m), test.y.numpy()
        )
    return out


def train_unimodal(train, test, *, epochs: int = 10, lr: float = 0.05, batch_size: int = 64, seed: int = 0,
                   feature_dim: int = 4, hidden: int = 32, on_nonfinite: str = "raise") -> dict:
    """Each modality's encoder trained alone (encoder + linear head), with its probe accuracy per epoch.

    Returns ``{"ensemble": UniModalEnsemble, "probe": {m: [acc per epoch]}, "test_acc": {m: [...]}}``.
    Training goes through :func:`mmlearn.train.fit`: a NaN/inf loss raises
    :class:`~mmlearn._checks.NonFiniteLossError` naming the epoch and step
    (``on_nonfinite="raise"``) or skips that update with a warning (``"warn"``).
    """
    _check_run_options(epochs, lr, batch_size, seed, feature_dim, hidden, on_nonfinite)
    train, test = as_batch(train), as_batch(test)
    names = train.modalities
    n_classes = int(train.y.max()) + 1
    members = {}
    for m in names:
        torch.manual_seed(seed)
        members[m] = unimodal_classifier(m, _encoder(train.inputs[m].shape[1], feature_dim, hidden), n_classes)
    ensemble = UniModalEnsemble(members)
    probe = {m: [] for m in names}
    test_acc = {m: [] for m in names}
    for m in names:
        def record(model, epoch, history, m=m):
            probe[m].append(_probe_all(model, train.select([m]), test.select([m]), [m])[m])
        h = fit(members[m], train.select([m]), test.select([m]), epochs=epochs, lr=lr, batch_size=batch_size,
                optimizer="sgd", seed=seed, progress=False, on_epoch_end=record, on_nonfinite=on_nonfinite)
        test_acc[m] = h["eval_acc"]
    return {"ensemble": ensemble, "probe": probe, "test_acc": test_acc}


def train_balanced(method: str, alpha: float, train, test, *, epochs: int = 10, lr: float = 0.05,
                   batch_size: int = 64, seed: int = 0, teachers: Mapping[str, nn.Module] | None = None,
                   unimodal: dict | None = None, feature_dim: int = 4, hidden: int = 32,
                   on_nonfinite: str = "raise") -> dict:
    """Train :func:`balance_model` with one balance method and record each encoder's probe accuracy per epoch.

    ``method``: a key of :data:`BALANCE_METHODS`; ``alpha`` its strength.
    ``"umt"`` needs ``teachers`` (``{modality: encoder}`` trained alone) and
    ``"ume"`` the result of :func:`train_unimodal` (``unimodal``); both are
    computed if not given. SGD with momentum: gradient-scaling methods (OGM-GE,
    AGM) need a non-adaptive optimiser, since Adam divides a constant gradient
    scale away. Returns ``{"method", "alpha", "probe": {m: [...]}, "test_acc": [...],
    "model", "hook", "seconds"}``. ``on_nonfinite`` as in :func:`mmlearn.train.fit`:
    a diverged run stops with :class:`~mmlearn._checks.NonFiniteLossError`
    naming the epoch and step (``"raise"``) or skips such steps (``"warn"``).
    """
    if method not in BALANCE_METHODS:
        raise ValueError(f"unknown balance method {method!r}; expected one of {sorted(BALANCE_METHODS)}")
    alpha = check_number(alpha, "alpha", low=0.0)
    _check_run_options(epochs, lr, batch_size, seed, feature_dim, hidden, on_nonfinite)
    train, test = as_batch(train), as_batch(test)
    names = train.modalities
    n_classes = int(train.y.max()) + 1
    start = time.perf_counter()
    if method == "ume":
        unimodal = unimodal if unimodal is not None else train_unimodal(
            train, test, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, feature_dim=feature_dim, hidden=hidden,
            on_nonfinite=on_nonfinite)
        ensemble = unimodal["ensemble"]
        epochs_done = len(next(iter(unimodal["probe"].values())))
        # the ensemble's accuracy is only defined at the end (members trained separately)
        acc = evaluate(ensemble, test)["accuracy"]
        return {"method": method, "alpha": float(alpha), "probe": {m: list(unimodal["probe"][m]) for m in names},
                "test_acc": [float("nan")] * (epochs_done - 1) + [acc], "model": ensemble, "hook": None,
                "seconds": time.perf_counter() - start}
    dims = {m: train.inputs[m].shape[1] for m in names}
    model = balance_model(dims, n_classes, feature_dim=feature_dim, hidden=hidden,
                          unimodal_heads=(method == "mmpareto"), seed=seed)
    target: nn.Module = model
    hook = None
    if method == "ogm_ge":
        hook = OGMGE(alpha, seed=seed)
    elif method == "agm":
        hook = target = AGM(model, alpha)
    elif method == "mmpareto":
        hook = MMPareto(gamma=alpha)
    elif method == "umt":
        if teachers is None:
            teachers = train_unimodal(train, test, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                                      feature_dim=feature_dim, hidden=hidden,
                                      on_nonfinite=on_nonfinite)["ensemble"].encoders
        hook = UniModalTeacher(teachers, weight=alpha)
    elif method == "attribution":
        hook = AttributionRegularizer(alpha, kind="share")
    elif method == "mcr":
        hook = CompetitionRegularizer(alpha, num_permutations=1, seed=seed)
    kwargs = hook.fit_kwargs() if hook is not None else {}
    probe = {m: [] for m in names}

    def record(_, epoch, history):
        for m, acc in _probe_all(model, train, test, names).items():
            probe[m].append(acc)

    history = fit(target, train, test, epochs=epochs, lr=lr, batch_size=batch_size, optimizer="sgd", seed=seed,
                  progress=False, on_epoch_end=record, on_nonfinite=on_nonfinite, **kwargs)
    return {"method": method, "alpha": float(alpha), "probe": probe, "test_acc": history["eval_acc"],
            "model": model, "hook": hook, "seconds": time.perf_counter() - start}


def run_balance_grid(train, test, alphas: Mapping[str, Sequence[float]] | None = None, *, epochs: int = 10,
                     lr: float = 0.05, batch_size: int = 64, seed: int = 0, keep_models: bool = False,
                     on_nonfinite: str = "raise") -> dict:
    """Every method at every strength, plus each encoder trained alone: the panel's precomputed grid.

    Returns ``{"unimodal": {"probe": {m: [...]}, "test_acc": {m: [...]}}, "runs": {(method, alpha): result},
    "epochs": epochs, "modalities": [...]}``; results drop their models and hooks (and ``"unimodal"``
    its ``"ensemble"`` of unimodal models) unless ``keep_models``.
    """
    alphas = default_alphas() if alphas is None else {k: list(v) for k, v in alphas.items()}
    for method in alphas:
        if method not in BALANCE_METHODS:
            raise ValueError(f"unknown balance method {method!r}; expected one of {sorted(BALANCE_METHODS)}")
        for a in alphas[method]:
            check_number(a, f"alphas[{method!r}]", low=0.0)
    _check_run_options(epochs, lr, batch_size, seed, 4, 32, on_nonfinite)
    train, test = as_batch(train), as_batch(test)
    unimodal = train_unimodal(train, test, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                              on_nonfinite=on_nonfinite)
    teachers = unimodal["ensemble"].encoders
    runs = {}
    for method, values in alphas.items():
        for alpha in values:
            result = train_balanced(method, alpha, train, test, epochs=epochs, lr=lr, batch_size=batch_size,
                                    seed=seed, teachers=teachers, unimodal=unimodal, on_nonfinite=on_nonfinite)
            if not keep_models:
                result = {k: v for k, v in result.items() if k not in ("model", "hook")}
            runs[(method, float(alpha))] = result
    alone = {"probe": unimodal["probe"], "test_acc": unimodal["test_acc"]}
    if keep_models:
        alone["ensemble"] = unimodal["ensemble"]
    return {"unimodal": alone, "runs": runs, "epochs": epochs, "modalities": train.modalities}
