"""The fusion panel: pick a fusion method, switch modalities off, add noise; trained models only evaluate.

Layer 1 is :func:`fusion_weights` and :func:`evaluate_fusions` (pure, no
widgets); layer 2 is :func:`mmlearn.viz.fusion_panel_figure`; layer 3 is
:class:`FusionPanel`. All models are trained once beforehand (e.g. with
:func:`mmlearn.experiments.fusion.compare_fusions`); moving a control evaluates them
on a fixed test batch, cached per modality/noise condition.
"""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as W
import torch

from ..data import as_batch, modality_stats
from ..fusion import EmbraceNetFusion, GatedFusion, LateFusion
from ..viz import fusion_panel_figure
from .base import Panel
from ..viz.core import preview_array
from .modality import chance_accuracy, corrupt_batch, noise_controls_disabled, preview_ranges

#: what the weight panel shows for each kind of fusion
WEIGHT_LABELS = {
    GatedFusion: "mean gate g_m",
    EmbraceNetFusion: "share of components",
    LateFusion: "late-fusion weight w_m",
}


@torch.no_grad()
def fusion_weights(model, inputs: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None):
    """Mean per-modality weight the model's fusion gives these inputs, or ``None`` if it has none.

    Gated fusion: the mean gate ``g_m`` (:meth:`GatedFusion.gates`); EmbraceNet:
    the mean share of output components taken from each modality
    (:meth:`EmbraceNetFusion.selection_shares`, in eval mode); late fusion: its
    weights ``w_m`` renormalised over present modalities. Returns
    ``(weights: {modality: float} | None, label: str)``.
    """
    fusion = model.fusion
    label = next((v for k, v in WEIGHT_LABELS.items() if isinstance(fusion, k)), "")
    if not label:
        return None, "no per-modality weights"
    was_training = model.training
    model.eval()
    try:
        if isinstance(fusion, LateFusion):
            n = next(iter(inputs.values())).shape[0]
            w = fusion.modality_weights(present, n)
        else:
            features = model.encode(inputs)
            w = fusion.gates(features, present) if isinstance(fusion, GatedFusion) else \
                fusion.selection_shares(features, present)
    finally:
        model.train(was_training)
    mean = w.mean(dim=0)
    return {m: float(mean[i]) for i, m in enumerate(fusion.modalities)}, label


@torch.no_grad()
def evaluate_fusions(
    models: Mapping[str, torch.nn.Module],
    data,
    enabled: Mapping[str, bool] | None = None,
    noise: Mapping[str, float] | float = 0.0,
    *,
    seed: int = 0,
    stats: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, dict]:
    """Accuracy and per-modality weights of every model under one condition.

    ``enabled[m] = False`` removes modality ``m`` (zero-filled, ``present`` False);
    ``noise[m]`` in [0, 1] blends it with Gaussian noise of its own scale
    (:func:`mmlearn.data.add_noise`, with the training set's ``stats``). Returns
    ``{name: {"accuracy": float, "weights": {modality: float} | None, "weight_label": str}}``.
    Raises ``ValueError`` if every modality is off.
    """
    batch = corrupt_batch(data, enabled, noise, seed=seed, stats=stats)
    inputs, present = batch.inputs, batch.present
    out = {}
    for name, model in models.items():
        was_training = model.training
        model.eval()
        try:
            logits = model(inputs, present)
        finally:
            model.train(was_training)
        weights, label = fusion_weights(model, inputs, present)
        out[name] = {
            "accuracy": float((logits.argmax(dim=1) == batch.y).float().mean()),
            "weights": weights,
            "weight_label": label,
        }
    return out


