"""The modality panel: switch modalities off, add noise, watch a trained model.

Layer 1 is :func:`evaluate_condition` (pure, no widgets); layer 2 is
:func:`mmlearn.viz.accuracy_confusion_figure`; layer 3 is :class:`ModalityPanel`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as W
import torch

from ..data import Batch, add_noise, as_batch, modality_stats
from ..train import predict
from ..viz import accuracy_confusion_figure, confusion_counts
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
) -> dict:
    """Accuracy, predictions and confusion counts of ``model`` under one condition.

    The condition is built by :func:`corrupt_batch`, which explains ``enabled``,
    ``noise``, ``seed`` and ``stats``. Raises ``ValueError`` if every modality is off.
    """
    batch = corrupt_batch(data, enabled, noise, seed=seed, stats=stats)
    logits = predict(model, batch)
    pred = logits.argmax(dim=1)
    n_classes = n_classes or logits.shape[1]
    return {
        "accuracy": float((pred == batch.y).float().mean()),
        "predictions": pred,
        "counts": confusion_counts(batch.y, pred, n_classes),
        "enabled": [m for m in batch.modalities if batch.present is None or bool(batch.present[m].any())],
    }


class ModalityPanel(Panel):
    """A checkbox and a noise slider per modality; accuracy and confusion matrix update in place.

    ``model`` is trained once beforehand; every control change only evaluates
    it on ``data`` (cached per control state). ``stats`` are the training set's
    per-modality mean and std (noise scale); by default computed on ``data``.
    """

    def __init__(self, model, data, *, class_names: Sequence[str] | None = None, stats=None, seed: int = 0,
                 title: str = "Switch modalities off, add noise"):
        self.model = model
        self.data = as_batch(data)
        self.stats = dict(stats) if stats is not None else modality_stats(self.data.inputs)
        self.seed = seed
        self.class_names = class_names
        self.reference = evaluate_condition(model, self.data, seed=seed, stats=self.stats)
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
        )
        super().__init__(controls, figure, title)
        self._cache[self._key(self.state())] = self.reference

    @staticmethod
    def _title(accuracy: float) -> str:
        return f"accuracy now: {accuracy:.1%}"

    def compute(self, state: dict) -> dict:
        names = self.data.modalities
        enabled = {m: bool(state[f"{m}_on"]) for m in names}
        noise = {m: float(state[f"{m}_noise"]) for m in names}
        return evaluate_condition(self.model, self.data, enabled, noise, seed=self.seed, stats=self.stats)

    def draw(self, result: dict) -> None:
        n = result["counts"]
        rows = n / n.sum(axis=1, keepdims=True).clip(min=1)
        bars, heat = self.figure.data[0], self.figure.data[1]
        values = [self.reference["accuracy"], result["accuracy"]]
        bars.y = values
        bars.text = [f"{v:.1%}" for v in values]
        heat.z = rows
        heat.text = n
        self.figure.layout.title.text = self._title(result["accuracy"])
