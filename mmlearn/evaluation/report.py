"""One number is not enough: scores per modality subset, costs, and a report card under several conditions.

- :func:`scores` / :func:`subset_scores`: accuracy and macro-F1 (scikit-learn's
  ``f1_score(average="macro")``), on the data as given or with only some
  modalities present;
- :func:`complexity`: parameter count, training time, inference latency and
  memory, all measured (MultiBench's complexity metrics, Liang et al. 2021);
- :func:`report_card`: several models under clean, noisy, missing and
  adversarial conditions (via :mod:`mmlearn.robustness`), a noise curve per
  model and its robustness scores, as a :class:`ReportCard` (tidy
  ``pandas`` tables, plotly figures, the ``(models, tasks, conditions)`` array
  that :mod:`mmlearn.evaluation.bigbench` scores, and per-row correctness for
  bootstrap intervals).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

#: ``name: (kind, level, modalities)``; ``modalities=None`` means every modality of the data.
DEFAULT_CONDITIONS = {
    "clean": ("clean", 0.0, None),
    "noise 0.5": ("gaussian_noise", 0.5, None),
    "missing 0.5": ("missing", 0.5, None),
    "fgsm 0.05": ("fgsm", 0.05, None),
}


# --------------------------------------------------------------------------- scores
def macro_f1(y_true, y_pred, n_classes: int | None = None) -> float:
    """Macro-F1 by scikit-learn's ``f1_score(average="macro", zero_division=0)``.

    ``n_classes`` fixes the label set to ``0..n_classes-1``, so a class that is
    never predicted nor present still counts (as F1 = 0 when it is predicted
    and absent, and is left out when neither). Without it, the labels seen in
    either array are used (scikit-learn's default).
    """
    from sklearn.metrics import f1_score

    y_true = np.asarray(y_true.cpu() if hasattr(y_true, "cpu") else y_true)
    y_pred = np.asarray(y_pred.cpu() if hasattr(y_pred, "cpu") else y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got {y_true.shape} and {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("macro_f1: no rows")
    labels = None
    if n_classes is not None:
        seen = np.union1d(y_true, y_pred)
        labels = [c for c in range(int(n_classes)) if c in seen]
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def _model_batch(model: nn.Module, data):
    """The data as a Batch, restricted to the model's modalities when it declares them (unimodal models)."""
    from ..data.batch import as_batch

    batch = as_batch(data)
    mods = getattr(model, "modalities", None)
    if isinstance(mods, (list, tuple)) and mods and set(mods) < set(batch.modalities):
        batch = batch.select(list(mods))
    return batch


def _predictions(model: nn.Module, batch) -> torch.Tensor:
    from ..train import _with_checked_labels, predict

    if batch.size == 0:
        raise ValueError("scores: the data has no rows, so there is no accuracy to report")
    batch = _with_checked_labels(batch, model, "scores labels")
    logits = predict(model, batch)
    if not bool(torch.isfinite(logits).all()):  # evaluate's rule: no accuracy from NaN/inf logits
        raise ValueError("scores: the model output NaN or inf logits; did training diverge, or do the inputs "
                         "hold NaN/inf?")
    return logits.argmax(dim=1)


def scores(model: nn.Module, data) -> dict[str, float]:
    """``{"accuracy", "macro_f1"}`` of ``model`` on ``data`` (any batch format), model in eval mode.

    ``accuracy`` is :func:`mmlearn.train.evaluate`'s; ``macro_f1`` is :func:`macro_f1`
    over the model's classes.
    """
    batch = _model_batch(model, data)
    pred = _predictions(model, batch)
    n_classes = getattr(model, "n_classes", None)
    return {"accuracy": float((pred == batch.y).float().mean()),
            "macro_f1": macro_f1(batch.y, pred, n_classes if isinstance(n_classes, int) else None)}


def subset_scores(model: nn.Module, data, subsets: Sequence[Sequence[str]] | None = None, *, as_frame: bool = True):
    """Accuracy and macro-F1 with only each subset of modalities present (the rest zero-filled, marked absent).

    Default subsets: each modality alone, then all together (as
    :func:`mmlearn.train.subset_accuracies`, whose accuracies these equal).
    Returns a ``pandas.DataFrame`` with columns ``subset, accuracy, macro_f1``
    (``subset`` joins names with ``+``), or ``{subset: {"accuracy", "macro_f1"}}``
    with ``as_frame=False``.
    """
    from ..data.batch import Batch

    batch = _model_batch(model, data)
    names = batch.modalities
    if subsets is None:
        subsets = [[m] for m in names] + ([names] if len(names) > 1 else [])
    out = {}
    for subset in subsets:
        subset = [subset] if isinstance(subset, str) else list(subset)
        for m in subset:
            if m not in names:
                raise ValueError(f"unknown modality {m!r} in subset {subset}; expected one of {names}")
        present = {m: torch.full((batch.size,), m in subset, dtype=torch.bool) for m in names}
        inputs = {m: x if m in subset else torch.zeros_like(x) for m, x in batch.inputs.items()}
        out["+".join(subset)] = scores(model, Batch(inputs, batch.y, present))
    if not as_frame:
        return out
    import pandas as pd

    return pd.DataFrame([{"subset": k, **v} for k, v in out.items()], columns=["subset", "accuracy", "macro_f1"])


# --------------------------------------------------------------------------- complexity
def _train_step_peak_bytes(model: nn.Module, batch) -> int | None:
    """Peak bytes of tensors allocated during one forward + backward pass on ``batch`` (torch.profiler).

    Gradients are taken with ``torch.autograd.grad``, so ``p.grad`` is left as it was.
    """
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from ..train import _forward, _logits

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return None
    was_training = model.training
    model.train()
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            loss = F.cross_entropy(_logits(_forward(model, batch)), batch.y)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            del grads, loss
    finally:
        model.train(was_training)
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events()
                    if e.self_cpu_memory_usage != 0)
    running, peak = 0, 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return int(peak) if events else None


