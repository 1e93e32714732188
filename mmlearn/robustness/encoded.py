"""Accuracy under a combined setting (missing rates, a corruption per modality, an attack), and the same
numbers from cached encoder features for panels that must answer at once.

:func:`setting_batch` says, in one place, how one *setting* turns clean data into the data a model is scored
on, in this order:

1. ``missing[m]``: each modality of each row dropped with that probability
   (:func:`~mmlearn.robustness.missing_batch`, ``keep_one``: a row keeps at least one input);
2. ``level[m]``: the corruption ``kind`` at that level on modality ``m`` (:func:`~mmlearn.robustness.corrupt`;
   each modality draws from its own seeded stream; absent rows untouched). The default kind,
   ``"gaussian_noise"``, is the course's noise: ``x' = (1 - l) x + l (mu + sigma eps)``;
3. ``attack[m]``: an FGSM or PGD attack with that epsilon on modality ``m`` against the true labels
   (:func:`~mmlearn.robustness.attack`, eval mode).

:func:`setting_accuracy` scores a model on it (:func:`mmlearn.train.evaluate`), and
:func:`~mmlearn.robustness.corrupted_accuracy` is the one-kind special case.

Speed (:class:`EncodedData`): a corruption of modality ``m`` changes only encoder ``m``'s input, and each
modality has its own noise stream, so the encoder features of ``m`` at level ``l`` are computed once per
``(m, l)`` and kept; a setting without an attack then only runs fusion + head. Missingness is applied to the
features with the same draws (:func:`mmlearn.data.drop_modalities` draws from the row count alone); every fusion
zero-fills absent rows itself (``Fusion.check``), so encoding a zero-filled input first changes nothing.
:func:`encoded_accuracy` equals :func:`setting_accuracy` (tested), and :func:`encoded_curve` is it along one
variable. Attacks need the whole model's input gradient, so they run on inputs (use a subset of rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_number
from ..data.batch import Batch, as_batch
from ..data.corruption import drop_modalities
from .adversarial import attack as run_attack
from .corruptions import CORRUPTIONS, corrupt
from .missing import missing_batch

ATTACKS = ("fgsm", "pgd")


def _per_modality(values, names: Sequence[str], what: str, high: float | None = 1.0) -> dict[str, float]:
    if values is None:
        return {m: 0.0 for m in names}
    if not isinstance(values, Mapping):
        values = {m: values for m in names}
    for m in values:
        if m not in names:
            raise ValueError(f"{what}: unknown modality {m!r}; the data has {list(names)}")
    return {m: float(check_number(values.get(m, 0.0), f"{what} of {m!r}", low=0.0, high=high)) for m in names}


def setting_batch(model: nn.Module | None, data, level=None, missing=None, attack=None, *, kind: str = "gaussian_noise",
                  attack_kind: str = "fgsm", seed: int = 0, attack_options: Mapping | None = None,
                  **options) -> Batch:
    """``data`` under one setting (module docstring): ``missing`` rates, then ``kind`` at ``level``, then
    ``attack_kind`` with epsilons ``attack``. Each of ``missing``, ``level``, ``attack`` is a number for every
    modality or a dict ``{modality: value}`` (missing modalities 0); ``options`` go to the corruption (e.g.
    ``stats={m: (mu, sigma)}`` of the training set), ``attack_options`` to the attack (``steps`` for PGD ...).
    ``model`` is only needed for an attack."""
    batch = as_batch(data)
    names = batch.modalities
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption kind {kind!r}; available: {sorted(CORRUPTIONS)}")
    if attack_kind not in ATTACKS:
        raise ValueError(f"attack_kind must be one of {ATTACKS}, got {attack_kind!r}")
    missing = _per_modality(missing, names, "missing rate")
    level = _per_modality(level, names, f"{kind} level")
    eps = _per_modality(attack, names, f"{attack_kind} epsilon", high=None)
    if any(missing.values()):
        batch = missing_batch(batch, missing, seed=seed, keep_one=True)
    on = {m: v for m, v in level.items() if v > 0}
    if on:
        batch = Batch(corrupt(batch.inputs, kind, on, list(on), batch.present, seed=seed, **options), batch.y,
                      batch.present)
    hit = {m: v for m, v in eps.items() if v > 0}
    if hit:
        if model is None:
            raise ValueError("an attack needs the model")
        extra = {"seed": seed} if attack_kind == "pgd" else {}
        inputs = run_attack(model, batch.inputs, batch.y, attack_kind, hit, modalities=list(hit),
                            present=batch.present, **extra, **dict(attack_options or {}))
        batch = Batch({m: v.detach() for m, v in inputs.items()}, batch.y, batch.present)
    return batch


def setting_accuracy(model: nn.Module, data, level=None, missing=None, attack=None, **kwargs) -> float:
    """Accuracy of ``model`` on :func:`setting_batch` (share of rows whose argmax logit is the label)."""
    from ..train import evaluate

    return float(evaluate(model, setting_batch(model, data, level, missing, attack, **kwargs))["accuracy"])


class EncodedData:
    """Encoder features of one classifier (``model.encoders``, ``model.fusion``, ``model.head``) on ``data``,
    per modality and corruption level, computed once each.

    ``enc.features(m, l)`` is ``model.encoders[m]`` applied to modality ``m`` of
    ``corrupt(data.inputs, kind, {m: l}, seed=seed, **options)``: what the whole model computes for ``m`` at
    that level, whatever the other modalities' levels. :meth:`warm` fills the cache for a grid of levels.
    """

    def __init__(self, model: nn.Module, data, *, kind: str = "gaussian_noise", seed: int = 0, **options):
        if kind not in CORRUPTIONS:
            raise ValueError(f"unknown corruption kind {kind!r}; available: {sorted(CORRUPTIONS)}")
        self.model, self.data, self.kind, self.seed, self.options = model, as_batch(data), kind, seed, options
        self._cache: dict[tuple[str, float], Tensor] = {}
        self._present: dict[tuple, dict[str, Tensor]] = {}

    @property
    def modalities(self) -> list[str]:
        return self.data.modalities

    @torch.no_grad()
    def features(self, modality: str, level: float) -> Tensor:
        key = (modality, round(float(level), 6))
        if key not in self._cache:
            if modality not in self.modalities:
                raise ValueError(f"unknown modality {modality!r}; expected one of {self.modalities}")
            x = self.data.inputs
            if key[1] > 0:
                x = corrupt(x, self.kind, {modality: key[1]}, [modality], self.data.present, seed=self.seed,
                            **self.options)
            self.model.eval()
            if hasattr(self.model, "prepare_inputs"):  # the classifier's boundary rules (dtype, absent rows)
                x, _ = self.model.prepare_inputs(x, self.data.present)
            self._cache[key] = self.model.encoders[modality](x[modality])
        return self._cache[key]

    def present(self, missing: Mapping[str, float]) -> dict[str, Tensor]:
        """The presence mask after dropping modalities at rates ``missing`` (:func:`mmlearn.data.drop_modalities`
        with this object's seed, ``keep_one``): its draws depend on the row count and the modality names only,
        so it is computed once per setting and kept."""
        key = tuple(sorted((m, round(float(v), 6)) for m, v in missing.items()))
        if key not in self._present:
            n = self.data.size
            stand_in = {m: torch.zeros(n, 1) for m in self.modalities}  # the values do not matter, only the rows
            _, self._present[key] = drop_modalities(stand_in, dict(key), seed=self.seed, present=self.data.present,
                                                    keep_one=True)
        return self._present[key]

    def warm(self, levels: Sequence[float]) -> None:
        """Compute every modality at every level now, so later settings only look up."""
        for m in self.modalities:
            for lv in levels:
                self.features(m, lv)


@torch.no_grad()
def encoded_logits(encoded: EncodedData, level=None, missing=None) -> Tensor:
    """Logits ``(B, C)`` of ``encoded.model`` under a setting without attack, from cached features."""
    features, present = _setting_features(encoded, level, missing)
    model = encoded.model
    model.eval()
    return model.head(model.fusion(features, present))


def _setting_features(encoded: EncodedData, level, missing) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """The cached features and the presence mask of one setting."""
    names = encoded.modalities
    level = _per_modality(level, names, f"{encoded.kind} level")
    missing = _per_modality(missing, names, "missing rate")
    features = {m: encoded.features(m, level[m]) for m in names}
    present = encoded.data.present
    if any(missing.values()):
        # absent rows are left as they are: Fusion.check zero-fills them, as encoding a zero input would not
        present = encoded.present(missing)
    return features, present


def encoded_accuracy(encoded: EncodedData, level=None, missing=None) -> float:
    """:func:`setting_accuracy` of ``encoded.model`` on ``encoded.data`` (same kind, seed and options), from
    cached encoder features: equal to it, only faster."""
    logits = encoded_logits(encoded, level, missing)
    return float((logits.argmax(dim=1) == encoded.data.y).float().mean())


@torch.no_grad()
def encoded_accuracies(encoded: EncodedData, settings: Sequence[tuple]) -> np.ndarray:
    """:func:`encoded_accuracy` for each ``(level, missing)`` in ``settings``, in one pass of fusion + head.

    The settings' cached features and presence masks are stacked into one batch of ``len(settings) * B`` rows:
    every fusion and head acts on each row on its own in eval mode (tested for every registered fusion in
    ``tests/test_fusion_properties.py``), so each block of ``B`` rows gives that setting's logits, while the
    per-call cost (Python, small kernels) is paid once instead of once per setting.
    """
    if not settings:
        return np.zeros(0)
    names = encoded.modalities
    parts = [_setting_features(encoded, lv, mi) for lv, mi in settings]
    features = {m: torch.cat([f[m] for f, _ in parts]) for m in names}
    if all(p is None for _, p in parts):
        present = None
    else:
        n = encoded.data.size
        full = torch.ones(n, dtype=torch.bool, device=features[names[0]].device)
        present = {m: torch.cat([full if p is None or m not in p else p[m].to(torch.bool) for _, p in parts])
                   for m in names}
    model = encoded.model
    model.eval()
    logits = model.head(model.fusion(features, present))
    hits = (logits.argmax(dim=1) == encoded.data.y.repeat(len(settings))).float()
    return hits.view(len(settings), -1).mean(dim=1).cpu().numpy().astype(float)


def encoded_curve(encoded: EncodedData, what: str, modality: str, levels: Sequence[float], level=None,
                  missing=None) -> np.ndarray:
    """:func:`encoded_accuracy` at each of ``levels`` of ``what`` (``"level"``: the corruption, or
    ``"missing"``) on ``modality``, the rest of the setting as given: one robustness curve (one pass of
    fusion + head for all levels, :func:`encoded_accuracies`)."""
    return encoded_accuracies(encoded, curve_settings(encoded.modalities, what, modality, levels, level, missing))


def curve_settings(names: Sequence[str], what: str, modality: str, levels: Sequence[float], level=None,
                   missing=None) -> list[tuple[dict, dict]]:
    """The ``(level, missing)`` settings of a robustness curve: ``what`` (``"level"`` or ``"missing"``) of
    ``modality`` at each of ``levels``, the rest as given."""
    if what not in ("level", "missing"):
        raise ValueError(f"what must be 'level' or 'missing', got {what!r}")
    if modality not in names:
        raise ValueError(f"unknown modality {modality!r}; expected one of {list(names)}")
    level = _per_modality(level, names, "level")
    missing = _per_modality(missing, names, "missing rate")
    out = []
    for v in levels:
        lv, mi = dict(level), dict(missing)
        (lv if what == "level" else mi)[modality] = float(v)
        out.append((lv, mi))
    return out
