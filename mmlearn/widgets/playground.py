"""The Fusion Playground: pick data, fusion methods, noise and missing rates; see accuracy and robustness.

Three layers (DESIGN.md):

1. pure functions, no widgets: :func:`make_playground_data` (AV-Digits, or synthetic views with chosen
   redundancy, uniqueness and synergy), :func:`train_model` (one model per method, seeded, by
   :func:`mmlearn.experiments.train_fusion`),
   :func:`encode` + :func:`playground_result` (everything the figure shows, for one setting). How accuracy
   under noise, missing inputs and attacks is computed is :mod:`mmlearn.robustness`'s, not the panel's:
   :func:`mmlearn.robustness.setting_accuracy` (the plain route, :func:`accuracy_now` here) and its cached
   twin :func:`mmlearn.robustness.encoded_accuracy` / :func:`~mmlearn.robustness.encoded_accuracies`;
2. :func:`mmlearn.viz.playground_figure`; the interaction meter's
   :func:`mmlearn.viz.interaction_meter_figure`; the decision surface's own panel;
3. :class:`PlaygroundPanel`, one :class:`~mmlearn.widgets.Panel` whose controls come in two kinds:

   - *training* controls (dataset, its redundancy/uniqueness/synergy, which methods, modality dropout):
     a new combination trains the missing models once, with a progress bar, and caches them;
   - *evaluation* controls (noise, missing rate and FGSM attack strength per modality, which curve to draw):
     only evaluate.

Why evaluation is fast: noise on modality ``m`` changes only encoder ``m``'s input, so the test set's encoder
features are computed once per ``(m, level)`` after training (:class:`mmlearn.robustness.EncodedData`) and a
control change only runs fusion + head. An attack needs the model's input gradient, so it runs on the first
:data:`ATTACK_ROWS` test rows.

Beside the interaction sliders, the interaction meter (:func:`mmlearn.widgets.interactions.interaction_summary`,
a precomputed grid) shows what the sliders mean: the design's decomposition, the PID estimated from samples,
the label-free synergy bounds and which fusion wins. A second tab shows the live decision surface of a 2-D
dataset (:class:`mmlearn.widgets.surface.SurfacePanel`), started with the first ticked method.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor

from ..data import (
    Batch,
    load_av_digits,
    make_latent_views,
    modality_stats,
    to_batch,
)
from ..fusion import FUSIONS
from ..robustness import EncodedData, curve_settings, encoded_accuracies, setting_accuracy
from ..experiments.fusion import train_fusion as run_fusion
from ..viz.interactions import interaction_meter_figure, meter_title, meter_trace_updates
from ..viz.playground import (
    chance_name,
    curve_trace_index,
    fit_to_selection,
    marker_trace_index,
    method_color,
    playground_figure,
    removed_key_index,
    removed_trace_index,
    robustness_levels,
    set_busy,
)
from .base import Panel
from .interactions import interaction_summary
from .surface import SurfacePanel
from .surface import fusion_names as surface_fusions

SYNTHETIC, AV_DIGITS = "synthetic", "AV-Digits"
DATASETS = (SYNTHETIC, AV_DIGITS)

#: training settings per dataset: small on purpose (seconds per method on a laptop CPU)
TRAINING = {
    SYNTHETIC: dict(epochs=20, batch_size=128, lr=3e-3),
    AV_DIGITS: dict(epochs=8, batch_size=128, lr=3e-3),
}
#: fusion options that keep training and evaluation quick in the playground (the defaults are the papers'):
#: DEQ with fewer, looser solver steps, and the paper's Jacobian penalty (one Hutchinson sample, weight 1),
#: which keeps its fusion layer a contraction: 5.4 Anderson steps per row on average instead of 9.9, and all
#: but 0.2 % of rows converged instead of 78 %, at the same accuracy (0.88 +- 0.01 against 0.87 +- 0.01 over 3
#: seeds; the official weight 20 cost 7 points here). On such a contraction plain iteration needs 5.9 steps,
#: and without Anderson's per-step bookkeeping a redraw's DEQ solves take 105 ms instead of 170 ms, so the
#: playground iterates (same fixed points, within tol; notebook 03 compares the two solvers)
FAST_OPTIONS = {"deq": dict(max_iter=12, tol=1e-2, jacobian_samples=1, jacobian_weight=1.0, solver="iteration")}
#: methods whose evaluation is much slower than the others (benchmarks/README.md), said in their tooltip
SLOW_TO_EVALUATE = {"deq": "a fixed-point solve per evaluation, about 0.1 s per redraw",
                    "prompt": "prompt tokens through attention, about 0.06 s per redraw"}
#: drop probability per modality when "train with modality dropout" is on
DROPOUT_RATE = 0.3
#: the noise the playground blends in: :func:`mmlearn.robustness.corrupt`'s Gaussian blend
#: ``x' = (1 - l) x + l (mu + sigma eps)`` with the training set's statistics
NOISE_KIND = "gaussian_noise"
DEFAULT_METHODS = ("late", "concat", "tensor")
#: the FGSM strength slider: epsilon per modality, in the modality's own units
ATTACK_MAX, ATTACK_STEP = 0.5, 0.05




@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the previous count.

    The playground's models are tiny: one thread trains them faster than two, and on a busy 2-core
    machine two threads spin against each other (measured: 1.8 s with one thread against 22 s with two
    for the same two trainings, with other jobs running; and 1.1 s against 0.24 s for a redraw with every
    method ticked while another process held one core). Binder has one CPU anyway. To use a second core,
    :func:`evaluate_methods` runs whole methods side by side instead.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------- layer 1: data
@dataclass
class PlaygroundData:
    """A train/test split as :class:`~mmlearn.data.Batch` es, with what the panel needs to know about it."""

    name: str
    train: Batch
    test: Batch
    n_classes: int
    stats: dict = field(default_factory=dict)  # training-set mean/std per modality: the noise scale

    @property
    def modalities(self) -> list[str]:
        return self.train.modalities

    @property
    def shapes(self) -> dict[str, tuple]:
        return {m: tuple(x.shape[1:]) for m, x in self.train.inputs.items()}

    @property
    def chance(self) -> float:
        """Accuracy of always predicting the most frequent test class."""
        return float(torch.bincount(self.test.y, minlength=self.n_classes).max()) / self.test.size


def make_playground_data(
    dataset: str = SYNTHETIC,
    *,
    redundancy: float = 1.0,
    uniqueness: float = 0.5,
    synergy: float = 1.0,
    n: int = 1200,
    view_noise: float = 0.3,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> PlaygroundData:
    """The playground's data: AV-Digits (real, 10 classes), or synthetic two-view data (binary label).

    Synthetic: :func:`mmlearn.data.make_latent_views` with ``n`` rows, 16-dimensional views ``x1, x2``
    with Gaussian noise ``view_noise``, and a label that depends on a shared latent (``redundancy``), a
    latent only ``x1`` sees (``uniqueness``) and the product of one private latent per view
    (``synergy``, XOR-like: neither view alone predicts it); the last ``test_fraction`` of rows is the
    test set. AV-Digits ignores those knobs and uses its fixed split.
    """
    if dataset == AV_DIGITS:
        av = load_av_digits()
        train, test = to_batch(av["train"]), to_batch(av["test"])
        n_classes = 10
    elif dataset == SYNTHETIC:
        for name, value in (("redundancy", redundancy), ("uniqueness", uniqueness), ("synergy", synergy)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if redundancy == uniqueness == synergy == 0:
            raise ValueError("redundancy, uniqueness and synergy are all 0: the label would carry no information. "
                             "Raise at least one of them.")
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        views = make_latent_views(n, redundancy=redundancy, uniqueness=uniqueness, synergy=synergy,
                                  noise=view_noise, seed=seed)
        batch = to_batch(views)
        cut = int(round(n * (1 - test_fraction)))
        train, test = batch.index(slice(0, cut)), batch.index(slice(cut, None))
        n_classes = 2
    else:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    return PlaygroundData(dataset, train, test, n_classes, modality_stats(train.inputs))


# ------------------------------------------------------------------------------------------- layer 1: training
def train_model(data: PlaygroundData, method: str, *, modality_dropout: float = 0.0, seed: int = 0,
                 on_epoch_end: Callable | None = None, **training) -> torch.nn.Module:
    """The playground's model for ``method``: :func:`mmlearn.experiments.train_fusion` (the course's one
    fusion trainer) with the default encoders (a small CNN for images), the playground's quick settings
    (:data:`TRAINING`, overridden by ``training``) and :data:`FAST_OPTIONS`, on one thread."""
    settings = {**TRAINING.get(data.name, TRAINING[SYNTHETIC]), **training}
    with torch_threads(1):
        run = run_fusion(method, data.train, None, n_classes=data.n_classes, encoders="default",
                         options=FAST_OPTIONS, modality_dropout=modality_dropout, seed=seed,
                         on_epoch_end=on_epoch_end, dataset=data.name, **settings)
    return run.model


# ------------------------------------------------------------------------------------------- layer 1: evaluation
#: rows of the test set an attack is scored on (an attack needs the whole model's input gradient, so it cannot
#: reuse cached encoder features; 200 rows keep a redraw quick)
ATTACK_ROWS = 200


def encode(model: torch.nn.Module, data: PlaygroundData, *, seed: int = 0) -> EncodedData:
    """The test set's encoder features for ``model`` under the course's noise (Gaussian blend with the training
    set's statistics), cached per modality and level: :class:`mmlearn.robustness.EncodedData`."""
    return EncodedData(model, data.test, kind=NOISE_KIND, seed=seed, stats=data.stats)


def accuracy_now(model: torch.nn.Module, data: PlaygroundData, noise=None, missing=None, attack=None, *,
                 seed: int = 0) -> float:
    """The plain route to one setting's accuracy: :func:`mmlearn.robustness.setting_accuracy` on the test set
    (on its first :data:`ATTACK_ROWS` rows when an attack is on). What the panel shows, without its caches."""
    test = data.test
    if attack is not None and any(float(v) > 0 for v in (attack.values() if isinstance(attack, Mapping) else [attack])):
        test = test.index(slice(0, ATTACK_ROWS))
    return setting_accuracy(model, test, noise, missing, attack, kind=NOISE_KIND, seed=seed, stats=data.stats)


def _levels(values: Mapping[str, float] | float | None, names: Sequence[str], what: str,
            high: float = 1.0) -> dict[str, float]:
    if values is None:
        return {m: 0.0 for m in names}
    if isinstance(values, (int, float)):
        values = {m: float(values) for m in names}
    for m, v in values.items():
        if m not in names:
            raise ValueError(f"{what}: unknown modality {m!r}; expected one of {list(names)}")
        if not 0.0 <= float(v) <= high:
            raise ValueError(f"{what} of {m!r} must be in [0, {high:g}], got {v}")
    return {m: float(values.get(m, 0.0)) for m in names}


def evaluate_methods(jobs: Mapping[str, tuple[EncodedData, list]], workers: int = 1) -> dict[str, np.ndarray]:
    """:func:`mmlearn.robustness.encoded_accuracies` for each ``{method: (encoded, settings)}``, by ``workers``
    threads at a time (the slow methods first).

    Each thread runs PyTorch on one thread of its own: two methods at once on two cores take about 0.6 of the
    time of one after the other (benchmarks/README.md), and, unlike two PyTorch threads inside one operation,
    threads of whole methods do not spin against each other when another process holds a core (measured:
    0.23 s a redraw instead of 1.1 s). The methods share nothing (each has its own model and feature cache),
    and the results do not depend on ``workers``.
    """
    out = {m: np.zeros(0) for m, (_, settings) in jobs.items() if not settings}  # all in the memo: nothing to do
    order = sorted((m for m in jobs if m not in out), key=lambda m: m not in SLOW_TO_EVALUATE)  # slow ones first
    if workers <= 1 or len(order) <= 1:
        return {**out, **{m: encoded_accuracies(*jobs[m]) for m in order}}
    with torch_threads(1), ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {m: pool.submit(encoded_accuracies, *jobs[m]) for m in order}
        return {**out, **{m: f.result() for m, f in futures.items()}}


def playground_result(trained: Mapping[str, tuple], noise: Mapping[str, float], missing: Mapping[str, float],
                      curve: tuple[str, int], levels: Sequence[float], *, seed: int = 0,
                      memo: dict | None = None, attack: Mapping[str, float] | None = None,
                      attack_data: Batch | None = None, workers: int = 1) -> dict:
    """Everything the figure shows for one setting.

    ``trained``: ``{method: (model, encoded)}`` for the selected methods (``encoded``: the test set's
    :class:`mmlearn.robustness.EncodedData`); ``curve``: ``(kind, modality index)``. Every accuracy is
    :func:`mmlearn.robustness.encoded_accuracy` (equal to :func:`mmlearn.robustness.setting_accuracy`); a
    method's accuracies for one call (the curve, the removed reference, ...) come from one pass of its fusion
    and head over all those settings stacked (:func:`mmlearn.robustness.encoded_accuracies`).
    ``attack``: FGSM epsilon per modality; when one is > 0, ``now`` is
    :func:`mmlearn.robustness.setting_accuracy` with that attack after the noise and missing inputs, on
    ``attack_data`` (a subset of the test rows), and ``attacked`` is True.
    Returns ``clean``/``now`` (accuracy per method), ``curves`` (per method, over ``levels``),
    ``current_level`` (the curve's x for the current setting), ``curve_label``, ``removed`` (per method,
    the accuracy with the curve's modality marked absent in every sample, every other setting as given:
    the reference a noise curve can fall below) and ``removed_label``.

    ``memo`` (a dict the caller keeps) saves work across calls without changing any number: the clean
    accuracy of a model never changes, a curve depends only on the settings other than its own variable,
    and the current accuracy is the curve's point when the current level is on the grid. So moving the
    curve's own slider costs no evaluation at all, and any other evaluation control one curve per method.
    ``workers`` > 1 evaluates that many methods at a time (:func:`evaluate_methods`); the numbers are the same.
    """
    if not trained:
        raise ValueError("No fusion method selected: tick at least one method.")
    memo = {} if memo is None else memo
    kind, index = curve
    first = next(iter(trained.values()))[1]
    names = first.modalities
    modality = names[index]
    noise, missing = _levels(noise, names, "noise"), _levels(missing, names, "missing rate")
    attack = _levels(attack, names, "attack epsilon", high=float("inf"))
    attacked = any(v > 0 for v in attack.values())
    current = (noise if kind == "noise" else missing)[modality]
    on_grid = [j for j, level in enumerate(levels) if abs(float(level) - current) < 1e-9]
    what = "level" if kind == "noise" else "missing"
    # the settings a curve depends on: everything but its own variable
    others = (tuple((m, v) for m, v in noise.items() if not (kind == "noise" and m == modality)),
              tuple((m, v) for m, v in missing.items() if not (kind == "missing" and m == modality)))
    clean, now, curves, removed = {}, {}, {}, {}
    # the modality removed: missing in every sample, the rest as set. Its own noise then matters only in
    # samples that would lose every modality, where drop_modalities keeps one (keep_one) and may keep it.
    others_missing = any(v > 0 for m, v in missing.items() if m != modality)
    gone = (tuple((m, v) for m, v in noise.items() if m != modality or others_missing),
            tuple((m, v) for m, v in missing.items() if m != modality))
    curve_keys = curve_settings(names, what, modality, levels, noise, missing)
    now_key = ("now", tuple(noise.items()), tuple(missing.items()))
    # per method, what this setting needs and the memo lacks: one pass of its fusion over those settings
    plan = {}
    for method, (model, enc) in trained.items():
        wanted = {(id(enc), "removed", modality, gone): (noise, {**missing, modality: 1.0}),
                  (id(enc), "clean"): ({}, {})}
        if not attacked and not on_grid:
            wanted[(id(enc), *now_key)] = (noise, missing)
        curve_key = (id(enc), kind, modality, tuple(float(v) for v in levels), others)
        todo = [key for key in wanted if key not in memo]
        settings = [wanted[key] for key in todo] + (curve_keys if curve_key not in memo else [])
        plan[method] = (enc, todo, curve_key, settings)
    values = evaluate_methods({m: (enc, settings) for m, (enc, _, _, settings) in plan.items()}, workers)
    for method, (model, enc) in trained.items():
        _, todo, curve_key, _ = plan[method]
        for j, key in enumerate(todo):
            memo[key] = float(values[method][j])
        if curve_key not in memo:
            memo[curve_key] = values[method][len(todo):]
        removed[method] = memo[(id(enc), "removed", modality, gone)]
        clean[method] = memo[(id(enc), "clean")]
        curves[method] = memo[curve_key]
        if attacked:
            if attack_data is None:
                raise ValueError("an attack needs attack_data (the rows it is scored on)")
            now[method] = setting_accuracy(model, attack_data, noise, missing, attack, kind=NOISE_KIND,
                                           seed=seed, **enc.options)
        elif on_grid:  # the marker is a point of the curve
            now[method] = float(curves[method][on_grid[0]])
        else:
            now[method] = memo[(id(enc), *now_key)]
    label = f"noise on {modality}" if kind == "noise" else f"missing rate of {modality}"
    return dict(methods=list(trained), clean=clean, now=now, curves=curves, levels=list(levels),
                current_level=float(current), curve_label=label, removed=removed,
                removed_label=f"{modality} removed", attacked=attacked, attack=attack)


# ------------------------------------------------------------------------------------------- layer 3: the panel
class PlaygroundPanel(Panel):
    """One panel where the course's pieces meet: data with known interactions, every fusion method,
    noise and missing inputs (a composite of ipywidgets controls, a progress bar and one FigureWidget).

    Controls (``panel.controls``): ``dataset``; ``redundancy``, ``uniqueness``, ``synergy`` (synthetic
    only, disabled for AV-Digits; the values of the interaction meter's grid); ``use_<method>`` per
    registered fusion; ``modality_dropout``; ``noise_0``, ``noise_1``, ``missing_0``, ``missing_1``,
    ``attack_0``, ``attack_1`` (per modality, by position: their labels follow the dataset's modality names)
    and ``curve``. ``panel.meter`` is the interaction meter's figure, ``panel.tabs`` switches to the decision
    surface (``panel.surface``, built when first opened). Training controls train what is missing (progress bar
    ``panel.progress``) and cache it in ``panel.models``; evaluation controls only evaluate.
    """

    NOISE_STEP = 0.1

    def __init__(self, *, dataset: str = SYNTHETIC, methods: Sequence[str] = DEFAULT_METHODS,
                 redundancy: float = 1.0, uniqueness: float = 0.5, synergy: float = 1.0, n: int = 1200,
                 modality_dropout: bool = False, seed: int = 0, training: Mapping | None = None,
                 title: str = "Fusion playground"):
        self.all_methods = list(FUSIONS)
        bad = [m for m in methods if m not in FUSIONS]
        if bad:
            raise ValueError(f"unknown fusion methods {bad}; available: {self.all_methods}")
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
        self.n, self.seed = n, seed
        self.training = dict(training or {})
        self.levels = robustness_levels(self.NOISE_STEP)
        self.models: dict[tuple, tuple] = {}     # (data key, method, dropout) -> (model, encoded features)
        self._data: dict[tuple, PlaygroundData] = {}
        self._memo: dict = {}                    # clean accuracies and curves (see playground_result)
        self.trainings = 0                       # models trained so far (tests check the cache)
        self.progress = W.IntProgress(value=0, min=0, max=1, description="training", bar_style="success",
                                      layout=W.Layout(width="320px"))
        self.status = W.HTML()

        slider = dict(min=0.0, max=1.0, step=0.5, continuous_update=False, readout_format=".1f",
                      style={"description_width": "80px"}, layout=W.Layout(width="260px"))
        level = dict(min=0.0, max=1.0, step=self.NOISE_STEP, continuous_update=False, readout_format=".1f",
                     style={"description_width": "110px"}, layout=W.Layout(width="300px"))
        names = self._modality_names(dataset)
        controls = {
            "dataset": W.Dropdown(options=list(DATASETS), value=dataset, description="dataset",
                                  layout=W.Layout(width="230px")),
            "redundancy": W.FloatSlider(value=redundancy, description="redundancy", **slider),
            "uniqueness": W.FloatSlider(value=uniqueness, description="uniqueness", **slider),
            "synergy": W.FloatSlider(value=synergy, description="synergy", **slider),
        }
        for m in self.all_methods:
            doc = " ".join((FUSIONS[m].__doc__ or m).strip().split("\n\n")[0].split()).rstrip(":")  # 1st paragraph
            if m in SLOW_TO_EVALUATE:
                doc += " (slower to evaluate: " + SLOW_TO_EVALUATE[m] + ")"
            controls[f"use_{m}"] = W.Checkbox(value=m in methods, description=m, indent=False, tooltip=doc,
                                              layout=W.Layout(width="130px"))
        controls["modality_dropout"] = W.Checkbox(value=modality_dropout, indent=False,
                                                  description=f"train with modality dropout ({DROPOUT_RATE:.0%})",
                                                  layout=W.Layout(width="300px"))
        for i in range(2):
            controls[f"noise_{i}"] = W.FloatSlider(value=0.0, description=f"{names[i]} noise", **level)
        for i in range(2):
            controls[f"missing_{i}"] = W.FloatSlider(value=0.0, description=f"{names[i]} missing", **level)
        attack = dict(min=0.0, max=ATTACK_MAX, step=ATTACK_STEP, continuous_update=False, readout_format=".2f",
                      style={"description_width": "110px"}, layout=W.Layout(width="300px"))
        for i in range(2):
            controls[f"attack_{i}"] = W.FloatSlider(value=0.0, description=f"{names[i]} FGSM ε", **attack)
        controls["curve"] = W.Dropdown(options=self._curve_options(names), value="noise:0",
                                       description="curve", layout=W.Layout(width="260px"))

        #: controls that train (once per new choice) rather than only evaluate; benchmarks/course.py
        #: reports them apart from the evaluation controls, which must answer at once
        self.training_controls = ("dataset", "redundancy", "uniqueness", "synergy", "modality_dropout",
                                  *(f"use_{m}" for m in self.all_methods))
        self.controls = controls  # compute() reads them through state(); Panel.__init__ sets them again
        first = self.compute(self.state())
        figure = playground_figure(
            self.all_methods, first["methods"], first["clean"], first["now"], first["levels"], first["curves"],
            first["current_level"], curve_label=first["curve_label"], chance=first["chance"],
            removed=first["removed"], removed_label=first["removed_label"],
            title=first["title"],
        )
        # the interaction meter: a lookup in a precomputed grid, so it answers before any training starts
        # (its observers are registered before the Panel's, which train)
        self.meter_summary = self.interactions(self.state())
        self.meter = go.FigureWidget(interaction_meter_figure(self.meter_summary))
        for knob in ("redundancy", "uniqueness", "synergy"):
            controls[knob].observe(self._update_meter, names="value")
        super().__init__(controls, figure, title)
        self._cache[self._key(self.state())] = first
        self.last_result = first
        self._sync_dataset_controls()
        controls["dataset"].observe(lambda change: self._sync_dataset_controls(), names="value")
        self.surface: SurfacePanel | None = None
        self.view = self._layout(title)

    # ---------------------------------------------------------------- the interaction meter
    @staticmethod
    def interactions(state: Mapping) -> dict:
        """:func:`mmlearn.widgets.interactions.interaction_summary` of the interaction sliders (grid lookup)."""
        return interaction_summary(float(state["redundancy"]), float(state["uniqueness"]), float(state["synergy"]))

    def _update_meter(self, change=None) -> None:
        try:
            summary = self.interactions(self.state())
        except ValueError as err:  # all three at 0: the data refuses it too, the panel shows the message
            self.meter.layout.title.text = str(err)[:110]
            return
        self.meter_summary = summary
        with self.meter.batch_update():
            for trace, update in zip(self.meter.data, meter_trace_updates(summary)):
                trace.update(update)
            self.meter.layout.title.text = meter_title(summary)

    # ---------------------------------------------------------------- the decision-surface tab
    def open_surface(self) -> SurfacePanel:
        """The live decision surface (:class:`mmlearn.widgets.surface.SurfacePanel`) for a 2-D dataset, started
        with the first ticked method that it offers; built once, when its tab is first opened."""
        if self.surface is None:
            ticked = [m for m in self.all_methods if self.controls[f"use_{m}"].value]
            names = surface_fusions()
            fusion = next((m for m in ticked if m in names), "concat")
            self.surface = SurfacePanel(fusion=fusion, title="")
            self.tabs.children = (self.tabs.children[0], self.surface.view)
        return self.surface

    def _on_tab(self, change) -> None:
        if change["new"] == 1:
            self.open_surface()

    # ---------------------------------------------------------------- layout
    def _layout(self, title: str) -> W.VBox:
        c = self.controls
        box = dict(layout=W.Layout(flex_flow="row wrap", align_items="center"))
        methods = W.HBox([W.HTML("<b>fusion methods</b>&nbsp;", layout=W.Layout(width="120px"))]
                         + [c[f"use_{m}"] for m in self.all_methods], **box)
        train = W.VBox([
            W.HTML("<b>1 · data and training</b> (each new choice trains once, then it is cached)"),
            W.HBox([c["dataset"], c["redundancy"], c["uniqueness"], c["synergy"]], **box),
            methods,
            W.HBox([c["modality_dropout"], self.progress, self.status], **box),
        ])
        evaluate = W.VBox([
            W.HTML("<b>2 · corrupt the test data</b> (evaluation only: no retraining)"),
            W.HBox([c["noise_0"], c["noise_1"], c["missing_0"], c["missing_1"], c["curve"]], **box),
        ])
        meter = W.VBox([W.HTML("<b>what the interaction sliders mean</b> (synthetic data; the interaction meter of "
                               "notebook 07, precomputed on its own samples: design PID, estimate, label-free "
                               "synergy bounds, which fusion wins)"), self.meter])
        evaluate = W.VBox([
            W.HTML("<b>2 · corrupt the test data</b> (evaluation only: no retraining)"),
            W.HBox([c["noise_0"], c["noise_1"], c["missing_0"], c["missing_1"], c["curve"]], **box),
            W.HBox([c["attack_0"], c["attack_1"],
                    W.HTML(f"FGSM attack (ε per modality) on the first {ATTACK_ROWS} test rows, after noise and "
                           "missing inputs: moves the <i>now</i> bars and dots", layout=W.Layout(width="240px"))],
                   **box),
        ])
        head = [W.HTML(f"<h3 style='margin:4px 0'>{title}</h3>")] if title else []
        robustness = W.VBox([train, meter, evaluate, self.output])
        self.tabs = W.Tab(children=[robustness, W.HTML("building the decision surface …")])
        self.tabs.set_title(0, "accuracy")
        self.tabs.set_title(1, "decision surface")
        self.tabs.observe(self._on_tab, names="selected_index")
        return W.VBox(head + [self.tabs])

    @staticmethod
    def _modality_names(dataset: str) -> list[str]:
        return ["image", "audio"] if dataset == AV_DIGITS else ["x1", "x2"]

    @staticmethod
    def _curve_options(names: Sequence[str]) -> list[tuple[str, str]]:
        return ([(f"noise on {m}", f"noise:{i}") for i, m in enumerate(names)]
                + [(f"missing {m}", f"missing:{i}") for i, m in enumerate(names)])

    def _sync_dataset_controls(self) -> None:
        """Labels follow the dataset's modality names; interaction sliders only apply to synthetic data."""
        dataset = self.controls["dataset"].value
        names = self._modality_names(dataset)
        for knob in ("redundancy", "uniqueness", "synergy"):
            self.controls[knob].disabled = dataset != SYNTHETIC
        for i, m in enumerate(names):
            self.controls[f"noise_{i}"].description = f"{m} noise"
            self.controls[f"missing_{i}"].description = f"{m} missing"
            self.controls[f"attack_{i}"].description = f"{m} FGSM ε"
        curve = self.controls["curve"]
        value = curve.value
        curve.unobserve(self.update, names="value")
        try:  # same values, new labels: keep the selection without a second redraw
            curve.options = self._curve_options(names)
            curve.value = value
        finally:
            curve.observe(self.update, names="value")

    # ---------------------------------------------------------------- layer 1 glue
    def data_key(self, state: Mapping) -> tuple:
        if state["dataset"] == SYNTHETIC:
            return (SYNTHETIC, float(state["redundancy"]), float(state["uniqueness"]), float(state["synergy"]))
        return (state["dataset"],)

    def data(self, state: Mapping) -> PlaygroundData:
        key = self.data_key(state)
        if key not in self._data:
            if key[0] == SYNTHETIC:
                self._data[key] = make_playground_data(SYNTHETIC, redundancy=key[1], uniqueness=key[2],
                                                       synergy=key[3], n=self.n, seed=self.seed)
            else:
                self._data[key] = make_playground_data(key[0], seed=self.seed)
        return self._data[key]

    def trained(self, state: Mapping) -> dict[str, tuple]:
        """``{method: (model, encoded)}`` for the selected methods, training (once) what is not cached yet."""
        methods = [m for m in self.all_methods if state.get(f"use_{m}")]
        if not methods:
            raise ValueError("No fusion method selected: tick at least one method.")
        data = self.data(state)
        dropout = DROPOUT_RATE if state.get("modality_dropout") else 0.0
        key = self.data_key(state)
        todo = [m for m in methods if (key, m, dropout) not in self.models]
        if todo:
            epochs = {**TRAINING.get(data.name, TRAINING[SYNTHETIC]), **self.training}["epochs"]
            self.progress.max, self.progress.value = max(1, epochs * len(todo)), 0
            figure = getattr(self, "figure", None)  # None while __init__ computes the first result
            if figure is not None:  # dim the old figure: it no longer shows the current choice
                set_busy(figure, True, f"training {', '.join(todo)} on {data.name} … (the figure updates when done)")
            try:
                for i, m in enumerate(todo, 1):
                    self.status.value = f"training <b>{m}</b> ({i}/{len(todo)}) on {data.name} …"
                    model = train_model(data, m, modality_dropout=dropout, seed=self.seed,
                                         on_epoch_end=self._tick, **self.training)
                    encoded = encode(model, data, seed=self.seed)
                    encoded.warm(self.levels)
                    self.models[(key, m, dropout)] = (model, encoded)
                    self.trainings += 1
            finally:
                if figure is not None:
                    set_busy(figure, False)
            self.progress.value = self.progress.max
        self.status.value = f"{len(self.models)} trained model(s) cached"
        return {m: self.models[(key, m, dropout)] for m in methods}

    def _tick(self, model, epoch, history) -> None:
        self.progress.value = min(self.progress.value + 1, self.progress.max)

    # ---------------------------------------------------------------- layer 1 and 2 for the Panel shell
    #: methods evaluated at a time (threads of one PyTorch thread each, :func:`evaluate_methods`): two where
    #: this process may use two cores, else one
    workers: int = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)

    def compute(self, state: dict) -> dict:
        with torch_threads(1):  # tiny models: see torch_threads
            return self._compute(state)

    def _compute(self, state: dict) -> dict:
        trained = self.trained(state)
        data = self.data(state)
        names = data.modalities
        noise = {m: float(state[f"noise_{i}"]) for i, m in enumerate(names)}
        missing = {m: float(state[f"missing_{i}"]) for i, m in enumerate(names)}
        kind, index = state["curve"].split(":")
        attack = {m: float(state[f"attack_{i}"]) for i, m in enumerate(names)}
        result = playground_result(trained, noise, missing, (kind, int(index)), self.levels, seed=self.seed,
                                   memo=self._memo, attack=attack, attack_data=data.test.index(slice(0, ATTACK_ROWS)),
                                   workers=self.workers)
        result["chance"] = data.chance
        if data.name == SYNTHETIC:
            desc = (f"synthetic views: redundancy {state['redundancy']:.2f}, uniqueness {state['uniqueness']:.2f}, "
                    f"synergy {state['synergy']:.2f}")
        else:
            desc = "AV-Digits: handwritten + spoken digits"
        dropout = " · trained with modality dropout" if state.get("modality_dropout") else ""
        attacked = ""
        if result["attacked"]:
            eps = ", ".join(f"{m} {v:.2f}" for m, v in attack.items() if v > 0)
            attacked = f" · now: FGSM ε {eps} on {min(ATTACK_ROWS, data.test.size)} rows"
        result["title"] = f"{desc}{dropout}{attacked}"
        return result

    def draw(self, result: dict) -> None:
        fig, methods, all_methods = self.figure, result["methods"], self.all_methods
        clean_bars, now_bars = fig.data[0], fig.data[1]
        clean_bars.x = methods
        clean_bars.y = [result["clean"][m] for m in methods]
        clean_bars.text = [f"{result['clean'][m]:.0%}" for m in methods]
        now_bars.x = methods
        now_bars.y = [result["now"][m] for m in methods]
        now_bars.text = [f"{result['now'][m]:.0%}" for m in methods]
        now_bars.marker.color = [method_color(m, all_methods) for m in methods]
        fit_to_selection(fig, len(methods))
        for m in all_methods:
            curve, marker = fig.data[curve_trace_index(m, all_methods)], fig.data[marker_trace_index(m, all_methods)]
            on = m in methods
            curve.visible = marker.visible = on
            gone = fig.data[removed_trace_index(m, all_methods)]
            gone.visible = on
            if on:
                curve.x = result["levels"]
                curve.y = list(result["curves"][m])
                marker.x = [result["current_level"]]
                marker.y = [result["now"][m]]
                gone.y = [result["removed"][m]] * 2
                gone.name = f"{m}: {result['removed_label']}"
        fig.data[removed_key_index(all_methods)].name = f"dashed: {result['removed_label']}"
        fig.layout.annotations[1].text = f"robustness: accuracy vs {result['curve_label']}"
        fig.layout.xaxis2.title.text = result["curve_label"]
        for shape in fig.layout.shapes:  # the chance lines, one of them named in the legend
            shape.y0 = shape.y1 = result["chance"]
            if shape.showlegend:
                shape.name = chance_name(result["chance"])
        fig.layout.title.text = result["title"]