def complexity(
    model: nn.Module,
    train: Callable[[nn.Module], object] | float | None,
    data,
    *,
    batch_size: int = 64,
    repeats: int = 20,
    memory: bool = True,
) -> dict:
    """What ``model`` costs, measured (MultiBench's complexity metrics), as a flat dict.

    ``train``: a callable ``train(model)`` (e.g. ``lambda m: fit(m, train_data, epochs=5)``),
    which is run here and timed with ``time.perf_counter`` (``train_time_s``);
    a number of seconds measured elsewhere (reported as given); or ``None``
    (no training time). ``data``: rows to measure on (any batch format).

    Keys: ``parameters`` / ``trainable_parameters`` and ``flops_per_sample``,
    ``latency_per_sample_s`` (median over ``repeats`` forward passes of
    ``batch_size`` rows, divided by the batch size),
    ``peak_inference_bytes`` (peak bytes of tensors allocated during one forward
    pass of that batch) -- all four from
    :func:`mmlearn.efficiency.efficiency_profile` --, ``latency_single_s``
    (median over ``repeats`` forward passes of a single row), and
    ``peak_train_step_bytes``: the peak of the bytes held by tensors that
    torch's CPU allocator hands out during one forward + backward pass of
    ``batch_size`` rows (``torch.profiler`` with ``profile_memory=True``:
    activations, gradients and temporaries; not the weights, the inputs or the
    Python heap). Machine-dependent numbers; set ``torch.set_num_threads(1)``
    to compare models.
    """
    from .._checks import check_number
    from ..efficiency.profile import _call, efficiency_profile

    batch = _model_batch(model, data)
    batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
    repeats = check_number(repeats, "repeats", low=1, integer=True)
    out: dict = {}
    if callable(train):
        t0 = time.perf_counter()
        train(model)
        out["train_time_s"] = time.perf_counter() - t0
    elif train is None:
        out["train_time_s"] = None
    else:
        out["train_time_s"] = float(check_number(train, "training time in seconds", low=0.0))
    prof = efficiency_profile(model, batch, batch_size=batch_size, repeats=repeats, accuracy=False, memory=memory)
    out.update(parameters=prof.parameters, trainable_parameters=prof.trainable_parameters,
               flops_per_sample=prof.flops_per_sample, latency_per_sample_s=prof.latency_per_sample_s,
               peak_inference_bytes=prof.peak_activation_bytes)
    one = batch.index(slice(0, 1))
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(repeats + 2):
                t0 = time.perf_counter()
                _call(model, one.inputs, one.present)
                if i >= 2:
                    times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    out["latency_single_s"] = statistics.median(times)
    part = batch.index(slice(0, min(batch_size, batch.size)))
    out["peak_train_step_bytes"] = _train_step_peak_bytes(model, part) if memory else None
    return out


