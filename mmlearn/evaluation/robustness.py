"""Robustness scores of accuracy-vs-level curves (MultiBench, Liang et al. NeurIPS 2021 Datasets track).

Checked against MultiBench's ``eval_scripts/robustness.py`` (pliang279/MultiBench):

- MultiBench's *relative robustness* of a curve ``f_0 .. f_n`` measured at
  noise levels 0, 0.1, 0.2, ... is the trapezoid area
  ``sum_i (f_i + f_{i+1}) * 0.1 / 2``;
- its *effective robustness* is the accuracy beyond late fusion once both
  curves start from the same clean accuracy:
  ``sum_i [f_i - (LF_i + f_0 - LF_0)]``;
- both are then min-max normalised over the stored baseline methods of the
  task (finance tasks negated first), and the normalised score of "my method"
  is returned.

Here: the same two quantities computed from the curve alone, with the level
spacing taken from the ``levels`` given (MultiBench hard-codes 0.1, so with
levels 0, 0.1, ... the numbers are equal), no baseline table and no min-max
normalisation unless asked (:func:`minmax_normalize` does that step over the
methods you pass). Options documented on each function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

REDUCTIONS = ("sum", "mean", "trapezoid")


def _curve(levels, values, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(levels, dtype=np.float64).reshape(-1)
    f = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.shape != f.shape:
        raise ValueError(f"{what}: levels have {x.size} points but the curve has {f.size}; expected the same")
    if x.size < 2:
        raise ValueError(f"{what}: a curve needs at least two levels, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(f).all()):
        raise ValueError(f"{what}: levels and accuracies must be finite")
    if not (np.diff(x) > 0).all():
        raise ValueError(f"{what}: levels must be strictly increasing, got {x.tolist()}")
    return x, f


def relative_robustness(levels: Sequence[float], accuracy: Sequence[float], *, normalize: bool = False) -> float:
    """Area under the accuracy-vs-level curve by the trapezoid rule.

    ``sum_i (f_i + f_{i+1}) (x_{i+1} - x_i) / 2``: MultiBench's relative
    robustness, with the actual level spacing instead of a fixed 0.1. A
    constant accuracy ``c`` gives ``c * (x_n - x_0)`` (e.g. 10 points at 0,
    0.1, ..., 0.9: ``0.9 c``, MultiBench's 0.7011 for ``c = 0.779``).
    ``normalize=True`` divides by the level range ``x_n - x_0``: the mean
    accuracy over the range (a constant curve gives ``c``), comparable across
    sweeps of different ranges.
    """
    x, f = _curve(levels, accuracy, "relative_robustness")
    area = float(np.sum((f[1:] + f[:-1]) * np.diff(x) / 2.0))
    return area / float(x[-1] - x[0]) if normalize else area


def effective_robustness(
    levels: Sequence[float],
    accuracy: Sequence[float],
    reference: Sequence[float],
    *,
    equalize_clean: bool = True,
    reduce: str = "sum",
) -> float:
    """Accuracy beyond a reference curve (MultiBench uses late fusion), after equalising clean accuracy.

    Pointwise gap ``g_i = f_i - (r_i + f_0 - r_0)`` with ``equalize_clean``
    (MultiBench's ``beta_f = LF + (f_0 - LF_0)``), or ``g_i = f_i - r_i``
    without; then ``reduce``: ``"sum"`` over the points (MultiBench), ``"mean"``
    over the points, or ``"trapezoid"``, the area of ``g`` over the levels.
    The reference itself scores 0; so does the reference shifted by a constant
    ``c`` when ``equalize_clean`` (the shift is clean accuracy, not
    robustness); without it the shifted curve scores ``c`` (``"mean"``),
    ``n c`` (``"sum"``, ``n`` points) or ``c (x_n - x_0)`` (``"trapezoid"``).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    x, f = _curve(levels, accuracy, "effective_robustness")
    _, r = _curve(levels, reference, "effective_robustness reference")
    gap = f - (r + (f[0] - r[0])) if equalize_clean else f - r
    if reduce == "sum":
        return float(gap.sum())
    if reduce == "mean":
        return float(gap.mean())
    return float(np.sum((gap[1:] + gap[:-1]) * np.diff(x) / 2.0))


def minmax_normalize(scores: Mapping[str, float], *, negate: bool = False) -> dict[str, float]:
    """MultiBench's last step: ``(s - min) / (max - min)`` over the methods given (``negate`` first for losses)."""
    if not scores:
        raise ValueError("minmax_normalize needs at least one score")
    v = np.array([float(s) for s in scores.values()], dtype=np.float64)
    if negate:
        v = -v
    span = v.max() - v.min()
    if span == 0:
        raise ValueError("minmax_normalize: every score is equal; the normalisation is undefined")
    return dict(zip(scores, ((v - v.min()) / span).tolist()))


def robustness_table(table, *, reference: str | None = None, normalize: bool = False, equalize_clean: bool = True,
                     reduce: str = "sum"):
    """Scores for every curve of a :func:`mmlearn.robustness.robustness_sweep` table.

    One row per ``(model, kind, modality)`` with ``relative_robustness``
    (``normalize`` as :func:`relative_robustness`), ``clean_accuracy`` (at the
    lowest level) and, with ``reference`` (a model name in the table, e.g. a
    late-fusion model), ``effective_robustness`` against that model's curve of
    the same kind and modality.
    """
    import pandas as pd

    need = {"model", "kind", "modality", "level", "accuracy"}
    if not need <= set(table.columns):
        raise ValueError(f"the table needs columns {sorted(need)}, got {list(table.columns)}")
    if reference is not None and reference not in set(table["model"]):
        raise ValueError(f"reference model {reference!r} is not in the table (models: {sorted(set(table['model']))})")
    rows = []
    for (model, kind, modality), g in table.groupby(["model", "kind", "modality"], sort=False):
        g = g.sort_values("level")
        row = {"model": model, "kind": kind, "modality": modality,
               "clean_accuracy": float(g["accuracy"].iloc[0]),
               "relative_robustness": relative_robustness(g["level"], g["accuracy"], normalize=normalize)}
        if reference is not None:
            ref = table[(table["model"] == reference) & (table["kind"] == kind) & (table["modality"] == modality)]
            ref = ref.sort_values("level")
            if not np.array_equal(ref["level"].to_numpy(), g["level"].to_numpy()):
                raise ValueError(f"reference {reference!r} has levels {ref['level'].tolist()} for {kind}/{modality}, "
                                 f"but {model!r} has {g['level'].tolist()}")
            row["effective_robustness"] = effective_robustness(g["level"], g["accuracy"], ref["accuracy"],
                                                               equalize_clean=equalize_clean, reduce=reduce)
        rows.append(row)
    return pd.DataFrame(rows)
