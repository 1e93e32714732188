"""Missing modalities: dropping them, filling them, and training for them (survey Sec. XI).

- at test time: :func:`missing_batch` drops inputs with presence masks
  (:func:`mmlearn.data.drop_modalities`);
- at train time: :func:`modality_dropout_transform` for ``fit(train_transform=...)``;
- filling side by side: :func:`fill_missing` (zeros, a constant, training means,
  cross-modal generation by a multimodal VAE), :class:`LearnedMissingEmbedding`
  (one learned vector per modality, inside a model);
- losses: :func:`asymmetric_loss` (Eq. 10) and a simplified ARM reweighting
  (:func:`arm_scales`, :func:`arm_loss_term`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import (
    check_level,
    check_modality_dict,
    check_number,
    check_present,
    fill_absent,
    per_modality,
    row_mask,
)
from ..data.batch import Batch, as_batch
from ..data.corruption import drop_modalities

FILL_METHODS = ("zeros", "value", "mean", "vae")


# ------------------------------------------------------------------ dropping


def missing_batch(data, rate: float | Mapping[str, float], *, seed: int = 0, keep_one: bool = True) -> Batch:
    """``data`` with each modality of each row dropped with probability ``rate`` (test-time missingness).

    A thin wrapper of :func:`mmlearn.data.drop_modalities` that keeps the
    labels: dropped inputs are zero-filled and marked absent; rows already
    absent stay absent.
    """
    batch = as_batch(data)
    inputs, present = drop_modalities(batch.inputs, rate, seed=seed, present=batch.present, keep_one=keep_one)
    return Batch(inputs, batch.y, present)


def modality_dropout_transform(rate: float | Mapping[str, float], seed: int = 0, *, keep_one: bool = True):
    """A ``train_transform(batch, step) -> batch`` for :func:`mmlearn.train.fit`: modality dropout.

    Each minibatch drops each modality of each row with probability ``rate``
    (:func:`mmlearn.data.drop_modalities`), seeded by ``seed`` and the step, so
    a run is reproducible and every step draws a new pattern.
    """
    if isinstance(rate, Mapping):
        for m, r in rate.items():
            check_level(r, m)
    else:
        check_level(rate, "every modality")
    seed = int(check_number(seed, "seed", integer=True))

    def transform(batch: Batch, step: int) -> Batch:
        return missing_batch(batch, rate, seed=seed * 1_000_003 + int(step), keep_one=keep_one)

    return transform


# ------------------------------------------------------------------ filling


def training_means(data, present: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Per-element mean of each modality over the rows where it is present, e.g. of the training set.

    ``data``: an inputs dict, a :class:`~mmlearn.data.Batch` or a dataset.
    Returns ``{modality: Tensor (*shape)}`` for :func:`fill_missing` ``(method="mean")``.
    """
    if isinstance(data, Mapping):
        inputs = dict(data)
    else:
        batch = as_batch(data)
        inputs, present = batch.inputs, batch.present if present is None else present
    n = check_modality_dict(inputs, what="training_means inputs")
    mask = check_present(present, list(inputs), n, next(iter(inputs.values())).device)
    out = {}
    for m, x in inputs.items():
        if not bool(mask[m].any()):
            raise ValueError(f"training_means: modality {m!r} is absent in every row; its mean is undefined")
        out[m] = x[mask[m]].mean(dim=0)
    return out


