"""The modality panel: switch modalities off, add noise, watch a trained model.

Layer 1 is :func:`evaluate_condition` (pure, no widgets), with
:func:`removed_references`, :func:`chance_accuracy` and :func:`noise_controls_disabled`;
layer 2 is :func:`mmlearn.viz.accuracy_confusion_figure`; layer 3 is :class:`ModalityPanel`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as W
import torch

from ..data import Batch, add_noise, as_batch, modality_stats
from ..train import predict
from ..viz import accuracy_confusion_figure, confusion_counts
from ..viz.core import preview_array
from .base import Panel


def corrupt_batch(
    data,
    enabled: Mapping[str, bool] | None = None,
    noise: Mapping[str, float] | float = 0.0,
    *,
    seed: int = 0,
    stats: Mapping[str, tuple[float, float]] | None = None,
) -> Batch:
    """The batch a panel evaluates: noisy inputs, switched-off modalities zero-filled and marked absent.

    ``enabled[m] = False`` removes modality ``m`` (zero-filled, ``present`` False);
    ``noise`` is a level in [0, 1] per modality (see :func:`mmlearn.data.add_noise`,
    with ``stats`` from the training set so the noise scale does not depend on
    the evaluation batch). ``present`` is ``None`` when every modality is on.
    Raises ``ValueError`` for an unknown modality or if every modality is off.
    """
    batch = as_batch(data)
    names = batch.modalities
    enabled = {m: True for m in names} if enabled is None else dict(enabled)
    for m in enabled:
        if m not in names:
            raise ValueError(f"unknown modality {m!r}; expected one of {names}")
    on = [m for m in names if enabled.get(m, True)]
    if not on:
        raise ValueError("Every modality is switched off: switch at least one on to see a prediction.")
    inputs = add_noise(batch.inputs, noise, seed=seed, stats=stats)
    if len(on) == len(names):
        return Batch(inputs, batch.y)
    present = {m: torch.full((batch.size,), m in on, dtype=torch.bool) for m in names}
    inputs = {m: x if m in on else torch.zeros_like(x) for m, x in inputs.items()}
    return Batch(inputs, batch.y, present)


def evaluate_condition(
    model: torch.nn.Module,
    data,
    enabled: Mapping[str, bool] | None = None,
    noise: Mapping[str, float] | float = 0.0,
    *,
    seed: int = 0,
    stats: Mapping[str, tuple[float, float]] | None = None,
    n_classes: int | None = None,
    preview: int | None = None,
) -> dict:
    """Accuracy, predictions and confusion counts of ``model`` under one condition.

    The condition is built by :func:`corrupt_batch`, which explains ``enabled``,
    ``noise``, ``seed`` and ``stats``. With ``preview`` (a row index), the result
    also holds ``"preview"``: that sample's inputs exactly as the model receives
    them (noisy, or zero-filled when switched off), one numpy array per modality.
    Raises ``ValueError`` if every modality is off.
    """
    batch = corrupt_batch(data, enabled, noise, seed=seed, stats=stats)
    logits = predict(model, batch)
    pred = logits.argmax(dim=1)
    n_classes = n_classes or logits.shape[1]
    out = {
        "accuracy": float((pred == batch.y).float().mean()),
        "predictions": pred,
        "counts": confusion_counts(batch.y, pred, n_classes),
        "enabled": [m for m in batch.modalities if batch.present is None or bool(batch.present[m].any())],
    }
    if preview is not None:
        out["preview"] = {m: x[preview].detach().cpu().numpy() for m, x in batch.inputs.items()}
    return out


def removed_references(model: torch.nn.Module, data, *, seed: int = 0, stats=None) -> dict[str, float]:
    """``{"<m> removed": accuracy}``: clean accuracy with modality ``m`` marked absent, every other one on.

    The reference a noisy modality should be compared with: when noise costs more than this, the model
    would do better if the modality were simply marked missing. Empty for a single modality.
    """
    names = as_batch(data).modalities
    if len(names) < 2:
        return {}
    return {f"{m} removed": evaluate_condition(model, data, {m: False}, seed=seed, stats=stats)["accuracy"]
            for m in names}


def chance_accuracy(y, n_classes: int | None = None) -> float:
    """Accuracy of always predicting the most frequent class of ``y``."""
    y = torch.as_tensor(y)
    return float(torch.bincount(y, minlength=n_classes or 0).max()) / max(1, len(y))


def noise_controls_disabled(state: Mapping, modalities: Sequence[str]) -> dict[str, bool]:
    """``{"<m>_noise": disabled}``: a modality's noise slider does nothing while the modality is switched off."""
    return {f"{m}_noise": not bool(state.get(f"{m}_on", True)) for m in modalities}


