"""The representation panel: choose the observed modalities and the posterior, see the latent and generations.

Layer 1 is :func:`infer_and_generate` (pure: models and data in, numbers out);
layer 2 is :func:`mmlearn.viz.latent_generation_figure`; layer 3 is
:class:`RepresentationPanel`. The models are trained before the panel is built;
the panel computes every (model, observed subset) state once when it is built,
so a control change only looks a result up and redraws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import ipywidgets as W
import numpy as np
import torch

from ..data import Batch, as_batch
from ..representation.vae import _classify, coherence
from ..viz.core import json_safe_z
from ..viz.representation import image_strip, latent_generation_figure
from .base import Panel


def fit_projection(z) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and the top two principal axes (2, d) of latents ``z`` (N, d), by SVD."""
    z = np.asarray(z, dtype=np.float64)
    mean = z.mean(axis=0)
    _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
    axes = vt[:2]
    # fix each axis's sign (largest |entry| positive) so the picture does not flip between runs
    axes = axes * np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    return mean, axes


@torch.no_grad()
def infer_and_generate(
    model: torch.nn.Module,
    data,
    observed: Sequence[str],
    target: str,
    *,
    examples: Sequence[int] | None = None,
    projection: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Latents of ``data`` inferred from the ``observed`` modalities only, and ``target`` decoded from them.

    ``model`` has ``encode(inputs, present) -> (B, d)`` and ``generate(inputs,
    present, target_modality)`` (:class:`~mmlearn.representation.JointAutoencoder`,
    :class:`~mmlearn.representation.MultimodalVAE`). Unobserved modalities are
    zero-filled and marked absent. ``examples``: rows whose generated
    ``target`` is returned (default: the first 10). ``projection``: ``(mean,
    axes)`` from :func:`fit_projection` (default: fitted on these latents).

    Returns ``{"latent" (N, d), "xy" (N, 2), "labels" (N,), "generated"
    (n, *target shape), "true" (n, *target shape), "observed", "target",
    "mode": "generated" | "reconstructed"}``. Raises ``ValueError`` when no
    modality is observed.
    """
    batch = as_batch(data)
    names = batch.modalities
    for m in [*observed, target]:
        if m not in names:
            raise ValueError(f"unknown modality {m!r}; the data has {names}")
    observed = [m for m in names if m in observed]
    if not observed:
        raise ValueError("No modality is observed: tick at least one to infer the latent.")
    params = list(model.parameters())
    batch = batch.to(params[0].device if params else torch.device("cpu"))  # evaluate where the model lives
    present = {m: torch.full((batch.size,), m in observed, dtype=torch.bool, device=batch.y.device) for m in names}
    inputs = {m: x if m in observed else torch.zeros_like(x) for m, x in batch.inputs.items()}
    was_training = model.training
    model.eval()
    try:
        z = model.encode(inputs, present).cpu().numpy()
        rows = list(range(min(10, batch.size))) if examples is None else list(examples)
        sub = Batch(inputs, batch.y, present).index(torch.tensor(rows, dtype=torch.long))
        generated = model.generate(sub.inputs, sub.present, target).cpu().numpy()
    finally:
        model.train(was_training)
    mean, axes = fit_projection(z) if projection is None else projection
    return {
        "latent": z,
        "xy": (z - mean) @ axes.T,
        "labels": batch.y.cpu().numpy(),
        "generated": generated,
        "true": batch.inputs[target][rows].cpu().numpy(),
        "observed": observed,
        "target": target,
        "mode": "reconstructed" if target in observed else "generated",
    }


@torch.no_grad()
def generation_coherence(model: torch.nn.Module, data, classifier, observed: Sequence[str],
                         target: str = "image") -> float:
    """Share of rows whose ``target`` generated from the ``observed`` modalities only is classified as their label.

    With one observed modality other than ``target`` this is
    :func:`mmlearn.representation.coherence` (``source`` = that modality). When
    ``target`` is observed too, it scores the reconstruction the same way (the
    unobserved modalities are zero-filled and marked absent).
    """
    batch = as_batch(data)
    observed = [m for m in batch.modalities if m in observed]
    if not observed:
        raise ValueError("No modality is observed: tick at least one to infer the latent.")
    if target not in batch.inputs:
        raise ValueError(f"unknown target modality {target!r}; the data has {batch.modalities}")
    if observed != [target] and len(observed) == 1:
        return coherence(model, batch, classifier, source=observed[0], target=target)
    params = list(model.parameters())
    batch = batch.to(params[0].device if params else torch.device("cpu"))
    present = {m: torch.full((batch.size,), m in observed, dtype=torch.bool, device=batch.y.device)
               for m in batch.modalities}
    inputs = {m: x if m in observed else torch.zeros_like(x) for m, x in batch.inputs.items()}
    states = (model.training, getattr(classifier, "training", False))
    model.eval()
    if isinstance(classifier, torch.nn.Module):
        classifier.eval()
    try:
        generated = model.generate(inputs, present, target)
        predicted = _classify(classifier, target, generated).argmax(dim=1)
    finally:
        model.train(states[0])
        if isinstance(classifier, torch.nn.Module):
            classifier.train(states[1])
    return float((predicted == batch.y).float().mean())


@torch.no_grad()
def real_accuracy(classifier, data, target: str = "image") -> float:
    """Accuracy of ``classifier`` on the real ``target`` inputs of ``data``: the ceiling of coherence."""
    batch = as_batch(data)
    was = getattr(classifier, "training", False)
    if isinstance(classifier, torch.nn.Module):
        classifier.eval()
    try:
        predicted = _classify(classifier, target, batch.inputs[target]).argmax(dim=1)
    finally:
        if isinstance(classifier, torch.nn.Module):
            classifier.train(was)
    return float((predicted == batch.y).float().mean())


def _subsets(names: Sequence[str]) -> list[tuple[str, ...]]:
    return [s for k in range(1, len(names) + 1) for s in combinations(names, k)]


class RepresentationPanel(Panel):
    """Checkboxes for the observed modalities and a posterior (model) choice.

    ``models``: ``{label: trained model}``, e.g. ``{"PoE (MVAE)": vae_poe, "MoE
    (MMVAE)": vae_moe, "MoPoE": vae_mope, "joint AE (Eq. 1)": ae}``. ``data``:
    the evaluation batch (at most ``n_points`` rows are drawn). ``target``: the
    modality whose generations are shown (``"image"``). The latent of each
    model is projected on the principal axes of its latent with *every*
    modality observed, fitted once, so switching a modality off shows where the
    points move. Every state is computed when the panel is built.
    ``classifier``: optional, a classifier trained on real ``target`` inputs
    (e.g. a :class:`~mmlearn.models.MultimodalClassifier` on images); with it the
    title of the generated row gives the coherence of the current setting
    (:func:`generation_coherence` on the panel's ``data``) next to the
    classifier's accuracy on the real images.
    """

    def __init__(self, models: Mapping[str, torch.nn.Module], data, *, target: str = "image",
                 label_names: Sequence[str] | None = None, n_points: int = 500, seed: int = 0,
                 classifier=None, title: str = "Which modalities does the model see?"):
        if not models:
            raise ValueError("RepresentationPanel needs at least one model")
        batch = as_batch(data)
        if target not in batch.inputs:
            raise ValueError(f"unknown target modality {target!r}; the data has {batch.modalities}")
        if batch.size > n_points:
            keep = torch.randperm(batch.size, generator=torch.Generator().manual_seed(seed))[:n_points]
            batch = batch.index(keep.sort().values)
        self.models = dict(models)
        self.data = batch
        self.target = target
        self.label_names = label_names
        self.classifier = classifier
        self.real_accuracy = real_accuracy(classifier, batch, target) if classifier is not None else None
        labels = batch.y.cpu().numpy()
        self.classes = sorted(np.unique(labels).tolist())
        # one example per class (the first), for the image strips
        self.examples = [int(np.flatnonzero(labels == c)[0]) for c in self.classes]
        names = batch.modalities
        self.projections = {}
        for label, model in self.models.items():
            full = infer_and_generate(model, batch, names, target, examples=self.examples)
            self.projections[label] = fit_projection(full["latent"])
        controls = {f"observe_{m}": W.Checkbox(value=True, description=f"observe {m}", indent=False,
                                               layout=W.Layout(width="140px")) for m in names}
        controls["posterior"] = W.Dropdown(options=list(self.models), value=next(iter(self.models)),
                                           description="posterior", style={"description_width": "70px"})
        # precompute every (model, observed subset): controls only look up
        self._precomputed = {(label, subset): self._evaluate(label, subset)
                             for label in self.models for subset in _subsets(names)}
        self.ranges = {}
        for label in self.models:
            xy = np.concatenate([r["xy"] for (lab, _), r in self._precomputed.items() if lab == label])
            lo, hi = xy.min(axis=0), xy.max(axis=0)
            pad = 0.05 * (hi - lo + 1e-9)
            self.ranges[label] = ((lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1]))
        first = self._precomputed[(next(iter(self.models)), tuple(names))]
        true = batch.inputs[target][self.examples].cpu().numpy()
        self.zrange = (float(true.min()), float(true.max()))
        figure = latent_generation_figure(
            first["xy"], first["labels"], first["true"], first["generated"], label_names=label_names,
            classes=self.classes, title=self._title(next(iter(self.models)), first),
            true_title=self._true_title(), generated_title=self._generated_title(first),
            zmin=self.zrange[0], zmax=self.zrange[1], xy_range=self.ranges[next(iter(self.models))],
        )
        super().__init__(controls, figure, title)
        self.last_result = first

    def _evaluate(self, label: str, subset: tuple[str, ...]) -> dict:
        out = infer_and_generate(self.models[label], self.data, subset, self.target, examples=self.examples,
                                 projection=self.projections[label])
        out["model"] = label
        out["coherence"] = (generation_coherence(self.models[label], self.data, self.classifier, subset, self.target)
                            if self.classifier is not None else None)
        return out

    def _generated_title(self, result: dict) -> str:
        source = " + ".join(result["observed"])
        text = f"{self.target}s {result['mode']} from {source}"
        if result.get("coherence") is not None:
            if result["mode"] == "generated":
                text += f": coherence {result['coherence']:.1%}"
            else:
                text += f": {result['coherence']:.1%} recognised"
        return text

    def _true_title(self) -> str:
        if self.real_accuracy is None:
            return f"real {self.target}s (one per class)"
        return f"real {self.target}s, one per class (classifier accuracy on all: {self.real_accuracy:.1%})"

    @staticmethod
    def _title(label: str, result: dict) -> str:
        return f"{label}: latent inferred from {' + '.join(result['observed'])}"

    def compute(self, state: dict) -> dict:
        observed = tuple(m for m in self.data.modalities if state[f"observe_{m}"])
        if not observed:
            raise ValueError("No modality is observed: tick at least one to infer the latent.")
        return self._precomputed[(state["posterior"], observed)]

    def draw(self, result: dict) -> None:
        labels = result["labels"]
        for i, c in enumerate(self.classes):
            sel = labels == c
            self.figure.data[i].x = result["xy"][sel, 0]
            self.figure.data[i].y = result["xy"][sel, 1]
        k = len(self.classes)
        self.figure.data[k].z = json_safe_z(image_strip(result["true"]))
        self.figure.data[k + 1].z = json_safe_z(image_strip(result["generated"]))
        self.figure.layout.annotations[2].text = self._generated_title(result)
        self.figure.layout.title.text = self._title(result["model"], result)
        (x0, x1), (y0, y1) = self.ranges[result["model"]]
        self.figure.layout.xaxis.range = [x0, x1]
        self.figure.layout.yaxis.range = [y0, y1]
