"""MM-BigBench's metrics of a results array (Yang et al. 2023, arXiv 2310.09036).

MM-BigBench scores ``M`` models on ``T`` tasks under ``I`` instructions: a
results array ``A`` of shape ``(M, T, I)``. Here the third axis is any set of
*conditions* a model is evaluated under: instructions, noise levels, missing
patterns or attacks (:func:`mmlearn.evaluation.report_card` builds such an
array with :meth:`~mmlearn.evaluation.ReportCard.results_array`).

Checked against the authors' code, ``declare-lab/MM-InstructEval`` (formerly
MM-BigBench), files ``evaluation/calculate_best_acc.py``,
``calculate_mean_relative_gain.py``, ``calculate_stabability.py`` and
``calculate_topk_hit_ratio.py``:

- **Best performance** ``BP[m, t] = max_i A[m, t, i]`` (the total over tasks ranks models);
- **Mean relative gain over models**
  ``MRG^M[m, t] = mean_i 100 (A[m, t, i] - Abar[t, i]) / Abar[t, i]``, ``Abar[t, i] = mean_m A[m, t, i]``
  (the code adds 1e-6 to ``Abar``); **over conditions**
  ``MRG^I[i, t] = mean_m 100 (A[m, t, i] - Abar[m, t]) / Abar[m, t]``, ``Abar[m, t] = mean_i A[m, t, i]``.
  Both are relative to a *mean*, so (with ``eps = 0``) they sum to zero over
  models (resp. conditions) for every task;
- **Stability**: the population standard deviation (``np.std``, ddof 0) of
  ``A`` over conditions (model stability, ``(M, T)``) or over models
  (condition stability, ``(I, T)``); lower is steadier;
- **Adaptability** (top-K hit ratio, K = 3 in the paper):
  ``HR[m, i] = 100 #{t : i among the top-K conditions of (m, t)} / (K T)``; each
  row sums to 100; the global adaptability of condition ``i`` is ``sum_m HR[m, i]``.
  Ties are broken as the code's ``sorted(zip(values, index), reverse=True)``
  does: among equal values the *later* condition ranks first.
"""

from __future__ import annotations

import numpy as np


def _results(results) -> np.ndarray:
    a = np.asarray(results, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"results must be an array (models, tasks, conditions); got shape {a.shape}")
    if min(a.shape) < 1:
        raise ValueError(f"results has an empty axis: shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("results must be finite (no NaN/inf)")
    return a


def best_performance(results, *, total: bool = False) -> np.ndarray:
    """``BP[m, t] = max_i A[m, t, i]``, shape ``(M, T)``; ``total=True``: ``sum_t BP[m, t]``, shape ``(M,)``."""
    bp = _results(results).max(axis=2)
    return bp.sum(axis=1) if total else bp


def relative_gain(results, *, over: str = "models", eps: float = 1e-6) -> np.ndarray:
    """The per-entry relative gain (in %) before MRG averages it, shape ``(M, T, I)``.

    ``over="models"``: ``100 (A - mean_m A) / (mean_m A + eps)``; ``over="conditions"``:
    ``100 (A - mean_i A) / (mean_i A + eps)``. With ``eps = 0`` it sums to zero over that axis.
    """
    a = _results(results)
    if over not in ("models", "conditions"):
        raise ValueError(f"over must be 'models' or 'conditions', got {over!r}")
    mean = a.mean(axis=0, keepdims=True) if over == "models" else a.mean(axis=2, keepdims=True)
    mean = mean + eps
    if (mean == 0).any():
        raise ValueError("a mean is zero, so the relative gain is undefined; pass eps > 0 (MM-BigBench uses 1e-6)")
    return 100.0 * (a - mean) / mean


def mean_relative_gain(results, *, over: str = "models", eps: float = 1e-6) -> np.ndarray:
    """MM-BigBench's mean relative gain, in %.

    ``over="models"``: ``MRG^M``, shape ``(M, T)``: how far model ``m`` is above
    the average model on task ``t``, averaged over conditions.
    ``over="conditions"``: ``MRG^I``, shape ``(I, T)``: how far condition ``i``
    is above a model's average condition on task ``t``, averaged over models.
    ``eps``: added to the mean, as in the authors' code (1e-6); with ``eps=0``
    the gains sum to exactly zero over models (resp. conditions).
    """
    g = relative_gain(results, over=over, eps=eps)
    return g.mean(axis=2) if over == "models" else g.mean(axis=0).T


def stability(results, *, over: str = "conditions") -> np.ndarray:
    """Population std (ddof 0) of the results.

    ``over="conditions"``: model stability, ``std_i A[m, t, i]``, shape ``(M, T)``
    (how much a model's score moves from one condition to the next);
    ``over="models"``: condition stability, ``std_m A[m, t, i]``, shape ``(I, T)``.
    """
    a = _results(results)
    if over == "conditions":
        return a.std(axis=2)
    if over == "models":
        return a.std(axis=0).T
    raise ValueError(f"over must be 'conditions' or 'models', got {over!r}")


def top_k(values, k: int) -> list[int]:
    """Indices of the ``k`` largest values, ties going to the later index (MM-BigBench's ``get_max_nums``)."""
    values = list(np.asarray(values, dtype=np.float64))
    return [i for _, i in sorted(zip(values, range(len(values))), reverse=True)[:k]]


def adaptability(results, *, k: int = 3, total: bool = False) -> np.ndarray:
    """Top-``k`` hit ratio in %: ``HR[m, i] = 100 #{t : i in top-k of A[m, t, :]} / (k T)``, shape ``(M, I)``.

    Each row sums to 100 (every task contributes ``k`` hits). ``total=True``:
    the global adaptability of each condition, ``sum_m HR[m, i]``, shape ``(I,)``.
    ``k`` must be between 1 and the number of conditions.
    """
    a = _results(results)
    n_models, n_tasks, n_cond = a.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_cond:
        raise ValueError(f"k must be a whole number in [1, {n_cond}] (the number of conditions), got {k!r}")
    hits = np.zeros((n_models, n_cond))
    for m in range(n_models):
        for t in range(n_tasks):
            hits[m, top_k(a[m, t], int(k))] += 1
    hr = 100.0 * hits / (int(k) * n_tasks)
    return hr.sum(axis=0) if total else hr