class FusionPanel(Panel):
    """A fusion dropdown, a checkbox and a noise slider per modality.

    ``models``: ``{fusion name: trained MultimodalClassifier}`` (trained once,
    beforehand), all on the same modalities; ``data``: the test set they are
    evaluated on; ``stats``: the training set's per-modality mean and std for
    the noise scale (default: computed on ``data``). The left panel shows every
    method's accuracy under the current condition (the selected one
    highlighted, clean accuracy as a marker); the right one the selected
    method's mean per-modality weights where it has them (gated fusion,
    EmbraceNet, late fusion), and under them test sample ``sample`` as the
    models receive it (noisy, or zero-filled when switched off). A labelled
    line marks chance; a modality's noise slider is disabled while it is off.
    """

    def __init__(self, models: Mapping[str, torch.nn.Module], data, *, stats=None, seed: int = 0,
                 selected: str | None = None, sample: int = 0,
                 title: str = "Fusion methods under missing and noisy modalities"):
        if not models:
            raise ValueError("FusionPanel needs at least one trained model")
        self.models = dict(models)
        self.data = as_batch(data)
        self.modalities = self.data.modalities
        for name, model in self.models.items():
            if sorted(model.modalities) != sorted(self.modalities):
                raise ValueError(f"model {name!r} uses modalities {model.modalities}, the data has {self.modalities}")
        self.stats = dict(stats) if stats is not None else modality_stats(self.data.inputs)
        self.seed = seed
        self.sample = sample
        self._conditions: dict = {}
        names = list(self.models)
        selected = selected if selected is not None else next((n for n in ("gated", "embracenet") if n in names),
                                                              names[0])
        if selected not in names:
            raise ValueError(f"selected fusion {selected!r} is not among {names}")
        controls: dict[str, W.Widget] = {"fusion": W.Dropdown(options=names, value=selected, description="fusion")}
        for m in self.modalities:
            controls[f"{m}_on"] = W.Checkbox(value=True, description=f"use {m}", indent=False,
                                             layout=W.Layout(width="110px"))
            controls[f"{m}_noise"] = W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.1, description=f"{m} noise",
                                                   continuous_update=False, readout_format=".1f",
                                                   style={"description_width": "80px"})
        self.reference = self._evaluate(tuple(True for _ in self.modalities), tuple(0.0 for _ in self.modalities))
        first = self._result(selected, self.reference)
        figure = fusion_panel_figure(first["accuracy"], first["reference"], selected, first["weights"],
                                     first["weight_label"], self.modalities, title=self._title(first),
                                     chance=chance_accuracy(self.data.y), previews=first["preview"],
                                     preview_ranges=preview_ranges(self.data, sample, self.stats),
                                     preview_label=f"test sample {sample}, as the models get it")
        super().__init__(controls, figure, title)
        self._cache[self._key(self.state())] = first
        self.last_result = first
        for m in self.modalities:
            controls[f"{m}_on"].observe(self.sync_controls, names="value")

    def sync_controls(self, change=None) -> None:
        """Disable the noise slider of every modality that is switched off (it would do nothing)."""
        for name, disabled in noise_controls_disabled(self.state(), self.modalities).items():
            self.controls[name].disabled = disabled

    def _preview(self, enabled: tuple, noise: tuple) -> dict:
        """Test sample ``self.sample`` under one condition, as the models receive it."""
        key = ("preview", enabled, noise)
        if key not in self._conditions:
            # the whole batch, as evaluate_fusions corrupts it: the same noise draw for this row
            batch = corrupt_batch(self.data, dict(zip(self.modalities, enabled)), dict(zip(self.modalities, noise)),
                                  seed=self.seed, stats=self.stats)
            self._conditions[key] = {m: x[self.sample].numpy() for m, x in batch.inputs.items()}
        return self._conditions[key]

    def _evaluate(self, enabled: tuple, noise: tuple) -> dict:
        """All models under one condition, cached: the dropdown alone never re-evaluates."""
        key = (enabled, noise)
        if key not in self._conditions:
            self._conditions[key] = evaluate_fusions(
                self.models, self.data, dict(zip(self.modalities, enabled)), dict(zip(self.modalities, noise)),
                seed=self.seed, stats=self.stats)
        return self._conditions[key]

    def _result(self, selected: str, evaluated: dict, preview: dict | None = None) -> dict:
        chosen = evaluated[selected]
        return {
            "preview": preview if preview is not None else self._preview(tuple(True for _ in self.modalities),
                                                                         tuple(0.0 for _ in self.modalities)),
            "selected": selected,
            "accuracy": {n: r["accuracy"] for n, r in evaluated.items()},
            "reference": {n: r["accuracy"] for n, r in self.reference.items()},
            "weights": chosen["weights"],
            "weight_label": chosen["weight_label"],
        }

    @staticmethod
    def _title(result: dict) -> str:
        name = result["selected"]
        text = f"{name}: accuracy {result['accuracy'][name]:.1%} (clean {result['reference'][name]:.1%})"
        if result["weights"]:
            text += "; " + ", ".join(f"{m} {v:.2f}" for m, v in result["weights"].items())
        return text

    def compute(self, state: dict) -> dict:
        enabled = tuple(bool(state[f"{m}_on"]) for m in self.modalities)
        if not any(enabled):
            raise ValueError("Every modality is switched off: switch at least one on to see a prediction.")
        noise = tuple(round(float(state[f"{m}_noise"]), 6) for m in self.modalities)
        return self._result(state["fusion"], self._evaluate(enabled, noise), self._preview(enabled, noise))

    def draw(self, result: dict) -> None:
        names = list(result["accuracy"])
        bars, _, weight_bars = self.figure.data[0], self.figure.data[1], self.figure.data[2]
        values = [result["accuracy"][n] for n in names]
        bars.y = values
        bars.text = [f"{v:.0%}" for v in values]
        bars.marker.color = ["#d62728" if n == result["selected"] else "#9ecae1" for n in names]
        if result["weights"]:
            w = [result["weights"][m] for m in self.modalities]
            weight_bars.y = w
            weight_bars.text = [f"{v:.2f}" for v in w]
            self.figure.layout.yaxis2.title.text = result["weight_label"]
        else:
            weight_bars.y = [0.0] * len(self.modalities)
            weight_bars.text = ["n/a"] * len(self.modalities)
            self.figure.layout.yaxis2.title.text = f"{result['selected']}: no per-modality weights"
        for trace, m in zip(self.figure.data[3:], self.modalities):
            trace.z = preview_array(result["preview"][m]).tolist()
        self.figure.layout.title.text = self._title(result)
