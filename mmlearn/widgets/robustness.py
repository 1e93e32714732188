"""The robustness panel: noise, missing modalities and attacks at once, for several fusion methods.

Layer 1 (pure, no widgets):

- :func:`condition_batch` / :func:`condition_accuracy`: the batch a model sees under one state
  (Gaussian noise per modality, modalities marked missing, an FGSM or PGD attack per modality) and its
  accuracy. With one factor switched on they equal :func:`mmlearn.robustness.corrupted_accuracy`
  (``"gaussian_noise"``, ``"missing"`` at rate 1, ``"fgsm"`` / ``"pgd"``), which the tests check;
- :class:`FeatureCache` and :func:`noise_curves`: accuracy vs noise on each modality by running only
  fusion + head on cached encoder features (noise on ``m`` changes only encoder ``m``'s input);
- :func:`robustness_result`: everything the panel draws for one state;
- :func:`robustness_controls_disabled`: which controls do nothing in a state;
- notebook helpers for missing modalities: :func:`filled_accuracy`, :func:`fill_sweep` (tidy table for
  :func:`mmlearn.evaluation.robustness_table`) and :class:`AdapterRouter` (one scale-and-shift adapter per
  missing pattern, the frozen model for complete rows).

Layer 2 is :mod:`mmlearn.viz.robustness`; layer 3 is :class:`RobustnessPanel`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as W
import numpy as np
import torch
from torch import nn

from ..data import Batch, as_batch, modality_stats
from ..robustness import corrupt, fgsm, fill_missing, missing_batch, pgd
from ..train import evaluate
from ..viz.robustness import apply_panel_traces, panel_title, robustness_panel_figure, robustness_panel_traces
from .base import Panel
from .modality import chance_accuracy

ATTACKS = ("FGSM", "PGD")
#: noise levels of the panel's curves (the noise sliders move on the same grid)
PANEL_LEVELS = tuple(round(v, 1) for v in np.linspace(0.0, 1.0, 11))


def _noisy(batch: Batch, m: str, level: float, stats, seed: int) -> torch.Tensor:
    """Modality ``m`` of ``batch`` with Gaussian noise at ``level`` (the stream of ``(seed, m)``)."""
    if level == 0:
        return batch.inputs[m]
    present = None if batch.present is None else {m: batch.present[m]}
    out = corrupt({m: batch.inputs[m]}, "gaussian_noise", level, [m], present, seed=seed,
                  stats={m: tuple(stats[m])})
    return out[m]


def _check_state(names, noise, missing, attack):
    for what, table in (("noise", noise), ("missing", missing), ("attack", attack)):
        for m in table:
            if m not in names:
                raise ValueError(f"{what}: unknown modality {m!r}; expected one of {names}")
    if all(missing.get(m, False) for m in names):
        raise ValueError("Every modality is marked missing: keep at least one to see a prediction.")


def condition_batch(
    model: nn.Module,
    data,
    *,
    noise: Mapping[str, float] | None = None,
    missing: Mapping[str, bool] | None = None,
    attack: Mapping[str, float] | None = None,
    stats: Mapping[str, tuple[float, float]],
    method: str = "FGSM",
    steps: int = 5,
    seed: int = 0,
) -> Batch:
    """The batch ``model`` sees under one state, in the order noise -> missing -> attack.

    ``noise[m]``: level in [0, 1] of :func:`mmlearn.robustness.gaussian_noise` (scale from ``stats``,
    the training set's, stream seeded by ``(seed, m)``). ``missing[m]``: ``True`` marks ``m`` absent in
    every row (zero-filled). ``attack[m]``: the attack radius on ``m`` *in units of the modality's
    training standard deviation* (``epsilon_m = attack[m] * stats[m][1]``), L-inf, against the true labels,
    on the noisy input; ``method`` ``"FGSM"`` or ``"PGD"`` (``steps`` steps, random start seeded by
    ``seed``). Missing modalities are not attacked. Raises ``ValueError`` if every modality is missing.
    """
    batch = as_batch(data)
    names = batch.modalities
    noise, missing, attack = dict(noise or {}), dict(missing or {}), dict(attack or {})
    _check_state(names, noise, missing, attack)
    if method not in ATTACKS:
        raise ValueError(f"attack method must be one of {ATTACKS}, got {method!r}")
    inputs = {m: _noisy(batch, m, float(noise.get(m, 0.0)), stats, seed) for m in names}
    present = batch.present
    if any(missing.get(m, False) for m in names):
        present = {m: torch.full((batch.size,), not missing.get(m, False), dtype=torch.bool) for m in names}
        if batch.present is not None:
            present = {m: present[m] & batch.present[m] for m in names}
        inputs = {m: torch.where(present[m].reshape(-1, *[1] * (x.dim() - 1)), x, torch.zeros_like(x))
                  for m, x in inputs.items()}
    eps = {m: float(attack.get(m, 0.0)) * float(stats[m][1]) for m in names
           if float(attack.get(m, 0.0)) > 0 and not missing.get(m, False)}
    if eps:
        targets = list(eps)
        if method == "FGSM":
            inputs = fgsm(model, inputs, batch.y, eps, modalities=targets, present=present)
        else:
            inputs = pgd(model, inputs, batch.y, eps, steps=steps, modalities=targets, present=present, seed=seed)
        inputs = {m: x.detach() for m, x in inputs.items()}
    return Batch(inputs, batch.y, present)


def condition_accuracy(model: nn.Module, data, **state) -> float:
    """Accuracy of ``model`` on :func:`condition_batch` ``(model, data, **state)``."""
    return float(evaluate(model, condition_batch(model, data, **state))["accuracy"])


class FeatureCache:
    """Encoder features of one :class:`~mmlearn.models.MultimodalClassifier` on one batch, per noise level.

    ``features(m, level)`` runs encoder ``m`` on the noisy input once and keeps the result; ``logits(noise,
    missing)`` then runs only fusion + head. The same as running the whole model on
    :func:`condition_batch` without attack: the model zero-fills absent inputs, and every fusion zero-fills
    absent features itself (``Fusion.check``).
    """

    def __init__(self, model: nn.Module, data, stats, seed: int = 0):
        for part in ("encoders", "fusion", "head"):
            if not hasattr(model, part):
                raise TypeError(f"FeatureCache needs a MultimodalClassifier (encoders, fusion, head); "
                                f"{type(model).__name__} has no {part!r}")
        self.model, self.batch, self.stats, self.seed = model, as_batch(data), stats, seed
        self._features: dict = {}

    def features(self, m: str, level: float) -> torch.Tensor:
        key = (m, round(float(level), 6))
        if key not in self._features:
            x = _noisy(self.batch, m, float(level), self.stats, self.seed)
            present = None if self.batch.present is None else {m: self.batch.present[m]}
            self.model.eval()
            with torch.no_grad():
                xs, _ = _prepare_one(self.model, m, x, present)
                self._features[key] = self.model.encoders[m](xs)
        return self._features[key]

    def _present(self, missing: Mapping[str, bool], repeat: int = 1):
        names = self.batch.modalities
        if not any(missing.get(m, False) for m in names):
            return None if self.batch.present is None else {m: p.repeat(repeat) for m, p in self.batch.present.items()}
        present = {m: torch.full((self.batch.size,), not missing.get(m, False), dtype=torch.bool) for m in names}
        if self.batch.present is not None:
            present = {m: present[m] & self.batch.present[m] for m in names}
        return {m: p.repeat(repeat) for m, p in present.items()}

    def logits(self, noise: Mapping[str, float], missing: Mapping[str, bool]) -> torch.Tensor:
        names = self.batch.modalities
        feats = {m: self.features(m, float(noise.get(m, 0.0))) for m in names}
        with torch.no_grad():
            return self.model.head(self.model.fusion(feats, self._present(missing)))

    def accuracy(self, noise: Mapping[str, float], missing: Mapping[str, bool]) -> float:
        names = self.batch.modalities
        # an absent modality's noise does nothing (its features are zero-filled by the fusion)
        key = ("accuracy", tuple((k, 0.0 if missing.get(k, False) else round(float(noise.get(k, 0.0)), 6))
                                 for k in names), tuple(bool(missing.get(k, False)) for k in names))
        if key not in self._features:
            pred = self.logits(noise, missing).argmax(dim=1)
            self._features[key] = float((pred == self.batch.y).float().mean())
        return self._features[key]

    def curve(self, m: str, noise: Mapping[str, float], missing: Mapping[str, bool],
              levels: Sequence[float]) -> list[float]:
        """Accuracy at each level of noise on ``m``, the others as given: one fusion call for every level.

        Memoised on what the curve depends on (the other modalities' noise and every missing flag), so
        moving ``m``'s own slider, or an attack slider, does not recompute it.
        """
        names = self.batch.modalities
        key = ("curve", m, tuple(round(float(v), 6) for v in levels),
               tuple((k, round(float(noise.get(k, 0.0)), 6)) for k in names if k != m),
               tuple(bool(missing.get(k, False)) for k in names))
        if key not in self._features:
            n, b = len(levels), self.batch.size
            feats = {k: torch.cat([self.features(k, float(lv)) for lv in levels]) if k == m
                     else self.features(k, float(noise.get(k, 0.0))).repeat(n, 1) for k in names}
            with torch.no_grad():
                logits = self.model.head(self.model.fusion(feats, self._present(missing, n)))
            hit = (logits.argmax(dim=1) == self.batch.y.repeat(n)).float().reshape(n, b)
            self._features[key] = hit.mean(dim=1).tolist()
        return list(self._features[key])


def _prepare_one(model, m: str, x: torch.Tensor, present):
    """``model.prepare_inputs`` for one modality: dtype conversion and absent rows zero-filled."""
    x = x.to(next(model.parameters()).dtype)
    if present is not None:
        x = torch.where(present[m].reshape(-1, *[1] * (x.dim() - 1)), x, torch.zeros_like(x))
    return x, present


def noise_curves(cache: FeatureCache, noise: Mapping[str, float], missing: Mapping[str, bool],
                 levels: Sequence[float] = PANEL_LEVELS) -> dict:
    """``{"curves": {m: [accuracy at each level of noise on m]}, "removed": {m: accuracy with m missing}}``.

    Every other modality keeps its current ``noise`` and ``missing`` state; no attack. The curve of a
    modality that is missing is flat (its noise does nothing).
    """
    names = cache.batch.modalities
    curves, removed = {}, {}
    for m in names:
        curves[m] = cache.curve(m, noise, missing, levels)
        others_missing = all(missing.get(k, False) for k in names if k != m)
        removed[m] = float("nan") if others_missing else cache.accuracy(noise, {**missing, m: True})
    return {"curves": curves, "removed": removed}


def robustness_result(
    models: Mapping[str, nn.Module],
    data,
    state: Mapping,
    *,
    stats,
    caches: Mapping[str, FeatureCache] | None = None,
    levels: Sequence[float] = PANEL_LEVELS,
    steps: int = 5,
    seed: int = 0,
) -> dict:
    """Everything the panel draws for one ``state`` (the panel's control values).

    ``state``: ``"{m}_noise"``, ``"{m}_missing"``, ``"{m}_attack"`` per modality, ``"attack"`` (FGSM or
    PGD) and ``"methods"`` (names in ``models``). Returns ``{"levels", "noise", "results": {method:
    {"curves", "removed", "now", "clean"}}}``: curves and removed lines as :func:`noise_curves`, ``now`` =
    :func:`condition_accuracy` with every control, ``clean`` = accuracy on the clean batch.
    Raises ``ValueError`` for a state that can't be drawn (no method, every modality missing).
    """
    batch = as_batch(data)
    names = batch.modalities
    methods = list(state.get("methods", ()))
    if not methods:
        raise ValueError("Pick at least one fusion method to compare.")
    for name in methods:
        if name not in models:
            raise ValueError(f"unknown method {name!r}; expected one of {list(models)}")
    noise = {m: float(state.get(f"{m}_noise", 0.0)) for m in names}
    missing = {m: bool(state.get(f"{m}_missing", False)) for m in names}
    attack = {m: float(state.get(f"{m}_attack", 0.0)) for m in names}
    _check_state(names, noise, missing, attack)
    caches = dict(caches or {})
    results = {}
    for name in methods:
        cache = caches.get(name) or FeatureCache(models[name], batch, stats, seed)
        caches[name] = cache
        r = noise_curves(cache, noise, missing, levels)
        r["clean"] = cache.accuracy({}, {})
        if any(attack[m] > 0 and not missing[m] for m in names):
            r["now"] = condition_accuracy(models[name], batch, noise=noise, missing=missing, attack=attack,
                                          stats=stats, method=state.get("attack", "FGSM"), steps=steps, seed=seed)
        else:
            r["now"] = cache.accuracy(noise, missing)
        results[name] = r
    return {"levels": list(levels), "noise": noise, "missing": missing, "attack": attack, "results": results}


def robustness_controls_disabled(state: Mapping, modalities: Sequence[str]) -> dict[str, bool]:
    """Which controls do nothing in ``state``.

    A missing modality's noise and attack sliders (it is not fed); the missing box of the last modality
    left (removing it too would leave nothing to predict from); the attack method while no present
    modality is attacked.
    """
    missing = {m: bool(state.get(f"{m}_missing", False)) for m in modalities}
    left = [m for m in modalities if not missing[m]]
    out = {}
    for m in modalities:
        out[f"{m}_noise"] = missing[m]
        out[f"{m}_attack"] = missing[m]
        out[f"{m}_missing"] = len(left) == 1 and left[0] == m
    out["attack"] = not any(float(state.get(f"{m}_attack", 0.0)) > 0 and not missing[m] for m in modalities)
    return out


class RobustnessPanel(Panel):
    """Noise sliders, missing boxes and attack-strength sliders per modality; several trained models.

    ``models``: ``{method name: trained MultimodalClassifier}`` (trained once beforehand); ``data``: the
    evaluation rows (keep it small, ~200 rows, so an attack answers quickly); ``stats``: the training
    set's ``{m: (mean, std)}`` (noise scale and attack unit). Curves (accuracy vs noise on each modality,
    one per method, other controls as set, no attack), the "modality removed" line of each method, the
    current accuracy with every control (star and bars) and chance update in place. Controls that do
    nothing in a state are disabled (:func:`robustness_controls_disabled`).
    """

    def __init__(self, models: Mapping[str, nn.Module], data, *, stats=None, methods: Sequence[str] | None = None,
                 steps: int = 5, seed: int = 0, title: str = "Noise, missing modalities and attacks at once"):
        if not models:
            raise ValueError("RobustnessPanel needs at least one model")
        self.models = dict(models)
        self.data = as_batch(data)
        self.modalities = self.data.modalities
        self.stats = dict(stats) if stats is not None else modality_stats(self.data.inputs)
        self.steps, self.seed = steps, seed
        self.methods_all = list(self.models)
        self.chance = chance_accuracy(self.data.y)
        self.caches = {name: FeatureCache(model, self.data, self.stats, seed) for name, model in self.models.items()}
        controls: dict[str, W.Widget] = {}
        style = {"description_width": "95px"}
        for m in self.modalities:
            controls[f"{m}_noise"] = W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.1, description=f"{m} noise",
                                                   continuous_update=False, readout_format=".1f", style=style,
                                                   layout=W.Layout(width="270px"))
            controls[f"{m}_attack"] = W.FloatSlider(value=0.0, min=0.0, max=0.5, step=0.05,
                                                    description=f"{m} attack", continuous_update=False,
                                                    readout_format=".2f", style=style, layout=W.Layout(width="270px"),
                                                    tooltip="L-inf radius in units of the modality's training std")
            controls[f"{m}_missing"] = W.Checkbox(value=False, description=f"{m} missing", indent=False,
                                                  layout=W.Layout(width="130px"))
        controls["attack"] = W.ToggleButtons(options=list(ATTACKS), value="FGSM", description="attack",
                                             style={"description_width": "50px", "button_width": "60px"})
        chosen = list(methods) if methods is not None else self.methods_all
        controls["methods"] = W.SelectMultiple(options=self.methods_all, value=tuple(chosen), rows=len(self.methods_all),
                                               description="methods", style={"description_width": "60px"},
                                               layout=W.Layout(width="230px"))
        self.controls = controls
        first = self.compute({name: c.value for name, c in controls.items()})
        figure = robustness_panel_figure(first, self.methods_all, self.modalities, self.chance)
        super().__init__(controls, figure, title)
        self._cache[self._key(self.state())] = first
        self.last_result = first
        for name, control in self.controls.items():
            control.observe(self.sync_controls, names="value")
        self.sync_controls()

    def _key(self, state: dict):
        return tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in state.items()))

    def sync_controls(self, change=None) -> None:
        """Disable every control that does nothing in the current state."""
        for name, disabled in robustness_controls_disabled(self.state(), self.modalities).items():
            self.controls[name].disabled = disabled

    def compute(self, state: dict) -> dict:
        return robustness_result(self.models, self.data, state, stats=self.stats, caches=self.caches,
                                 steps=self.steps, seed=self.seed)

    def draw(self, result: dict) -> None:
        apply_panel_traces(self.figure, robustness_panel_traces(result, self.methods_all, self.modalities,
                                                                self.chance))
        self.figure.layout.title.text = panel_title(result)


# ------------------------------------------------------------------ missing modalities in the notebook


class AdapterRouter(nn.Module):
    """Route each row to the scale-and-shift adapter of its missing pattern, complete rows to the frozen model.

    ``base``: the frozen classifier; ``adapters``: ``{missing modality: ScaleShiftAdapter}`` (one adapter per
    pattern with exactly that modality missing). A row missing a modality without an adapter, or missing
    several, goes to ``base`` with its presence mask (zero filling).
    """

    def __init__(self, base: nn.Module, adapters: Mapping[str, nn.Module]):
        super().__init__()
        self.base = base
        self.adapters = nn.ModuleDict(dict(adapters))

    @property
    def modalities(self) -> list[str]:
        return self.base.modalities

    def forward(self, inputs, present=None):
        logits = self.base(inputs, present)
        if present is None:
            return logits
        names = self.modalities
        logits = logits.clone()
        for m, adapter in self.adapters.items():
            rows = ~present[m]
            for k in names:
                if k != m:
                    rows = rows & present[k]
            if bool(rows.any()):
                sub = {k: x[rows] for k, x in inputs.items()}
                logits[rows] = adapter(sub, {k: p[rows] for k, p in present.items()})
        return logits


def filled_accuracy(model: nn.Module, data, modality: str, rate: float, fill: str = "mask", *, seed: int = 0,
                    means=None, vae=None) -> float:
    """Accuracy with ``modality`` missing from a share ``rate`` of the rows, filled by ``fill``.

    ``fill``: ``"mask"`` (zero-filled and marked absent, what :func:`mmlearn.robustness.corrupted_accuracy`
    ``("missing")`` does; the model decides what absence means), or ``"mean"`` / ``"vae"``
    (:func:`mmlearn.robustness.fill_missing` with the training ``means`` or a trained ``vae``; the filled
    input is then fed as if present). The rows are drawn by :func:`mmlearn.robustness.missing_batch`
    with ``seed``, so every fill sees the same rows missing.
    """
    batch = missing_batch(data, {modality: float(rate)}, seed=seed)
    if fill == "mask":
        return float(evaluate(model, batch)["accuracy"])
    if fill not in ("mean", "vae", "zeros"):
        raise ValueError(f"fill must be 'mask', 'zeros', 'mean' or 'vae', got {fill!r}")
    filled = fill_missing(batch.inputs, batch.present, fill, means=means, vae=vae)
    return float(evaluate(model, Batch(filled, batch.y))["accuracy"])


def fill_sweep(strategies: Mapping[str, tuple], data, rates: Sequence[float], modalities: Sequence[str] | None = None,
               *, seed: int = 0):
    """Accuracy vs missing rate for several ways of handling a missing modality, as a tidy table.

    ``strategies``: ``{name: (model, fill, options)}`` for :func:`filled_accuracy` (``options`` a dict:
    ``means`` or ``vae``). Columns ``model, kind, modality, level, accuracy`` (``kind = "missing"``), so
    :func:`mmlearn.evaluation.robustness_table` scores it.
    """
    import pandas as pd

    batch = as_batch(data)
    modalities = batch.modalities if modalities is None else list(modalities)
    rows = []
    for name, (model, fill, options) in strategies.items():
        for m in modalities:
            for r in rates:
                acc = filled_accuracy(model, batch, m, float(r), fill, seed=seed, **dict(options or {}))
                rows.append({"model": name, "kind": "missing", "modality": m, "level": float(r), "accuracy": acc})
    return pd.DataFrame(rows, columns=["model", "kind", "modality", "level", "accuracy"])
