"""Seeded corruptions of a modality dict: additive noise and dropped modalities.

Neither function changes its input in place; both return new tensors. An int
``seed`` gives the same result every call; ``seed=None`` draws fresh randomness
(from the operating system) on every call. Each modality has its own stream.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .._checks import (
    check_finite,
    check_float_input,
    check_level,
    check_modality_dict,
    check_number,
    check_present,
    fill_absent,
    per_modality,
)
from .batch import _whole


def _generator(seed: int | None, device) -> torch.Generator:
    """A seeded generator, or (``seed=None``) one seeded from fresh OS entropy."""
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()  # non-deterministic: a new stream every call
    else:
        g.manual_seed(check_number(_whole(seed), "seed", integer=True))
    return g


def _scalar_stats(x: Tensor) -> tuple[float, float]:
    x = x.float()
    if x.numel() == 0:
        raise ValueError("no present rows to take statistics over")
    return float(x.mean()), float(x.std()) if x.numel() > 1 else 0.0


def modality_stats(
    inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None
) -> dict[str, tuple[float, float]]:
    """Scalar mean and standard deviation of each modality over all elements of its present rows.

    Absent rows (``present[m]`` False) are ignored whatever they hold; NaN/inf
    in a present row is a ``ValueError`` naming the modality, and so is a
    modality with no present row.
    """
    n = check_modality_dict(inputs, what="modality_stats inputs")
    mask = check_present(present, list(inputs), n) if present is not None else None
    check_finite(inputs, mask, what="modality_stats inputs")
    out = {}
    for m, x in inputs.items():
        rows = x if mask is None else x[mask[m].to(x.device)]
        if rows.shape[0] == 0:
            raise ValueError(f"modality_stats: modality {m!r} has no present row to take statistics over")
        out[m] = _scalar_stats(rows)
    return out


def add_noise(
    inputs: Mapping[str, Tensor],
    level: float | Mapping[str, float],
    *,
    seed: int | None = 0,
    stats: Mapping[str, tuple[float, float]] | None = None,
    present: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Blend each modality with Gaussian noise of the same scale.

    ``x' = (1 - level) * x + level * (mu + sigma * eps)``, ``eps ~ N(0, I)``, where
    ``mu, sigma`` are the modality's scalar mean and standard deviation (computed
    on ``inputs`` unless ``stats`` gives them, e.g. from the training set). So
    ``level = 0`` leaves the input unchanged and ``level = 1`` replaces it with
    noise that carries no information about the sample.

    ``level`` is one number in [0, 1] for every modality or a dict
    ``{modality: level}`` (modalities not named keep level 0). Seeded: the same
    int ``seed`` gives the same noise; each modality draws from its own stream;
    ``seed=None`` draws fresh noise on every call.

    ``present`` (optional presence mask): statistics are taken over present
    rows only and absent rows are returned unchanged. NaN/inf in a present row
    is a ``ValueError`` naming the modality (one NaN would otherwise turn the
    batch statistics, and so every noisy row, into NaN); integer or bool inputs
    are a ``TypeError``.
    """
    n = check_modality_dict(inputs, what="add_noise inputs")
    for m, x in inputs.items():
        check_float_input(x, m, x.dtype if torch.is_floating_point(x) else torch.float32, what="add_noise inputs")
    levels = {m: check_level(v, m) for m, v in per_modality(level, inputs, "add_noise level").items()}
    if seed is not None:
        seed = check_number(_whole(seed), "add_noise seed", integer=True)
    mask = check_present(present, list(inputs), n) if present is not None else None
    check_finite(inputs, mask, what="add_noise inputs")
    stats = dict(stats) if stats is not None else {}
    for m, st in stats.items():
        if m not in inputs:
            raise ValueError(f"add_noise stats: unknown modality {m!r}; expected one of {sorted(inputs)}")
        try:
            mu, sigma = st
        except (TypeError, ValueError):
            raise TypeError(f"add_noise stats[{m!r}] must be a (mean, std) pair, got {st!r}") from None
        stats[m] = (check_number(mu, f"add_noise stats[{m!r}] mean"),
                    check_number(sigma, f"add_noise stats[{m!r}] std", low=0))
    out = {}
    for i, (m, x) in enumerate(inputs.items()):
        lv = levels[m]
        rows = None if mask is None else mask[m].to(x.device)
        if lv == 0.0 or (rows is not None and not bool(rows.any())):
            out[m] = x.clone()
            continue
        mu, sigma = stats[m] if m in stats else _scalar_stats(x if rows is None else x[rows])
        # one stream per modality: seed * 1009 + position (seed=None: fresh entropy for each modality)
        g = _generator(None if seed is None else seed * 1009 + i, x.device)
        eps = torch.randn(x.shape, generator=g, device=x.device, dtype=torch.float32).to(x.dtype)
        noisy = (1.0 - lv) * x + lv * (mu + sigma * eps)
        out[m] = noisy if rows is None else torch.where(rows.reshape(-1, *([1] * (x.dim() - 1))), noisy, x)
    assert all(v.shape[0] == n for v in out.values())
    return out


def drop_modalities(
    inputs: Mapping[str, Tensor],
    rate: float | Mapping[str, float],
    *,
    seed: int | None = 0,
    present: Mapping[str, Tensor] | None = None,
    keep_one: bool = True,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Drop each modality of each sample with probability ``rate``.

    Returns ``(inputs, present)``: dropped inputs are zero-filled and marked
    ``False`` in the presence mask (DESIGN.md). Samples already missing a
    modality in ``present`` stay missing. With ``keep_one`` (default) a sample
    that would lose every modality keeps one, chosen uniformly among those it
    had. ``rate`` is one number in [0, 1] or a dict per modality. Every absent
    row of the output is exactly zero, whatever the input held there.
    ``seed=None`` draws a fresh pattern on every call.
    """
    n = check_modality_dict(inputs, what="drop_modalities inputs")
    names = list(inputs)
    rates = {m: check_level(v, m) for m, v in per_modality(rate, names, "drop_modalities rate").items()}
    device = next(iter(inputs.values())).device
    before = check_present(present, names, n, device)
    g = _generator(None if seed is None else check_number(_whole(seed), "drop_modalities seed", integer=True), device)
    # (B, M) keep decisions, one uniform draw per sample and modality
    draws = torch.rand((n, len(names)), generator=g, device=device)
    had = torch.stack([before[m] for m in names], dim=1)
    keep = had & (draws >= torch.tensor([rates[m] for m in names], device=device))
    if keep_one:
        lost_all = ~keep.any(dim=1) & had.any(dim=1)
        if lost_all.any():
            # pick one of the modalities the sample had, uniformly
            scores = torch.rand((n, len(names)), generator=g, device=device) * had
            rescue = torch.nn.functional.one_hot(scores.argmax(dim=1), len(names)).bool()
            keep = keep | (rescue & lost_all[:, None])
    out_present = {m: keep[:, j].clone() for j, m in enumerate(names)}
    # torch.where, not x * mask: NaN * 0 is NaN, so a multiplied mask would leak an absent row
    out_inputs = {m: fill_absent(inputs[m], out_present[m]).clone() for m in names}
    return out_inputs, out_present