# --------------------------------------------------------------------------- conditions
def condition_batch(model: nn.Module, data, kind: str, level: float, modalities=None, *, seed: int = 0,
                    **options):
    """The evaluation data under one condition, built exactly as :func:`mmlearn.robustness.corrupted_accuracy` does.

    ``kind``: ``"clean"`` (the data unchanged), a corruption of
    :data:`mmlearn.robustness.CORRUPTIONS`, ``"missing"`` or ``"fgsm"`` / ``"pgd"``
    (against the true labels of ``model``). ``modalities``: default every
    modality of the data (of the model, for a unimodal model). The accuracy on
    the returned batch equals ``corrupted_accuracy(model, data, kind, level, modalities, seed=seed)``.
    """
    from .._checks import check_number
    from ..data.batch import Batch
    from ..robustness import CORRUPTIONS, attack, corrupt, missing_batch, sweep_kinds

    batch = _model_batch(model, data)
    if modalities is None:
        modalities = batch.modalities
    modalities = [modalities] if isinstance(modalities, str) else list(modalities)
    modalities = [m for m in modalities if m in batch.inputs]  # a unimodal model skips the other modality
    if kind == "clean" or not modalities:
        return batch
    if isinstance(options.get("stats"), Mapping):  # training statistics of every modality: keep the model's
        options = {**options, "stats": {m: v for m, v in options["stats"].items() if m in batch.inputs}}
    if kind in CORRUPTIONS:
        return Batch(corrupt(batch.inputs, kind, level, modalities, batch.present, seed=seed, **options),
                     batch.y, batch.present)
    if kind == "missing":
        return missing_batch(batch, {m: level for m in modalities}, seed=seed, keep_one=True)
    if kind in ("fgsm", "pgd"):
        check_number(level, f"{kind} epsilon", low=0.0)
        device = next(model.parameters()).device
        b = batch.to(device)
        extra = {"seed": seed} if kind == "pgd" else {}
        inputs = attack(model, b.inputs, b.y, kind, level, modalities=modalities, present=b.present,
                        **extra, **options)
        return Batch({m: v.detach().cpu() for m, v in inputs.items()}, batch.y, batch.present)
    raise ValueError(f"unknown kind {kind!r}; expected 'clean' or one of {sweep_kinds()}")


def _conditions(conditions) -> dict[str, tuple]:
    if conditions is None:
        return dict(DEFAULT_CONDITIONS)
    if isinstance(conditions, Mapping):
        items = dict(conditions)
    else:
        items = {}
        for c in conditions:
            c = tuple(c)
            kind, level = c[0], float(c[1])
            mods = c[2] if len(c) > 2 else None
            name = "clean" if kind == "clean" else f"{kind} {level:g}" + (
                "" if mods is None else " (" + "+".join([mods] if isinstance(mods, str) else mods) + ")")
            items[name] = c
    out = {}
    for name, c in items.items():
        c = tuple(c)
        if len(c) not in (2, 3):
            raise ValueError(f"condition {name!r} must be (kind, level) or (kind, level, modalities), got {c}")
        out[str(name)] = (c[0], float(c[1]), c[2] if len(c) == 3 else None)
    if not out:
        raise ValueError("conditions is empty")
    return out


