"""The Fusion Playground: pick data, fusion methods, noise and missing rates; see accuracy and robustness.

Three layers (DESIGN.md):

1. pure functions, no widgets: :func:`make_playground_data` (AV-Digits, or synthetic views with chosen
   redundancy, uniqueness and synergy), :func:`train_fusion` (one model per method, seeded),
   :class:`FeatureBank` + :func:`corrupted_accuracy` + :func:`robustness_curve` (evaluation under noise and
   missing inputs) and :func:`playground_result` (everything the figure shows, for one setting);
2. :func:`mmlearn.viz.playground_figure`;
3. :class:`PlaygroundPanel`, one :class:`~mmlearn.widgets.Panel` whose controls come in two kinds:

   - *training* controls (dataset, its redundancy/uniqueness/synergy, which methods, modality dropout):
     a new combination trains the missing models once, with a progress bar, and caches them;
   - *evaluation* controls (noise and missing rate per modality, which curve to draw): only evaluate.

Why evaluation is fast: noise on modality ``m`` changes only encoder ``m``'s input, and
:func:`mmlearn.data.add_noise` draws each modality's noise from its own seeded stream. So the encoder
features of the test set under noise level ``l`` on ``m`` are computed once per ``(m, l)`` and kept
(:class:`FeatureBank`); a control change only runs fusion + head on cached features. Missing inputs are
applied to the features with :func:`mmlearn.data.drop_modalities`: every fusion zero-fills absent rows
itself (``Fusion.check``), so encoding a zero-filled input first would give the same output.
:func:`corrupted_accuracy` is tested against the plain route (corrupt the inputs, run the whole model).

The information decomposition of the data (survey Sec. IX, Eq. 8) belongs to the interactions module,
which does not exist yet. The hook is ready: pass ``decomposition=fn`` where ``fn(train: Batch) ->
{"redundancy": r, "unique <m1>": u1, "unique <m2>": u2, "synergy": s}`` (bits), and the panel adds a third
plot, recomputed when the data changes. :func:`default_decomposition` returns such a function once
``mmlearn.interactions`` provides ``pid_decomposition(train)``, and ``None`` until then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import ipywidgets as W
import numpy as np
import torch
from torch import Tensor

from ..data import (
    Batch,
    add_noise,
    drop_modalities,
    load_av_digits,
    make_latent_views,
    modality_stats,
    to_batch,
)
from ..fusion import FUSIONS
from ..models import build_classifier
from ..train import fit
from ..viz.playground import (
    chance_name,
    curve_trace_index,
    marker_trace_index,
    method_color,
    playground_figure,
    removed_key_index,
    removed_trace_index,
    robustness_levels,
    set_busy,
)
from .base import Panel

SYNTHETIC, AV_DIGITS = "synthetic", "AV-Digits"
DATASETS = (SYNTHETIC, AV_DIGITS)

#: training settings per dataset: small on purpose (seconds per method on a laptop CPU)
TRAINING = {
    SYNTHETIC: dict(epochs=20, batch_size=128, lr=3e-3),
    AV_DIGITS: dict(epochs=8, batch_size=128, lr=3e-3),
}
#: fusion options that keep training quick in the playground (the defaults are the papers')
FAST_OPTIONS = {"deq": dict(max_iter=12, tol=1e-2)}
#: methods whose evaluation is much slower than the others (benchmarks/README.md), said in their tooltip
SLOW_TO_EVALUATE = {"deq": "a fixed-point solve per evaluation, about 0.5 s per redraw",
                    "cross_attention": "attention over modality tokens, about 0.1 s per redraw"}
#: drop probability per modality when "train with modality dropout" is on
DROPOUT_RATE = 0.3
DEFAULT_METHODS = ("late", "concat", "tensor")




@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the previous count.

    The playground's models are tiny: one thread trains them faster than two, and on a busy 2-core
    machine two threads spin against each other (measured: 1.8 s with one thread against 22 s with two
    for the same two trainings, with other jobs running). Binder has one CPU anyway.
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
def train_fusion(
    data: PlaygroundData,
    method: str,
    *,
    modality_dropout: float = 0.0,
    seed: int = 0,
    on_epoch_end: Callable | None = None,
    **training,
) -> torch.nn.Module:
    """A classifier with the default encoders and fusion ``method``, trained on ``data.train``.

    ``modality_dropout``: drop each modality of each training sample with this probability (zero-filled,
    marked absent; seeded by the step), which teaches the model to cope with missing inputs.
    ``training`` overrides :data:`TRAINING` (``epochs``, ``batch_size``, ``lr``).
    """
    if method not in FUSIONS:
        raise ValueError(f"unknown fusion method {method!r}; available: {sorted(FUSIONS)}")
    if not 0 <= modality_dropout < 1:
        raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
    settings = {**TRAINING.get(data.name, TRAINING[SYNTHETIC]), **training}
    model = build_classifier(data.shapes, data.n_classes, method, seed=seed, **FAST_OPTIONS.get(method, {}))

    transform = None
    if modality_dropout > 0:
        def transform(batch: Batch, step: int) -> Batch:
            inputs, present = drop_modalities(batch.inputs, modality_dropout, seed=seed * 100_003 + step,
                                              present=batch.present)
            return Batch(inputs, batch.y, present)

    with torch_threads(1):
        fit(model, data.train, epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
            seed=seed, progress=False, train_transform=transform, on_epoch_end=on_epoch_end)
    model.eval()
    return model


# ------------------------------------------------------------------------------------------- layer 1: evaluation
class FeatureBank:
    """Encoder features of one model on the test set, per modality and noise level, computed once each.

    ``bank.features(m, level)`` is ``model.encoders[m]`` applied to modality ``m`` of
    ``add_noise(test.inputs, {m: level}, seed=seed, stats=stats)``: exactly what the whole model computes
    for ``m`` whatever the noise on the other modalities (each modality has its own noise stream).
    """

    def __init__(self, model: torch.nn.Module, data: PlaygroundData, *, seed: int = 0):
        self.model, self.data, self.seed = model, data, seed
        self._cache: dict[tuple[str, float], Tensor] = {}

    @torch.no_grad()
    def features(self, modality: str, level: float) -> Tensor:
        key = (modality, round(float(level), 6))
        if key not in self._cache:
            if modality not in self.data.modalities:
                raise ValueError(f"unknown modality {modality!r}; expected one of {self.data.modalities}")
            noisy = add_noise(self.data.test.inputs, {modality: key[1]}, seed=self.seed, stats=self.data.stats)
            self.model.eval()
            self._cache[key] = self.model.encoders[modality](noisy[modality])
        return self._cache[key]

    def warm(self, levels: Sequence[float]) -> None:
        """Compute every modality at every level now (after training), so controls only look up."""
        for m in self.data.modalities:
            for level in levels:
                self.features(m, level)


def _levels(values: Mapping[str, float] | float | None, names: Sequence[str], what: str) -> dict[str, float]:
    if values is None:
        return {m: 0.0 for m in names}
    if isinstance(values, (int, float)):
        values = {m: float(values) for m in names}
    for m, v in values.items():
        if m not in names:
            raise ValueError(f"{what}: unknown modality {m!r}; expected one of {list(names)}")
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{what} of {m!r} must be in [0, 1], got {v}")
    return {m: float(values.get(m, 0.0)) for m in names}


@torch.no_grad()
def corrupted_logits(model: torch.nn.Module, bank: FeatureBank, noise=None, missing=None, *, seed: int = 0) -> Tensor:
    """Logits ``(B, C)`` of ``model`` on the test set with ``noise[m]`` blended into each modality (see
    :func:`mmlearn.data.add_noise`) and each modality of each sample missing with probability
    ``missing[m]`` (:func:`mmlearn.data.drop_modalities`, seeded, ``keep_one``: a sample never loses every
    modality). Equal to corrupting the inputs and running the whole model, but reuses cached features.
    """
    names = bank.data.modalities
    noise, missing = _levels(noise, names, "noise"), _levels(missing, names, "missing rate")
    features = {m: bank.features(m, noise[m]) for m in names}  # (B, d_m) each
    present = None
    if any(missing.values()):
        # absent rows are zeroed here; Fusion.check would zero them anyway, as after encoding a zero input
        features, present = drop_modalities(features, missing, seed=seed)
    model.eval()
    return model.head(model.fusion(features, present))  # (B, C)


def corrupted_accuracy(model: torch.nn.Module, bank: FeatureBank, noise=None, missing=None, *,
                       seed: int = 0) -> float:
    """Test accuracy under noise and missing inputs (see :func:`corrupted_logits`)."""
    logits = corrupted_logits(model, bank, noise, missing, seed=seed)
    return float((logits.argmax(dim=1) == bank.data.test.y).float().mean())


def robustness_curve(model, bank: FeatureBank, kind: str, modality: str, levels: Sequence[float], noise=None,
                     missing=None, *, seed: int = 0) -> np.ndarray:
    """Accuracy at each of ``levels`` of ``kind`` (``"noise"`` or ``"missing"``) on ``modality``, every other
    setting as given: one curve of the robustness plot."""
    if kind not in ("noise", "missing"):
        raise ValueError(f"kind must be 'noise' or 'missing', got {kind!r}")
    names = bank.data.modalities
    noise, missing = _levels(noise, names, "noise"), _levels(missing, names, "missing rate")
    if modality not in names:
        raise ValueError(f"unknown modality {modality!r}; expected one of {names}")
    out = []
    for level in levels:
        n, mi = dict(noise), dict(missing)
        (n if kind == "noise" else mi)[modality] = float(level)
        out.append(corrupted_accuracy(model, bank, n, mi, seed=seed))
    return np.asarray(out)


def playground_result(trained: Mapping[str, tuple], noise: Mapping[str, float], missing: Mapping[str, float],
                      curve: tuple[str, int], levels: Sequence[float], *, seed: int = 0,
                      memo: dict | None = None) -> dict:
    """Everything the figure shows for one setting.

    ``trained``: ``{method: (model, bank)}`` for the selected methods; ``curve``: ``(kind, modality index)``.
    Returns ``clean``/``now`` (accuracy per method), ``curves`` (per method, over ``levels``),
    ``current_level`` (the curve's x for the current setting), ``curve_label``, ``removed`` (per method,
    the accuracy with the curve's modality marked absent in every sample, every other setting as given:
    the reference a noise curve can fall below) and ``removed_label``.

    ``memo`` (a dict the caller keeps) saves work across calls without changing any number: the clean
    accuracy of a model never changes, a curve depends only on the settings other than its own variable,
    and the current accuracy is the curve's point when the current level is on the grid. So moving the
    curve's own slider costs no evaluation at all, and any other evaluation control one curve per method.
    """
    if not trained:
        raise ValueError("No fusion method selected: tick at least one method.")
    memo = {} if memo is None else memo
    kind, index = curve
    names = next(iter(trained.values()))[1].data.modalities
    modality = names[index]
    noise, missing = _levels(noise, names, "noise"), _levels(missing, names, "missing rate")
    current = (noise if kind == "noise" else missing)[modality]
    on_grid = [j for j, level in enumerate(levels) if abs(float(level) - current) < 1e-9]
    # the settings a curve depends on: everything but its own variable
    others = (tuple((m, v) for m, v in noise.items() if not (kind == "noise" and m == modality)),
              tuple((m, v) for m, v in missing.items() if not (kind == "missing" and m == modality)))
    clean, now, curves, removed = {}, {}, {}, {}
    # the modality removed: missing in every sample, the rest as set. Its own noise then matters only in
    # samples that would lose every modality, where drop_modalities keeps one (keep_one) and may keep it.
    others_missing = any(v > 0 for m, v in missing.items() if m != modality)
    gone = (tuple((m, v) for m, v in noise.items() if m != modality or others_missing),
            tuple((m, v) for m, v in missing.items() if m != modality))
    for method, (model, bank) in trained.items():
        key = (id(bank), "removed", modality, gone)
        if key not in memo:
            memo[key] = corrupted_accuracy(model, bank, noise, {**missing, modality: 1.0}, seed=seed)
        removed[method] = memo[key]
        key = (id(bank), "clean")
        if key not in memo:
            memo[key] = corrupted_accuracy(model, bank, seed=seed)
        clean[method] = memo[key]
        key = (id(bank), kind, modality, tuple(float(v) for v in levels), others)
        if key not in memo:
            memo[key] = robustness_curve(model, bank, kind, modality, levels, noise, missing, seed=seed)
        curves[method] = memo[key]
        if on_grid:  # the marker is a point of the curve
            now[method] = float(curves[method][on_grid[0]])
        else:
            now[method] = corrupted_accuracy(model, bank, noise, missing, seed=seed)
    label = f"noise on {modality}" if kind == "noise" else f"missing rate of {modality}"
    return dict(methods=list(trained), clean=clean, now=now, curves=curves, levels=list(levels),
                current_level=float(current), curve_label=label, removed=removed,
                removed_label=f"{modality} removed")


def default_decomposition() -> Callable | None:
    """The information decomposition the panel shows by default: ``mmlearn.interactions.pid_decomposition``
    once that module exists (survey Sec. IX), else ``None`` (no third plot)."""
    try:
        from .. import interactions  # optional: not written yet
    except ImportError:
        return None
    return getattr(interactions, "pid_decomposition", None)


# ------------------------------------------------------------------------------------------- layer 3: the panel
class PlaygroundPanel(Panel):
    """One panel where the course's pieces meet: data with known interactions, every fusion method,
    noise and missing inputs (a composite of ipywidgets controls, a progress bar and one FigureWidget).

    Controls (``panel.controls``): ``dataset``; ``redundancy``, ``uniqueness``, ``synergy`` (synthetic
    only, disabled for AV-Digits); ``use_<method>`` per registered fusion; ``modality_dropout``;
    ``noise_0``, ``noise_1``, ``missing_0``, ``missing_1`` (per modality, by position: their labels follow
    the dataset's modality names) and ``curve``. Training controls train what is missing (progress bar
    ``panel.progress``) and cache it in ``panel.models``; evaluation controls only evaluate.
    """

    NOISE_STEP = 0.1

    def __init__(self, *, dataset: str = SYNTHETIC, methods: Sequence[str] = DEFAULT_METHODS,
                 redundancy: float = 1.0, uniqueness: float = 0.5, synergy: float = 1.0, n: int = 1200,
                 modality_dropout: bool = False, seed: int = 0, decomposition: Callable | None = None,
                 training: Mapping | None = None, title: str = "Fusion playground"):
        self.all_methods = list(FUSIONS)
        bad = [m for m in methods if m not in FUSIONS]
        if bad:
            raise ValueError(f"unknown fusion methods {bad}; available: {self.all_methods}")
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
        self.n, self.seed = n, seed
        self.training = dict(training or {})
        self.decomposition = decomposition if decomposition is not None else default_decomposition()
        self.levels = robustness_levels(self.NOISE_STEP)
        self.models: dict[tuple, tuple] = {}     # (data key, method, dropout) -> (model, bank)
        self._data: dict[tuple, PlaygroundData] = {}
        self._decomp: dict[tuple, dict] = {}
        self._memo: dict = {}                    # clean accuracies and curves (see playground_result)
        self.trainings = 0                       # models trained so far (tests check the cache)
        self.progress = W.IntProgress(value=0, min=0, max=1, description="training", bar_style="success",
                                      layout=W.Layout(width="320px"))
        self.status = W.HTML()

        slider = dict(min=0.0, max=2.0, step=0.25, continuous_update=False, readout_format=".2f",
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
        controls["curve"] = W.Dropdown(options=self._curve_options(names), value="noise:0",
                                       description="curve", layout=W.Layout(width="260px"))

        #: controls that train (once per new choice) rather than only evaluate; benchmarks/course.py
        #: reports them apart from the evaluation controls, which must answer at once
        self.training_controls = ("dataset", "redundancy", "uniqueness", "synergy", "modality_dropout",
                                  *(f"use_{m}" for m in self.all_methods))
        self.controls = controls  # compute() reads them through state(); Panel.__init__ sets them again
        first = self.compute(self.state())
        self._with_decomposition = self.decomposition is not None
        figure = playground_figure(
            self.all_methods, first["methods"], first["clean"], first["now"], first["levels"], first["curves"],
            first["current_level"], curve_label=first["curve_label"], chance=first["chance"],
            removed=first["removed"], removed_label=first["removed_label"],
            decomposition=first.get("decomposition"), with_decomposition=self._with_decomposition,
            title=first["title"],
        )
        super().__init__(controls, figure, title)
        self._cache[self._key(self.state())] = first
        self.last_result = first
        self._sync_dataset_controls()
        controls["dataset"].observe(lambda change: self._sync_dataset_controls(), names="value")
        self.view = self._layout(title)

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
        head = [W.HTML(f"<h3 style='margin:4px 0'>{title}</h3>")] if title else []
        return W.VBox(head + [train, evaluate, self.output])

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
        """``{method: (model, bank)}`` for the selected methods, training (once) what is not cached yet."""
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
                    model = train_fusion(data, m, modality_dropout=dropout, seed=self.seed,
                                         on_epoch_end=self._tick, **self.training)
                    bank = FeatureBank(model, data, seed=self.seed)
                    bank.warm(self.levels)
                    self.models[(key, m, dropout)] = (model, bank)
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
        result = playground_result(trained, noise, missing, (kind, int(index)), self.levels, seed=self.seed,
                                   memo=self._memo)
        result["chance"] = data.chance
        if data.name == SYNTHETIC:
            desc = (f"synthetic views: redundancy {state['redundancy']:.2f}, uniqueness {state['uniqueness']:.2f}, "
                    f"synergy {state['synergy']:.2f}")
        else:
            desc = "AV-Digits: handwritten + spoken digits"
        dropout = " · trained with modality dropout" if state.get("modality_dropout") else ""
        result["title"] = f"{desc}{dropout}"
        if self.decomposition is not None:
            key = self.data_key(state)
            if key not in self._decomp:
                self._decomp[key] = dict(self.decomposition(data.train))
            result["decomposition"] = self._decomp[key]
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
        if self._with_decomposition and "decomposition" in result:
            parts = result["decomposition"]
            bars = fig.data[-1]
            bars.x, bars.y = list(parts), list(parts.values())
            bars.text = [f"{v:.2f}" for v in parts.values()]
