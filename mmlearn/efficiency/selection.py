"""Which modalities to collect: greedy selection of a set of modalities under a budget.

Cheng, Balasubramaniam, He, Tsai, Zhao, "Greedy modality selection via
approximate submodular maximization" (UAI 2022, arXiv 2210.12562). The utility
of a set ``S`` of modalities is ``f(S) = I(X_S; Y)`` (or, in practice, the
validation accuracy of a model trained on ``S``). ``f`` is monotone; when the
modalities are (approximately) conditionally independent given ``Y`` it is
(approximately) submodular, and the greedy rule of Nemhauser et al. (1978),

    S_0 = {},   S_i = S_{i-1} + argmax_{e not in S_{i-1}} f(S_{i-1} + e) - f(S_{i-1}),

reaches ``f(S_k) >= (1 - 1/e) f(OPT_k)`` for an exactly submodular ``f`` (minus a
term in the submodularity gap ``eps`` otherwise).

When submodularity fails. With synergy the bound can fail badly: if
``Y = X1 xor X2`` and ``X3`` is a weak noisy copy of ``Y``, then
``f({X1}) = f({X2}) = 0`` bits while ``f({X3}) > 0``, so greedy picks ``X3``
first; adding ``X1`` to ``{X3}`` still gains nothing, so with a budget of two
greedy ends with ``{X3, X1}`` (a fraction of a bit) while the optimum ``{X1, X2}``
carries the whole bit. ``tests/test_efficiency.py`` checks this case.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .._checks import check_number

Utility = Callable[[frozenset], float]


@dataclass
class SelectionResult:
    """What a selection returns.

    ``order``: the modalities in the order they were picked; ``utilities[i]``
    the utility of the first ``i + 1`` picks, ``costs[i]`` their total cost and
    ``gains[i]`` the marginal gain of pick ``i``; ``empty_utility`` is ``f({})``.
    """

    order: list
    utilities: list[float]
    costs: list[float]
    gains: list[float]
    empty_utility: float
    evaluations: int = 0

    @property
    def selected(self) -> tuple:
        return tuple(self.order)

    @property
    def utility(self) -> float:
        """Utility of the final set (``f({})`` when nothing was picked)."""
        return self.utilities[-1] if self.utilities else self.empty_utility


def _check_modalities(modalities) -> list:
    if isinstance(modalities, (str, bytes)) or not isinstance(modalities, Sequence) and not isinstance(
        modalities, (set, frozenset)
    ):
        raise TypeError(f"modalities must be a sequence of names, got {type(modalities).__name__}")
    mods = list(modalities)
    if not mods:
        raise ValueError("modalities is empty: there is nothing to select")
    if len(set(mods)) != len(mods):
        raise ValueError(f"modalities has duplicates: {mods}")
    for m in mods:
        if not isinstance(m, Hashable):
            raise TypeError(f"modality names must be hashable, got {m!r}")
    return mods


def _check_costs(costs, mods) -> dict | None:
    if costs is None:
        return None
    if not isinstance(costs, Mapping):
        raise TypeError(f"costs must be a dict {{modality: cost}}, got {type(costs).__name__}")
    for m in costs:
        if m not in mods:
            raise ValueError(f"costs: unknown modality {m!r}; expected one of {mods}")
    missing = [m for m in mods if m not in costs]
    if missing:
        raise ValueError(f"costs: no cost given for {missing}")
    return {m: check_number(costs[m], f"costs[{m!r}]", low=0.0, low_open=True) for m in mods}


def _check_budget(budget, mods, costs) -> float:
    if costs is None:
        b = check_number(budget, "budget", low=0, integer=True)
        return min(b, len(mods))
    return check_number(budget, "budget", low=0.0)


def _cached(utility: Utility) -> tuple[Callable[[frozenset], float], dict]:
    if not callable(utility):
        raise TypeError(f"utility must be a callable f(frozenset of modalities) -> float, got {utility!r}")
    cache: dict[frozenset, float] = {}

    def f(s: frozenset) -> float:
        if s not in cache:
            value = utility(s)
            cache[s] = check_number(value, f"utility({sorted(map(str, s))})")
        return cache[s]

    return f, cache


def greedy_modality_selection(
    utility: Utility, modalities: Sequence, budget: float, costs: Mapping | None = None
) -> SelectionResult:
    """Greedy maximisation of a monotone, (approximately) submodular set utility.

    ``utility(S)`` takes a ``frozenset`` of modality names and returns a number
    (e.g. :func:`mutual_information_utility` or :func:`accuracy_utility`); each
    set is evaluated once (cached). Without ``costs``, ``budget`` is the number
    of modalities to pick and each step takes the largest gain
    ``f(S + e) - f(S)``. With ``costs`` (``{modality: cost > 0}``), ``budget``
    is a total cost and each step takes the largest gain per cost among the
    modalities that still fit; selection stops when none fits. Ties go to the
    modality listed first. Greedy keeps picking while gains are zero (the
    utility is monotone, so a later pick may still gain).

    The cost-benefit rule alone has no constant-factor guarantee (a cheap
    useless modality can crowd out a costly useful one); the usual remedy is to
    also compare with the best single affordable modality (Leskovec et al. 2007).
    Synergy breaks the guarantee: with ``Y = X1 xor X2`` and a weak noisy copy
    ``X3`` of ``Y``, ``f({X1}) = f({X2}) = 0`` while ``f({X3}) > 0``, so greedy picks
    ``X3`` first, then ``X1`` (gain 0), and with budget 2 ends far below the
    optimum ``{X1, X2}`` (1 bit); see the module docstring.
    """
    mods = _check_modalities(modalities)
    cost = _check_costs(costs, mods)
    b = _check_budget(budget, mods, cost)
    f, cache = _cached(utility)
    chosen: list = []
    current = frozenset()
    value = f(current)
    empty = value
    spent = 0.0
    utilities, costs_out, gains = [], [], []
    while True:
        rest = [m for m in mods if m not in current]
        if cost is None:
            if len(chosen) >= b:
                break
        else:
            rest = [m for m in rest if spent + cost[m] <= b + 1e-12]
        if not rest:
            break
        best, best_score, best_gain = None, -math.inf, 0.0
        for m in rest:
            gain = f(current | {m}) - value
            score = gain if cost is None else gain / cost[m]
            if score > best_score:
                best, best_score, best_gain = m, score, gain
        chosen.append(best)
        current = current | {best}
        value = f(current)
        spent += 1.0 if cost is None else cost[best]
        utilities.append(value)
        costs_out.append(spent)
        gains.append(best_gain)
    return SelectionResult(chosen, utilities, costs_out, gains, empty, len(cache))


def brute_force_selection(
    utility: Utility, modalities: Sequence, budget: float, costs: Mapping | None = None
) -> tuple[tuple, float]:
    """The best set within the budget by trying every subset: ``(subset, utility)``.

    ``subset`` lists the modalities in the order of ``modalities``; among equal
    utilities the smaller (then earlier) subset wins. Exponential in the number
    of modalities: for checking greedy on small problems.
    """
    mods = _check_modalities(modalities)
    cost = _check_costs(costs, mods)
    b = _check_budget(budget, mods, cost)
    f, _ = _cached(utility)
    best, best_value = (), f(frozenset())
    for k in range(1, len(mods) + 1):
        for subset in itertools.combinations(mods, k):
            if cost is None and k > b:
                continue
            if cost is not None and sum(cost[m] for m in subset) > b + 1e-12:
                continue
            value = f(frozenset(subset))
            if value > best_value + 1e-12:
                best, best_value = subset, value
    return best, best_value


# ---------------------------------------------------------------------------- utilities


def _codes(x, name: str) -> np.ndarray:
    arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:  # a discrete vector per row: one code per distinct row
        pass
    elif arr.ndim != 1:
        raise ValueError(f"{name} must be discrete values of shape (N,) or (N, k), got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} holds NaN or inf")
        if not np.all(arr == np.round(arr)):
            raise ValueError(
                f"{name} holds non-integer values: the plug-in estimate needs discrete data "
                "(discretise first, e.g. with k-means)"
            )
    elif not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise TypeError(f"{name} must hold discrete numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    _, codes = np.unique(arr, axis=0, return_inverse=True)
    return codes.ravel()


def _entropy_bits(codes: np.ndarray, w: np.ndarray) -> float:
    _, inv = np.unique(codes, axis=0, return_inverse=True)
    p = np.bincount(inv.ravel(), weights=w)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum())


def mutual_information_utility(x_dict: Mapping, y, weights=None) -> Utility:
    """``f(S) = I(X_S; Y)`` in bits, the plug-in (empirical) estimate on discrete data.

    ``x_dict``: ``{modality: (N,) or (N, k) discrete values}``; ``y``: (N,) labels.
    ``weights`` (optional, (N,) >= 0): row weights, e.g. the probabilities of an
    enumerated distribution, so an exact distribution can be given as its support.
    ``I(X_S; Y) = H(X_S) + H(Y) - H(X_S, Y)`` with ``X_S`` the joint code of the
    modalities in ``S``; ``f({}) = 0``. The plug-in estimate is biased upwards on
    few samples (about ``(|X_S| - 1)(|Y| - 1) / (2 N ln 2)`` bits).
    """
    if not isinstance(x_dict, Mapping) or not x_dict:
        raise ValueError(f"x_dict must be a non-empty dict {{modality: discrete values}}, got {type(x_dict).__name__}")
    yc = _codes(y, "y")
    n = yc.shape[0]
    if n == 0:
        raise ValueError("y is empty: no samples")
    codes = {}
    for m, x in x_dict.items():
        c = _codes(x, f"x_dict[{m!r}]")
        if c.shape[0] != n:
            raise ValueError(f"x_dict[{m!r}] has {c.shape[0]} rows but y has {n}; the samples must be paired")
        codes[m] = c
    if weights is None:
        w = np.ones(n)
    else:
        w = np.asarray(weights, dtype=float).ravel()
        if w.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {np.asarray(weights).shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("weights must be finite, >= 0, with a positive sum")
    h_y = _entropy_bits(yc[:, None], w)

    def utility(subset) -> float:
        s = [m for m in x_dict if m in subset]
        unknown = [m for m in subset if m not in codes]
        if unknown:
            raise ValueError(f"unknown modality {unknown[0]!r}; expected one of {list(codes)}")
        if not s:
            return 0.0
        xs = np.stack([codes[m] for m in s], axis=1)
        h_x = _entropy_bits(xs, w)
        h_xy = _entropy_bits(np.concatenate([xs, yc[:, None]], axis=1), w)
        return max(0.0, h_x + h_y - h_xy)

    return utility


def accuracy_utility(
    train,
    val,
    *,
    fusion: str = "concat",
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 3e-3,
    feature_dim: int = 16,
    seed: int = 0,
) -> Utility:
    """``f(S)`` = validation accuracy of a small classifier trained on the modalities ``S`` only.

    Each subset is trained once (``build_classifier`` with ``fusion`` for two or
    more modalities, concatenation for one, ``epochs`` of Adam, fixed ``seed``)
    and cached, so greedy's repeated questions cost nothing. ``f({})`` is the
    accuracy of always predicting the most frequent training label. The utility
    is monotone only approximately (training noise), which greedy tolerates.
    ``utility.cache`` holds the accuracies computed so far.
    """
    from ..data import as_batch
    from ..models import build_classifier
    from ..train import evaluate, fit

    epochs = check_number(epochs, "epochs", low=1, integer=True)
    check_number(lr, "lr", low=0.0, low_open=True)
    tr, va = as_batch(train), as_batch(val)
    if set(tr.modalities) != set(va.modalities):
        raise ValueError(f"train has modalities {tr.modalities} but val has {va.modalities}")
    n_classes = int(max(int(tr.y.max()), int(va.y.max())) + 1)
    cache: dict[frozenset, float] = {}

    def utility(subset) -> float:
        s = frozenset(subset)
        unknown = [m for m in s if m not in tr.inputs]
        if unknown:
            raise ValueError(f"unknown modality {unknown[0]!r}; expected one of {tr.modalities}")
        if s in cache:
            return cache[s]
        if not s:
            majority = int(np.bincount(tr.y.numpy(), minlength=n_classes).argmax())
            acc = float((va.y == majority).float().mean())
        else:
            names = [m for m in tr.modalities if m in s]
            shapes = {m: tuple(tr.inputs[m].shape[1:]) for m in names}
            model = build_classifier(shapes, n_classes, fusion if len(names) > 1 else "concat",
                                     feature_dim=feature_dim, seed=seed)
            fit(model, tr.select(names), epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=False)
            acc = evaluate(model, va.select(names))["accuracy"]
        cache[s] = acc
        return acc

    utility.cache = cache  # type: ignore[attr-defined]
    return utility


__all__ = [
    "SelectionResult",
    "accuracy_utility",
    "brute_force_selection",
    "greedy_modality_selection",
    "mutual_information_utility",
]