# --------------------------------------------------------------------------- report card
@dataclass
class ReportCard:
    """What :func:`report_card` measured.

    - ``table``: one row per ``(model, task, condition)`` with ``kind, level,
      modalities, accuracy, macro_f1``;
    - ``curves``: a :func:`~mmlearn.robustness.robustness_sweep` table (all
      modalities corrupted together) per task, with a ``task`` column, or ``None``;
    - ``robustness``: :func:`~mmlearn.evaluation.robustness_table` of the curves
      (relative robustness, and effective robustness against ``reference``);
    - ``correct``: ``{(model, task, condition): bool array}`` per test row, for
      bootstrap intervals (:meth:`bootstrap`).
    """

    table: object
    curves: object | None = None
    robustness: object | None = None
    correct: dict = field(default_factory=dict, repr=False)
    labels: dict = field(default_factory=dict, repr=False)
    predictions: dict = field(default_factory=dict, repr=False)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.table["model"]))

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(self.table["task"]))

    @property
    def conditions(self) -> list[str]:
        return list(dict.fromkeys(self.table["condition"]))

    def results_array(self, metric: str = "accuracy", models=None, tasks=None, conditions=None) -> np.ndarray:
        """The ``(models, tasks, conditions)`` array of ``metric`` that MM-BigBench's metrics take."""
        models = self.models if models is None else list(models)
        tasks = self.tasks if tasks is None else list(tasks)
        conditions = self.conditions if conditions is None else list(conditions)
        pivot = self.table.set_index(["model", "task", "condition"])[metric]
        return np.array([[[float(pivot.loc[(m, t, c)]) for c in conditions] for t in tasks] for m in models])

    def bootstrap(self, statistic: Callable[[np.ndarray], np.ndarray], *, n_boot: int = 200, seed: int = 0,
                  models=None, tasks=None, conditions=None) -> np.ndarray:
        """``statistic`` of the accuracy array recomputed on ``n_boot`` resamples of the test rows.

        Each resample draws the rows of each task with replacement (the same rows
        for every model and condition, so paired differences keep their
        correlation) and rebuilds the ``(models, tasks, conditions)`` accuracy
        array; returns ``np.stack([statistic(A_b) for b in ...])``. Spread over
        test rows only: it says nothing about retraining with another seed.
        """
        models = self.models if models is None else list(models)
        tasks = self.tasks if tasks is None else list(tasks)
        conditions = self.conditions if conditions is None else list(conditions)
        rng = np.random.default_rng(seed)
        stacks = {t: np.stack([np.stack([self.correct[(m, t, c)] for c in conditions]) for m in models])
                  for t in tasks}  # (M, I, N_t)
        out = []
        for _ in range(int(n_boot)):
            arr = np.empty((len(models), len(tasks), len(conditions)))
            for j, t in enumerate(tasks):
                n = stacks[t].shape[-1]
                idx = rng.integers(0, n, n)
                arr[:, j, :] = stacks[t][:, :, idx].mean(axis=-1)
            out.append(np.asarray(statistic(arr)))
        return np.stack(out)

    # figures (layer 2 builders in mmlearn.viz.evaluation)
    def bar_figure(self, metric: str = "accuracy", **kwargs):
        from ..viz.evaluation import report_card_figure

        return report_card_figure(self.table, metric=metric, **kwargs)

    def radar_figure(self, metric: str = "accuracy", **kwargs):
        from ..viz.evaluation import report_radar_figure

        return report_radar_figure(self.table, metric=metric, **kwargs)

    def curve_figure(self, **kwargs):
        from ..viz.evaluation import robustness_curves_figure

        if self.curves is None:
            raise ValueError("this report card has no curves (report_card(..., curve_levels=None))")
        return robustness_curves_figure(self.curves, **kwargs)

    @property
    def figures(self) -> dict:
        """``{"bars", "radar", "curves"}``: the default figures (``curves`` only when measured)."""
        figs = {"bars": self.bar_figure(), "radar": self.radar_figure()}
        if self.curves is not None:
            figs["curves"] = self.curve_figure()
        return figs