def preview_ranges(data, sample: int, stats=None) -> dict[str, tuple[float, float]]:
    """Colour range per modality for the input preview: the clean sample's range widened by the noise's
    (mean +- 2 std of the modality), so the noisy input stays on the same colour scale."""
    batch = as_batch(data)
    out = {}
    for m, x in batch.inputs.items():
        v = x[sample].float()
        mu, sd = (stats or {}).get(m, (float(x.mean()), float(x.std())))
        out[m] = (min(float(v.min()), mu - 2 * sd), max(float(v.max()), mu + 2 * sd))
    return out


class ModalityPanel(Panel):
    """A checkbox and a noise slider per modality; accuracy, confusion matrix and the corrupted input
    of one test sample update in place.

    ``model`` is trained once beforehand; every control change only evaluates
    it on ``data`` (cached per control state). ``stats`` are the training set's
    per-modality mean and std (noise scale); by default computed on ``data``.
    The accuracy plot carries labelled reference lines: chance, and the clean
    accuracy with each modality removed (marked absent), which a noisy modality
    can fall below. A modality's noise slider is disabled while it is switched off.
    ``sample``: the test row whose input is shown.
    """

    def __init__(self, model, data, *, class_names: Sequence[str] | None = None, stats=None, seed: int = 0,
                 sample: int = 0, title: str = "Switch modalities off, add noise"):
        self.model = model
        self.data = as_batch(data)
        self.stats = dict(stats) if stats is not None else modality_stats(self.data.inputs)
        self.seed = seed
        self.sample = sample
        self.class_names = class_names
        self.reference = evaluate_condition(model, self.data, seed=seed, stats=self.stats, preview=sample)
        self.references = removed_references(model, self.data, seed=seed, stats=self.stats)
        self.chance = chance_accuracy(self.data.y, self.reference["counts"].shape[0])
        controls = {}
        for m in self.data.modalities:
            controls[f"{m}_on"] = W.Checkbox(value=True, description=f"use {m}", indent=False,
                                             layout=W.Layout(width="110px"))
            controls[f"{m}_noise"] = W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05,
                                                   description=f"{m} noise", continuous_update=False,
                                                   readout_format=".2f", style={"description_width": "80px"})
        figure = accuracy_confusion_figure(
            {"clean, all on": self.reference["accuracy"], "now": self.reference["accuracy"]},
            self.reference["counts"], class_names, title=self._title(self.reference["accuracy"]),
            references=self.references, chance=self.chance, previews=self.reference["preview"],
            preview_ranges=preview_ranges(self.data, sample, self.stats),
            preview_label=f"test sample {sample}, as the model gets it",
        )
        super().__init__(controls, figure, title)
        self._cache[self._key(self.state())] = self.reference
        for m in self.data.modalities:
            controls[f"{m}_on"].observe(self.sync_controls, names="value")

    def sync_controls(self, change=None) -> None:
        """Disable the noise slider of every modality that is switched off (it would do nothing)."""
        for name, disabled in noise_controls_disabled(self.state(), self.data.modalities).items():
            self.controls[name].disabled = disabled

    @staticmethod
    def _title(accuracy: float) -> str:
        return f"accuracy now: {accuracy:.1%}"

    def compute(self, state: dict) -> dict:
        names = self.data.modalities
        enabled = {m: bool(state[f"{m}_on"]) for m in names}
        noise = {m: float(state[f"{m}_noise"]) for m in names}
        return evaluate_condition(self.model, self.data, enabled, noise, seed=self.seed, stats=self.stats,
                                  preview=self.sample)

    def draw(self, result: dict) -> None:
        n = result["counts"]
        rows = n / n.sum(axis=1, keepdims=True).clip(min=1)
        bars, heat = self.figure.data[0], self.figure.data[1]
        values = [self.reference["accuracy"], result["accuracy"]]
        bars.y = values
        bars.text = [f"{v:.1%}" for v in values]
        heat.z = rows
        heat.text = n
        for trace, m in zip(self.figure.data[2:], self.data.modalities):
            trace.z = preview_array(result["preview"][m]).tolist()
        self.figure.layout.title.text = self._title(result["accuracy"])