def impute_with_vae(vae, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Fill each absent input with its cross-modal generation by a trained :class:`MultimodalVAE`.

    For each modality ``m``, rows where ``present[m]`` is ``False`` get
    ``vae.generate(inputs, present, target_modality=m)`` (the decoder mean at
    the posterior mean of the modalities that row has); present rows are kept.
    Every row needs at least one present modality. Runs without gradients, in
    the VAE's eval mode (restored afterwards).
    """
    n = check_modality_dict(inputs, vae.shapes, what="impute_with_vae inputs")
    mask = check_present(present, list(inputs), n, next(iter(inputs.values())).device)
    was_training = vae.training
    vae.eval()
    try:
        with torch.no_grad():
            out = {}
            for m, x in inputs.items():
                if bool(mask[m].all()):
                    out[m] = x.clone()
                    continue
                generated = vae.generate(inputs, mask, target_modality=m).to(x.dtype)  # (B, *shape)
                out[m] = torch.where(row_mask(mask[m], x), x, generated)
    finally:
        vae.train(was_training)
    return out


def fill_missing(
    inputs: Mapping[str, Tensor],
    present: Mapping[str, Tensor] | None,
    method: str = "zeros",
    *,
    value: float = 0.0,
    means: Mapping[str, Tensor] | None = None,
    vae=None,
) -> dict[str, Tensor]:
    """Replace the absent rows of each modality (inputs or features); present rows are kept exactly.

    ``method``:

    - ``"zeros"``: 0 (what a presence mask implies by default);
    - ``"value"``: the constant ``value``;
    - ``"mean"``: ``means[m]`` per element, the training mean
      (:func:`training_means` of the *training* data); without ``means`` the
      mean of the present rows of ``inputs`` itself is used;
    - ``"vae"``: cross-modal generation by a trained ``vae`` (:func:`impute_with_vae`).

    Selection with ``torch.where``: whatever an absent row held (NaN too) is gone.
    """
    if method not in FILL_METHODS:
        raise ValueError(f"unknown fill method {method!r}; expected one of {FILL_METHODS}")
    n = check_modality_dict(inputs, what="fill_missing inputs")
    mask = check_present(present, list(inputs), n, next(iter(inputs.values())).device)
    if method == "vae":
        if vae is None:
            raise ValueError("fill_missing(method='vae') needs a trained MultimodalVAE as vae=...")
        clean = {m: fill_absent(x, mask[m]) for m, x in inputs.items()}
        return impute_with_vae(vae, clean, mask)
    if method == "mean":
        if means is None:
            means = training_means(inputs, mask)
        for m in means:
            if m not in inputs:
                raise ValueError(f"fill_missing means: unknown modality {m!r}; inputs have {sorted(inputs)}")
    out = {}
    for m, x in inputs.items():
        if method == "zeros":
            fill: float | Tensor = 0.0
        elif method == "value":
            fill = float(check_number(value, "value"))
        else:
            if m not in means:
                raise ValueError(f"fill_missing: no mean given for modality {m!r}")
            fill = torch.as_tensor(means[m], dtype=x.dtype, device=x.device)
            if tuple(fill.shape) not in ((), tuple(x.shape[1:])):
                raise ValueError(f"fill_missing: means[{m!r}] has shape {tuple(fill.shape)}; "
                                 f"expected {tuple(x.shape[1:])} (one row of {m!r})")
        out[m] = fill_absent(x, mask[m], fill).clone()
    return out


class LearnedMissingEmbedding(nn.Module):
    """One learned vector per modality that stands in for an absent feature (inside a model).

    ``shapes``: ``{modality: feature width or trailing shape}``. ``forward(features,
    present)`` returns a new dict where every absent row of ``features[m]`` is
    replaced by ``self.embeddings[m]`` (``torch.where``): the embedding gets
    gradients only through absent rows, present rows pass unchanged.
    Initialised at zero, so an untrained embedding equals zero filling.
    """

    def __init__(self, shapes: Mapping[str, int | Sequence[int]], init: str = "zeros"):
        super().__init__()
        if not isinstance(shapes, Mapping) or not shapes:
            raise ValueError(f"shapes must be a non-empty dict {{modality: width}}, got {shapes!r}")
        if init not in ("zeros", "normal"):
            raise ValueError(f"init must be 'zeros' or 'normal', got {init!r}")
        params = {}
        for m, s in shapes.items():
            shape = (s,) if isinstance(s, int) else tuple(s)
            if not shape or any(not isinstance(d, int) or d <= 0 for d in shape):
                raise ValueError(f"shapes[{m!r}] must be a positive width or shape, got {s!r}")
            params[m] = nn.Parameter(torch.zeros(shape) if init == "zeros" else 0.02 * torch.randn(shape))
        self.embeddings = nn.ParameterDict(params)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
        shapes = {m: tuple(p.shape) for m, p in self.embeddings.items()}
        n = check_modality_dict(features, shapes, what="LearnedMissingEmbedding features")
        mask = check_present(present, list(features), n, next(iter(features.values())).device)
        out = {}
        for m, x in features.items():
            e = self.embeddings[m].to(x.dtype)  # (*shape)
            out[m] = torch.where(row_mask(mask[m], x), x, e.expand_as(x))
        return out


class MissingEmbeddingClassifier(nn.Module):
    """A :class:`~mmlearn.models.MultimodalClassifier` whose absent features are a learned vector.

    ``encode -> LearnedMissingEmbedding -> fusion (every row now complete) -> head``.
    The fusion is called without a mask, so it sees the learned vector where
    a modality is missing instead of zeros. ``forward_all`` / ``forward`` as the
    wrapped classifier, so :func:`mmlearn.train.fit` trains it (embedding included).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        dims = {m: int(model.fusion.in_dims[m]) for m in model.modalities}
        self.missing = LearnedMissingEmbedding(dims)

    @property
    def modalities(self) -> list[str]:
        return self.model.modalities

    def forward_all(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None):
        from ..models import MultimodalOutput

        features = self.model.encode(inputs)
        filled = self.missing(features, present)
        fused = self.model.fusion(filled, None)
        logits = self.model.head(fused)
        unimodal = {}
        if self.model.unimodal_heads is not None:
            unimodal = {m: self.model.unimodal_heads[m](filled[m]) for m in self.modalities}
        return MultimodalOutput(logits, filled, fused, unimodal, present)

    def forward(self, inputs, present=None):
        return self.forward_all(inputs, present).logits


# ------------------------------------------------------------------ losses


def asymmetric_loss(
    losses: Mapping[str, Tensor],
    present: Mapping[str, Tensor] | None,
    *,
    weights: Mapping[str, float] | None = None,
    imputed: Mapping[str, Tensor] | None = None,
    targets: Mapping[str, Tensor] | None = None,
    gamma: float = 1.0,
) -> Tensor:
    """Survey Eq. (10): weighted losses of the available modalities plus an imputation loss of the missing ones.

        L_asym = sum_{m in M_avail} w_m L_m + gamma sum_{m not in M_avail} L_impute(x_m)      (10)

    applied per row ``b`` and averaged over the batch::

        L = (1/B) sum_b [ sum_{m: present[m][b]} w_m losses[m][b]
                          + gamma sum_{m: not present[m][b]} mean_elements (imputed[m][b] - targets[m][b])^2 ]

    ``losses[m]``: per-row loss of modality ``m`` (B,), e.g. the cross-entropy of
    its unimodal logits with ``reduction="none"``; a row where ``m`` is absent
    contributes nothing from ``losses[m]`` (whatever it holds, NaN included).
    ``weights``: ``w_m``, default 1 each. ``imputed[m]`` / ``targets[m]``:
    ``(B, ...)`` reconstruction and true value of ``m`` (known in training when
    the modality was dropped on purpose); without them the imputation term is 0.
    """
    n = check_modality_dict(losses, what="asymmetric_loss losses")
    names = list(losses)
    for m, v in losses.items():
        if v.dim() != 1:
            raise ValueError(f"asymmetric_loss: losses[{m!r}] has shape {tuple(v.shape)}; expected ({n},), one per row")
    gamma = check_number(gamma, "gamma", low=0.0)
    w = per_modality(weights if weights is not None else 1.0, names, "asymmetric_loss weights")
    w = {m: check_number(v, f"weight of modality {m!r}", low=0.0) for m, v in w.items()}
    mask = check_present(present, names, n, next(iter(losses.values())).device)
    if (imputed is None) != (targets is None):
        raise ValueError("asymmetric_loss: give both imputed and targets, or neither")
    first = next(iter(losses.values()))
    total = first.new_zeros(n)  # (B,)
    for m in names:
        # sum over available modalities of w_m L_m
        total = total + torch.where(mask[m], w[m] * losses[m], torch.zeros_like(losses[m]))
    if imputed is not None:
        for m in imputed:
            if m not in names:
                raise ValueError(f"asymmetric_loss imputed: unknown modality {m!r}; expected one of {names}")
            if m not in targets:
                raise ValueError(f"asymmetric_loss: imputed[{m!r}] given without targets[{m!r}]")
            if imputed[m].shape != targets[m].shape or imputed[m].shape[0] != n:
                raise ValueError(f"asymmetric_loss: imputed[{m!r}] has shape {tuple(imputed[m].shape)} and "
                                 f"targets[{m!r}] {tuple(targets[m].shape)}; expected the same (B={n}, ...)")
            err = (imputed[m] - targets[m]).reshape(n, -1).square().mean(dim=1)  # (B,)
            # gamma * L_impute(x_m) for the rows that miss m
            total = total + torch.where(~mask[m], gamma * err, torch.zeros_like(err))
    return total.mean()


def _true_class_confidence(logits: Tensor, y: Tensor) -> Tensor:
    return F.softmax(logits.detach(), dim=1).gather(1, y[:, None]).mean()


def arm_scales(unimodal_logits: Mapping[str, Tensor], y: Tensor, eps: float = 1e-6) -> dict[str, Tensor]:
    """Simplified ARM contributions and scales (Gao et al., AAAI 2025; method-notes section 9).

    Contribution of modality ``m`` on the batch: ``phi_m = mean_b softmax(logits_m)[b, y_b]``
    (no gradient). Scale: ``s_m = mean_{k != m} phi_k / phi_m``; with two
    modalities ``s_v = phi_a / phi_v`` and ``s_a = phi_v / phi_a``, ARM's ratio,
    so the weaker modality is amplified by the stronger one's contribution.

    Difference from the paper: ARM's contribution is
    ``phi_a = p_c NMI(a, c) + p_a (NMI(a, c) - NCMI(a; c | v))`` with histogram
    estimates of (conditional) normalised mutual information between the
    unimodal and the fused features; here only the unimodal confidence ``p_m``
    is kept (the mutual-information factors are dropped), and the ratio is
    generalised to M modalities by the mean of the others.
    """
    names = list(unimodal_logits)
    if len(names) < 2:
        raise ValueError(f"arm_scales needs at least two modalities, got {names}")
    phi = {m: _true_class_confidence(unimodal_logits[m], y).clamp(min=eps) for m in names}
    return {m: torch.stack([phi[k] for k in names if k != m]).mean() / phi[m] for m in names}


def arm_loss_term(weight: float = 1.0):
    """An ``extra_losses`` term for :func:`mmlearn.train.fit`: cross-entropy on ARM-reweighted features.

    ``term(model, out, batch) = weight * CE(head(fusion({m: s_m * features_m})), y)``
    with ``s_m`` from :func:`arm_scales` on the model's unimodal logits (build
    the classifier with ``unimodal_heads=True``, or use late fusion). Unlike
    ARM, which trains only on the reweighted output, the term is added to
    ``fit``'s plain cross-entropy (pass ``loss_fn=lambda logits, y: logits.sum() * 0``
    to train on the reweighted loss alone).
    """
    weight = check_number(weight, "weight", low=0.0)

    def term(model, out, batch) -> Tensor:
        if not out.unimodal:
            raise ValueError("arm_loss_term needs per-modality logits: build the model with unimodal_heads=True")
        scales = arm_scales(out.unimodal, batch.y)
        scaled = {m: f * scales[m] for m, f in out.features.items()}
        logits = model.head(model.fusion(scaled, batch.present))
        return weight * F.cross_entropy(logits, batch.y)

    return term
