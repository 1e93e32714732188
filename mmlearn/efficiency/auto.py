"""Choosing a fusion method: by training (successive halving) or without training (from the PID).

``auto_fusion`` trains every registered fusion method (and a few learning rates
and widths) for a little, keeps the better half, trains those longer, and so on
(successive halving, Karnin, Koren, Somekh 2013; Jamieson and Talwalkar 2016).
``recommend_fusion`` trains nothing: it estimates how much of the label the two
modalities carry redundantly, uniquely and synergistically (the PID of Liang et
al., NeurIPS 2023) and points to the fusion families suited to the dominant kind.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .._checks import check_number


@dataclass
class AutoFusionResult:
    """What :func:`auto_fusion` returns.

    ``leaderboard``: one dict per configuration, best validation accuracy first:
    ``method``, ``options`` (``lr``, ``fusion_dim``), ``val_accuracy`` (at its last
    evaluation), ``epochs`` (trained in all), ``rung`` (the last halving round it
    reached, 0-based); ``model`` / ``method`` / ``options``: the first entry's
    fitted model and configuration; ``epochs_used``: epochs trained over all
    configurations; ``failed``: ``{method: error message}`` for methods that
    could not be built or trained on this data.
    """

    model: nn.Module
    method: str
    options: dict
    leaderboard: list[dict]
    epochs_used: int
    seconds: float
    failed: dict[str, str] = field(default_factory=dict)

    def predict(self, data) -> Tensor:
        """Predicted classes ``(N,)`` of the best model."""
        from ..train import predict

        return predict(self.model, data).argmax(dim=1)


def auto_fusion(
    train,
    val,
    budget: int = 60,
    methods: Sequence[str] | None = None,
    *,
    lrs: Sequence[float] = (3e-3,),
    fusion_dims: Sequence[int] = (32,),
    eta: int = 2,
    feature_dim: int = 32,
    batch_size: int = 64,
    seed: int = 0,
) -> AutoFusionResult:
    """One call: pick a fusion method (and lr, width) by successive halving on ``val``.

    Configurations: every method in ``methods`` (default: all of
    ``mmlearn.fusion.FUSIONS``) times ``lrs`` times ``fusion_dims`` (late fusion
    has no fusion width, so it gets one configuration per lr). Each is a
    ``build_classifier`` model (default encoders, seed ``seed``).

    Successive halving with ``R = ceil(log_eta(n))`` rounds: in round ``r`` every
    surviving configuration trains ``max(1, budget // (R * survivors))`` more
    epochs (so each round spends about ``budget / R`` epochs), is scored on
    ``val``, and the best ``ceil(survivors / eta)`` go on. ``budget`` is in
    epochs over all configurations; a configuration's training continues across
    rounds from its weights (a fresh Adam each round). The best model is the one
    with the highest validation accuracy at its last evaluation (ties: the later
    round, then the order of the configurations).
    """
    from ..data import as_batch
    from ..fusion import FUSIONS
    from ..models import build_classifier
    from ..train import evaluate, fit

    budget = check_number(budget, "budget", low=1, integer=True)
    eta = check_number(eta, "eta", low=2, integer=True)
    feature_dim = check_number(feature_dim, "feature_dim", low=1, integer=True)
    batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
    seed = check_number(seed, "seed", integer=True)
    lrs = [check_number(lr, "lrs[]", low=0.0, low_open=True) for lr in lrs]
    dims = [check_number(d, "fusion_dims[]", low=1, integer=True) for d in fusion_dims]
    if not lrs or not dims:
        raise ValueError("lrs and fusion_dims must each hold at least one value")
    names = list(FUSIONS) if methods is None else list(methods)
    if isinstance(methods, str):
        raise TypeError(f"methods must be a list of names, got the string {methods!r}")
    if not names:
        raise ValueError("methods is empty: there is nothing to choose from")
    unknown = [m for m in names if m not in FUSIONS]
    if unknown:
        raise ValueError(f"unknown fusion method {unknown[0]!r}; registered: {sorted(FUSIONS)}")
    tr, va = as_batch(train), as_batch(val)
    if set(tr.modalities) != set(va.modalities):
        raise ValueError(f"train has modalities {tr.modalities} but val has {va.modalities}")
    shapes = {m: tuple(tr.inputs[m].shape[1:]) for m in tr.modalities}
    n_classes = int(max(int(tr.y.max()), int(va.y.max()))) + 1

    start = time.perf_counter()
    entries, failed = [], {}
    for method in names:
        for lr in lrs:
            for d in dims[:1] if FUSIONS[method].outputs_predictions else dims:
                options = {"lr": lr} if FUSIONS[method].outputs_predictions else {"lr": lr, "fusion_dim": d}
                try:
                    kw = {} if FUSIONS[method].outputs_predictions else {"fusion_dim": d}
                    model = build_classifier(shapes, n_classes, method, feature_dim=feature_dim, seed=seed, **kw)
                except (ValueError, TypeError, RuntimeError) as err:
                    failed[method] = f"{type(err).__name__}: {err}"
                    break
                entries.append({"method": method, "options": options, "model": model, "val_accuracy": float("nan"),
                                "epochs": 0, "rung": -1, "order": len(entries)})
    if not entries:
        raise ValueError(f"no fusion method could be built on this data: {failed}")

    rounds = max(1, math.ceil(math.log(len(entries), eta) - 1e-9))
    alive = list(entries)
    used = 0
    for rung in range(rounds):
        epochs = max(1, budget // (rounds * len(alive)))
        for e in alive:
            try:
                fit(e["model"], tr, epochs=epochs, batch_size=batch_size, lr=e["options"]["lr"],
                    seed=seed + rung, progress=False)
                e["val_accuracy"] = evaluate(e["model"], va)["accuracy"]
            except (ValueError, RuntimeError, FloatingPointError) as err:  # diverged or unsupported
                failed[e["method"]] = f"{type(err).__name__}: {err}"
                e["val_accuracy"] = float("-inf")
            e["epochs"] += epochs
            e["rung"] = rung
            used += epochs
        keep = math.ceil(len(alive) / eta)
        alive = sorted(alive, key=lambda e: (-e["val_accuracy"], e["order"]))[:keep]
    ranked = sorted(entries, key=lambda e: (-e["val_accuracy"], -e["rung"], e["order"]))
    board = [{k: e[k] for k in ("method", "options", "val_accuracy", "epochs", "rung")} for e in ranked]
    best = ranked[0]
    if not math.isfinite(best["val_accuracy"]):
        raise RuntimeError(f"auto_fusion: every configuration failed: {failed}")
    return AutoFusionResult(best["model"], best["method"], dict(best["options"]), board, used,
                            time.perf_counter() - start, failed)


# ---------------------------------------------------------------------------- zero-training recommendation

#: Fusion families for each dominant interaction (Liang et al., NeurIPS 2023, model selection), as names in
#: ``mmlearn.fusion.FUSIONS``; the first registered ones are recommended, in this order.
FAMILIES = {
    "synergy": ("tensor", "low_rank", "cross_attention", "concat", "deq"),
    "redundancy": ("early", "late", "concat", "available", "available_mean"),
    "uniqueness": ("late", "gated", "embracenet", "concat"),
    "none": ("late",),
}

REASONS = {
    "synergy": "most of the label needs both modalities at once: use a fusion that multiplies or attends across "
    "modalities (tensor, low-rank, cross-attention); additive late fusion cannot represent it",
    "redundancy": "most of the label is in either modality alone: simple early or late fusion suffices, and "
    "late fusion also tolerates a missing modality",
    "uniqueness": "most of the label is in one modality only: keep each modality's own model (late fusion, "
    "gated or EmbraceNet weighting) so the informative one is not drowned out",
    "none": "the modalities carry (almost) no information about the label: no fusion will help",
}


@dataclass
class FusionRecommendation:
    """``dominant`` interaction, the ``fractions`` of ``I(X1,X2;Y)`` per kind, the ``methods`` to try first, why."""

    dominant: str
    fractions: dict[str, float]
    methods: list[str]
    reason: str
    pid: object


def _as_codes(x, n_clusters: int):
    """Discrete-valued float features with few distinct rows become integer codes (no k-means needed)."""
    import numpy as np

    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    flat = arr.reshape(arr.shape[0], -1)
    uniq, inv = np.unique(flat, axis=0, return_inverse=True)
    if len(uniq) <= n_clusters:
        return inv.ravel().astype(np.int64)
    return flat.astype(np.float64)


def recommend_fusion(
    data=None,
    *,
    pid=None,
    modalities: Sequence[str] | None = None,
    n_clusters: int = 8,
    seed: int = 0,
    min_information: float = 0.01,
) -> FusionRecommendation:
    """Recommend fusion methods without training, from the data's redundancy, uniqueness and synergy.

    Either ``data`` (a Batch or dataset with two modalities; the PID is
    estimated with ``mmlearn.interactions.pid_from_samples``: k-means with
    ``n_clusters`` clusters per modality, a plug-in histogram and the BROJA
    convex program; inputs with at most ``n_clusters`` distinct rows are used as
    codes directly) or a precomputed ``pid``: any object with ``redundancy``,
    ``unique1``, ``unique2`` and ``synergy`` (bits).

    Rule: the dominant kind is the largest of ``R``, ``U1 + U2`` and ``S``; the
    recommendation lists the registered methods of that kind's family
    (:data:`FAMILIES`), following the model-selection finding of Liang et al.
    (NeurIPS 2023): high synergy is best served by multiplicative, tensor and
    cross-attention fusion; high redundancy by early or late fusion; high
    uniqueness by late fusion and per-modality weighting. (The family lists are
    this library's reading of that finding, not a table copied from the paper.)
    When ``I(X1,X2;Y) < min_information`` bits the dominant kind is ``"none"``.
    The plug-in PID overestimates synergy on few samples or many clusters, and on
    continuous views k-means keeps little of the label information and can blur
    the kinds: on ``make_latent_views(2000, dim=8, redundancy=1)`` (all redundant)
    it finds R, U, S fractions of 0.32, 0.32, 0.36 of only 0.22 bits, while the
    synergy-only and uniqueness-only settings come out right (S 0.90, U 0.90).
    Read ``fractions`` before trusting ``dominant`` when they are close; a
    precomputed PID from a better estimator can be passed as ``pid``.
    """
    from ..fusion import FUSIONS

    min_information = check_number(min_information, "min_information", low=0.0)
    if pid is None:
        if data is None:
            raise ValueError("recommend_fusion needs data or a precomputed pid")
        from ..data import as_batch
        from ..interactions import pid_from_samples

        n_clusters = check_number(n_clusters, "n_clusters", low=2, integer=True)
        batch = as_batch(data)
        names = list(modalities) if modalities is not None else batch.modalities
        if len(names) != 2:
            raise ValueError(f"the PID here is for two modalities; got {names} (pass modalities=[a, b])")
        for m in names:
            if m not in batch.inputs:
                raise ValueError(f"unknown modality {m!r}; the data has {batch.modalities}")
        x1, x2 = (_as_codes(batch.inputs[m], n_clusters) for m in names)
        pid = pid_from_samples(x1, x2, batch.y.numpy(), n_clusters=n_clusters, seed=seed)
    values = {}
    for name in ("redundancy", "unique1", "unique2", "synergy"):
        if not hasattr(pid, name):
            raise TypeError(f"pid must have redundancy, unique1, unique2 and synergy; {type(pid).__name__} lacks {name}")
        values[name] = check_number(getattr(pid, name), f"pid.{name}", low=-1e-6)
    r, u, s = values["redundancy"], values["unique1"] + values["unique2"], values["synergy"]
    total = r + u + s
    if total < min_information:
        dominant = "none"
        fractions = {"redundancy": 0.0, "uniqueness": 0.0, "synergy": 0.0}
    else:
        fractions = {"redundancy": r / total, "uniqueness": u / total, "synergy": s / total}
        dominant = max(fractions, key=lambda k: (fractions[k], k == "synergy"))
    methods = [m for m in FAMILIES[dominant] if m in FUSIONS]
    return FusionRecommendation(dominant, fractions, methods, REASONS[dominant], pid)


__all__ = ["AutoFusionResult", "FAMILIES", "FusionRecommendation", "auto_fusion", "recommend_fusion"]
