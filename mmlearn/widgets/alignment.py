"""The alignment panel: pick a temperature and a batch size, see retrieval, alignment and uniformity.

Layer 1 is :func:`precompute_alignment_grid` (trains one small model per
setting, once, and keeps only numbers) and :func:`summarize_alignment`
(numbers of one trained model); layer 2 is
:func:`mmlearn.viz.alignment_panel_figure`; layer 3 is :class:`AlignmentPanel`,
whose controls only look results up in the grid.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import ipywidgets as W
import numpy as np
import torch

from ..alignment import (
    AlignmentModel,
    alignment,
    class_prototypes,
    cosine_similarity_matrix,
    retrieval_metrics,
    train_alignment,
    uniformity,
    zero_shot_accuracy,
)
from ..data import as_batch
from ..viz.alignment import alignment_panel_figure
from .base import Panel



def shown_rows(labels, per_class: int = 3) -> np.ndarray:
    """The first ``per_class`` rows of each class, sorted by class: rows of the small similarity matrix."""
    y = np.asarray(labels)
    return np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)])


def summarize_alignment(model: AlignmentModel, train, test, rows: Sequence[int]) -> dict:
    """The panel's numbers for one trained model (digit-level hits; see :mod:`mmlearn.alignment.metrics`).

    ``recall``: ``{"image→audio", "audio→image", "zero-shot image"}`` recall@1
    on ``test`` with a hit meaning the same digit, and the accuracy of
    classifying test images by the nearest training-audio class prototype;
    ``clip recall@1``: instance-level recall@1 (the paired clip itself) in both
    directions; ``alignment`` over test pairs; ``uniformity`` per modality and
    their ``mean``; ``sim``: test similarities of ``rows`` (images x their clips).
    """
    a, b = model.modalities
    train, test = as_batch(train, [a, b]), as_batch(test, [a, b])
    z = model.embed(test.inputs)
    digit = retrieval_metrics(z[a], z[b], test.y, ks=(1,), names=(a, b))
    clip = retrieval_metrics(z[a], z[b], ks=(1,), names=(a, b))
    protos = class_prototypes(model.embed(train.inputs)[b], train.y)
    unif = {m: uniformity(z[m]) for m in (a, b)}
    rows = torch.as_tensor(np.asarray(rows))
    return {
        "recall": {
            f"{a}→{b}": digit[f"{a}->{b} R@1"],
            f"{b}→{a}": digit[f"{b}->{a} R@1"],
            f"zero-shot {a}": zero_shot_accuracy(z[a], test.y, protos),
        },
        "clip recall@1": {f"{a}→{b}": clip[f"{a}->{b} R@1"], f"{b}→{a}": clip[f"{b}->{a} R@1"]},
        "alignment": alignment(z[a], z[b]),
        "uniformity": {**unif, "mean": float(np.mean(list(unif.values())))},
        "sim": cosine_similarity_matrix(z[a][rows], z[b][rows]).numpy(),
    }


def setting_name(temperature: float, batch_size: int) -> str:
    return f"τ={temperature:g}, B={batch_size}"


def precompute_alignment_grid(train, test, temperatures: Sequence[float] = (0.03, 0.1, 0.5),
                              batch_sizes: Sequence[int] = (16, 128), *, epochs: int = 4,
                              shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0,
                              per_class: int = 3, lr: float = 3e-3, **model_options) -> dict:
    """Train one :class:`AlignmentModel` per (temperature, batch size), with the temperature fixed.

    Every model starts from the same seeded weights and sees the same number of
    ``epochs`` (so a small batch takes more, noisier steps). Returns
    ``{"settings": {(tau, B): summary}, "temperatures", "batch_sizes",
    "labels" (of the shown rows), "rows", "seconds"}`` with the summaries of
    :func:`summarize_alignment` (plus ``seconds`` and final ``loss`` each).
    """
    train = as_batch(train)
    test = as_batch(test)
    if shapes is None:
        shapes = {m: tuple(x.shape[1:]) for m, x in train.inputs.items()}
    if not temperatures or not batch_sizes:
        raise ValueError("give at least one temperature and one batch size")
    rows = shown_rows(test.y.numpy(), per_class)
    settings = {}
    start = time.perf_counter()
    for tau in temperatures:
        for bs in batch_sizes:
            model = AlignmentModel(shapes, temperature=tau, learnable_temperature=False, seed=seed, **model_options)
            t0 = time.perf_counter()
            history = train_alignment(model, train, epochs=epochs, batch_size=bs, lr=lr, seed=seed)
            summary = summarize_alignment(model, train, test, rows)
            summary.update(seconds=time.perf_counter() - t0, loss=history["train_loss"][-1])
            settings[(float(tau), int(bs))] = summary
    return {
        "settings": settings,
        "temperatures": [float(t) for t in temperatures],
        "batch_sizes": [int(b) for b in batch_sizes],
        "labels": test.y.numpy()[rows],
        "rows": rows,
        "epochs": epochs,
        "seconds": time.perf_counter() - start,
    }


class AlignmentPanel(Panel):
    """A temperature slider and a batch-size choice over a precomputed grid (:func:`precompute_alignment_grid`).

    Moving a control only looks the setting up: recall@1 bars (digit-level
    hits), the setting's place among all settings in the alignment-uniformity
    plane, and the similarity matrix of a few test pairs sorted by digit.
    """

    def __init__(self, grid: Mapping, title: str = "Temperature and batch size in contrastive alignment"):
        self.grid = grid
        temps, sizes = list(grid["temperatures"]), list(grid["batch_sizes"])
        controls = {
            "temperature": W.SelectionSlider(options=[(f"{t:g}", t) for t in temps], value=temps[len(temps) // 2],
                                             description="temperature τ", continuous_update=False,
                                             style={"description_width": "100px"}),
            "batch_size": W.ToggleButtons(options=[(str(b), b) for b in sizes], value=sizes[-1],
                                          description="batch size", style={"description_width": "80px",
                                                                           "button_width": "60px"}),
        }
        self.plane = {setting_name(t, b): (s["alignment"], s["uniformity"]["mean"])
                      for (t, b), s in grid["settings"].items()}
        first = self.compute({k: c.value for k, c in controls.items()})
        figure = alignment_panel_figure(first["recall"], self.plane, first["name"], first["sim"], grid["labels"],
                                        title=self._title(first))
        super().__init__(controls, figure, title)
        self.last_result = first

    @staticmethod
    def _title(result: dict) -> str:
        return (f"{result['name']}: alignment {result['alignment']:.2f}, "
                f"uniformity {result['uniformity']['mean']:.2f}")

    def compute(self, state: dict) -> dict:
        key = (float(state["temperature"]), int(state["batch_size"]))
        if key not in self.grid["settings"]:
            raise ValueError(f"No precomputed result for temperature {key[0]:g} and batch size {key[1]}: "
                             "add it to precompute_alignment_grid(...).")
        return {**self.grid["settings"][key], "name": setting_name(*key)}

    def draw(self, result: dict) -> None:
        bars, _, current, heat = self.figure.data
        values = list(result["recall"].values())
        bars.y = values
        bars.text = [f"{v:.0%}" for v in values]
        current.x, current.y = [result["alignment"]], [result["uniformity"]["mean"]]
        current.text = [result["name"]]
        heat.z = result["sim"]
        self.figure.layout.title.text = self._title(result)
