"""Accuracy of several models under corruption, missing inputs or attacks, as one tidy table.

:func:`corrupted_accuracy` is the one place that says how accuracy under a
corruption is computed; :func:`robustness_sweep` calls it for every model,
level and modality and returns a ``pandas.DataFrame`` with columns
``model, kind, modality, level, accuracy`` that :mod:`mmlearn.evaluation`
turns into robustness scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from .._checks import check_number
from ..data.batch import Batch, as_batch
from .adversarial import attack
from .corruptions import CORRUPTIONS, corrupt
from .missing import missing_batch

#: kinds that are not in CORRUPTIONS: dropped modalities and adversarial attacks
EXTRA_KINDS = ("missing", "fgsm", "pgd")
#: the ``modality`` value of the rows where every chosen modality is corrupted together
JOINT = "all"


def sweep_kinds() -> list[str]:
    """Every ``kind`` :func:`corrupted_accuracy` accepts."""
    return sorted(CORRUPTIONS) + list(EXTRA_KINDS)


def corrupted_accuracy(
    model: nn.Module,
    data,
    kind: str,
    level: float,
    modalities: Sequence[str],
    *,
    seed: int = 0,
    **options,
) -> float:
    """Accuracy of ``model`` on ``data`` after corrupting ``modalities`` by ``kind`` at ``level``.

    How each kind is applied (the other modalities are left as they are):

    - a corruption in :data:`CORRUPTIONS` (``"gaussian_noise"``, ``"blur"``, ...):
      :func:`~mmlearn.robustness.corrupt` at ``level`` in [0, 1], seeded by
      ``seed``; rows already absent are untouched; ``options`` go to the
      corruption (e.g. ``stats={"image": (mu, sigma)}`` of the training set);
    - ``"missing"``: each of ``modalities`` is dropped from each row with
      probability ``level`` (zero-filled, marked absent;
      :func:`mmlearn.data.drop_modalities` with ``keep_one=True``, so a row
      keeps at least one input);
    - ``"fgsm"`` / ``"pgd"``: the attack with ``epsilon = level`` (any number
      >= 0) on ``modalities``, against the true labels; ``options`` go to the
      attack (``clamp``, ``steps``, ``norm`` ...).

    Then accuracy = share of rows whose argmax logit equals the label
    (:func:`mmlearn.train.evaluate`, model in eval mode).
    """
    from ..train import evaluate

    batch = as_batch(data)
    modalities = [modalities] if isinstance(modalities, str) else list(modalities)
    for m in modalities:
        if m not in batch.inputs:
            raise ValueError(f"unknown modality {m!r}; the data has {batch.modalities}")
    if kind in CORRUPTIONS:
        inputs = corrupt(batch.inputs, kind, level, modalities, batch.present, seed=seed, **options)
        corrupted = Batch(inputs, batch.y, batch.present)
    elif kind == "missing":
        rate = {m: level for m in modalities}
        corrupted = missing_batch(batch, rate, seed=seed, keep_one=True)
    elif kind in ("fgsm", "pgd"):
        check_number(level, f"{kind} epsilon", low=0.0)
        device = next(model.parameters()).device
        b = batch.to(device)
        extra = {"seed": seed} if kind == "pgd" else {}
        inputs = attack(model, b.inputs, b.y, kind, level, modalities=modalities, present=b.present,
                        **extra, **options)
        corrupted = Batch({m: v.detach() for m, v in inputs.items()}, b.y, b.present)
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sweep_kinds()}")
    return float(evaluate(model, corrupted)["accuracy"])


def robustness_sweep(
    models: Mapping[str, nn.Module],
    data,
    kind: str,
    levels: Sequence[float],
    modalities: Sequence[str] | None = None,
    seed: int = 0,
    *,
    joint: bool = True,
    per_modality: bool = True,
    **options,
):
    """Accuracy of each model at each level, per modality and jointly: a tidy ``pandas.DataFrame``.

    ``models``: ``{name: model}``; ``data``: the evaluation data (a Batch, a
    tuple or a dataset); ``kind``: see :func:`corrupted_accuracy`; ``levels``:
    corruption levels / missing rates in [0, 1], or attack epsilons.
    ``modalities``: default every modality of ``data``. One row per
    ``(model, modality, level)``; ``modality`` is a single modality name
    (``per_modality``: only it is corrupted) or ``"all"`` (``joint``: every one
    of ``modalities`` at once). Columns: ``model, kind, modality, level, accuracy``.
    The same ``seed`` is used at every level, so curves vary smoothly.
    """
    import pandas as pd

    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty dict {name: model}")
    if kind not in sweep_kinds():
        raise ValueError(f"unknown kind {kind!r}; expected one of {sweep_kinds()}")
    batch = as_batch(data)
    modalities = batch.modalities if modalities is None else ([modalities] if isinstance(modalities, str)
                                                             else list(modalities))
    for m in modalities:
        if m not in batch.inputs:
            raise ValueError(f"unknown modality {m!r}; the data has {batch.modalities}")
    levels = [float(check_number(lv, "level", low=0.0)) for lv in levels]
    if not levels:
        raise ValueError("levels is empty")
    groups: list[tuple[str, list[str]]] = []
    if per_modality:
        groups += [(m, [m]) for m in modalities]
    if joint and (len(modalities) > 1 or not per_modality):
        groups.append((JOINT, list(modalities)))
    rows = []
    for name, model in models.items():
        for label, group in groups:
            for lv in levels:
                acc = corrupted_accuracy(model, batch, kind, lv, group, seed=seed, **options)
                rows.append({"model": name, "kind": kind, "modality": label, "level": lv, "accuracy": acc})
    return pd.DataFrame(rows, columns=["model", "kind", "modality", "level", "accuracy"])
