"""Seeded corruptions of a modality dict: additive noise and dropped modalities.

Neither function changes its input in place; both return new tensors.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .._checks import check_level, check_modality_dict, check_present, per_modality


def _generator(seed: int | None, device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(0 if seed is None else int(seed))
    return g


def modality_stats(inputs: Mapping[str, Tensor]) -> dict[str, tuple[float, float]]:
    """Scalar mean and standard deviation of each modality over all its elements."""
    return {m: (float(x.float().mean()), float(x.float().std())) for m, x in inputs.items()}


def add_noise(
    inputs: Mapping[str, Tensor],
    level: float | Mapping[str, float],
    *,
    seed: int | None = 0,
    stats: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, Tensor]:
    """Blend each modality with Gaussian noise of the same scale.

    ``x' = (1 - level) * x + level * (mu + sigma * eps)``, ``eps ~ N(0, I)``, where
    ``mu, sigma`` are the modality's scalar mean and standard deviation (computed
    on ``inputs`` unless ``stats`` gives them, e.g. from the training set). So
    ``level = 0`` leaves the input unchanged and ``level = 1`` replaces it with
    noise that carries no information about the sample.

    ``level`` is one number in [0, 1] for every modality or a dict
    ``{modality: level}`` (modalities not named keep level 0). Seeded: the same
    ``seed`` gives the same noise; each modality draws from its own stream.
    """
    n = check_modality_dict(inputs, what="add_noise inputs")
    levels = {m: check_level(v, m) for m, v in per_modality(level, inputs, "add_noise level").items()}
    stats = dict(stats) if stats is not None else {}
    for m in stats:
        if m not in inputs:
            raise ValueError(f"add_noise stats: unknown modality {m!r}; expected one of {sorted(inputs)}")
    out = {}
    for i, (m, x) in enumerate(inputs.items()):
        lv = levels[m]
        if lv == 0.0:
            out[m] = x.clone()
            continue
        mu, sigma = stats[m] if m in stats else modality_stats({m: x})[m]
        g = _generator(None if seed is None else seed * 1009 + i, x.device)
        eps = torch.randn(x.shape, generator=g, device=x.device, dtype=torch.float32).to(x.dtype)
        out[m] = (1.0 - lv) * x + lv * (mu + sigma * eps)
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
    had. ``rate`` is one number in [0, 1] or a dict per modality.
    """
    n = check_modality_dict(inputs, what="drop_modalities inputs")
    names = list(inputs)
    rates = {m: check_level(v, m) for m, v in per_modality(rate, names, "drop_modalities rate").items()}
    device = next(iter(inputs.values())).device
    before = check_present(present, names, n, device)
    g = _generator(seed, device)
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
    out_inputs = {}
    for j, m in enumerate(names):
        x = inputs[m]
        mask = keep[:, j].reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        out_inputs[m] = x * mask
    return out_inputs, out_present