def report_card(
    models: Mapping[str, nn.Module],
    data,
    conditions=None,
    *,
    seed: int = 0,
    curve_kind: str | None = "gaussian_noise",
    curve_levels: Sequence[float] | None = (0.0, 0.25, 0.5, 0.75, 1.0),
    reference: str | None = None,
    curve_tasks: Sequence[str] | None = None,
    options: Mapping[str, Mapping] | None = None,
) -> ReportCard:
    """Evaluate several models under several conditions in one call.

    ``models``: ``{name: model}`` (each a classifier taking the batch format;
    a unimodal model is given only its modalities). ``data``: the test data
    in any batch format (``Batch``, ``(inputs, y[, present])``, ``datasets.Dataset``),
    or ``{task_name: data}`` for several tasks. ``conditions``: ``{name: (kind,
    level[, modalities])}`` or a list of such tuples; default
    :data:`DEFAULT_CONDITIONS` (clean, Gaussian noise 0.5, each modality missing
    with probability 0.5, FGSM with epsilon 0.05, each on every modality).
    Each condition is built by :func:`condition_batch` (so accuracy equals
    :func:`mmlearn.robustness.corrupted_accuracy`), seeded by ``seed``.
    ``options``: ``{kind: keyword arguments}`` for that kind (e.g.
    ``{"gaussian_noise": {"stats": ...}}``, ``{"fgsm": {"clamp": ...}}``).
    ``curve_kind`` / ``curve_levels``: a robustness curve per model and task
    (every modality corrupted together, :func:`~mmlearn.robustness.robustness_sweep`),
    scored by :func:`~mmlearn.evaluation.robustness_table` (``reference``: the
    model that effective robustness is measured against, e.g. late fusion);
    ``curve_tasks``: the tasks that get curves (default every task).
    """
    import pandas as pd

    from ..robustness import robustness_sweep
    from .robustness import robustness_table

    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty dict {name: model}")
    from ..data.batch import as_batch

    tasks = dict(data) if isinstance(data, Mapping) and not hasattr(data, "column_names") else {"data": data}
    tasks = {str(t): as_batch(d) for t, d in tasks.items()}  # a dataset is converted once, not per model
    conds = _conditions(conditions)
    options = dict(options or {})
    rows, correct, labels, preds = [], {}, {}, {}
    for task, task_data in tasks.items():
        for name, model in models.items():
            for cname, (kind, level, mods) in conds.items():
                b = condition_batch(model, task_data, kind, level, mods, seed=seed, **options.get(kind, {}))
                pred = _predictions(model, b)
                n_classes = getattr(model, "n_classes", None)
                ok = (pred == b.y).numpy()
                correct[(name, task, cname)] = ok
                preds[(name, task, cname)] = pred.numpy()
                labels[task] = b.y.numpy()
                rows.append({"model": name, "task": task, "condition": cname, "kind": kind, "level": level,
                             "modalities": "all" if mods is None else "+".join([mods] if isinstance(mods, str)
                                                                               else mods),
                             "accuracy": float(ok.mean()),
                             "macro_f1": macro_f1(b.y, pred, n_classes if isinstance(n_classes, int) else None)})
    table = pd.DataFrame(rows, columns=["model", "task", "condition", "kind", "level", "modalities", "accuracy",
                                        "macro_f1"])
    curves = scores_table = None
    if curve_kind is not None and curve_levels is not None:
        parts = []
        for task in tasks if curve_tasks is None else list(curve_tasks):
            if task not in tasks:
                raise ValueError(f"curve_tasks: unknown task {task!r}; the tasks are {list(tasks)}")
            for name, model in models.items():
                batch = _model_batch(model, tasks[task])
                part = robustness_sweep({name: model}, batch, curve_kind, list(curve_levels), seed=seed,
                                        per_modality=False, joint=True, **options.get(curve_kind, {}))
                part.insert(0, "task", task)
                parts.append(part)
        curves = pd.concat(parts, ignore_index=True)
        per_task = []
        for task, g in curves.groupby("task", sort=False):
            s = robustness_table(g.drop(columns="task"), reference=reference, normalize=True)
            s.insert(0, "task", task)
            per_task.append(s)
        scores_table = pd.concat(per_task, ignore_index=True)
    return ReportCard(table, curves, scores_table, correct, labels, preds)
