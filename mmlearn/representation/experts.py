"""Combining per-modality Gaussian posteriors: product of experts and subsets for mixtures.

Product of experts (Wu & Goodman, "Multimodal Generative Models for Scalable
Weakly-Supervised Learning", NeurIPS 2018): the product of Gaussians
``N(mu_i, sigma_i^2)`` is, up to normalisation, the Gaussian with

    precision  T   = sum_i T_i,          T_i = 1 / sigma_i^2
    mean       mu  = sum_i T_i mu_i / T
    variance   s^2 = 1 / T

MVAE adds the prior ``N(0, I)`` as one more expert (``T_0 = 1``, ``mu_0 = 0``),
so an absent modality simply drops out of the product and no modality at all
gives back the prior.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import torch
from torch import Tensor


def _stack(value, names: Sequence[str] | None, what: str) -> tuple[Tensor, list[str] | None]:
    if isinstance(value, Mapping):
        names = list(value) if names is None else list(names)
        missing = [m for m in names if m not in value]
        if missing:
            raise ValueError(f"{what}: missing modality {missing[0]!r}; got {sorted(value)}")
        return torch.stack([value[m] for m in names], dim=1), names  # M x (B, d) -> (B, M, d)
    if not isinstance(value, Tensor):
        raise TypeError(f"{what} must be a Tensor (B, M, d) or a dict of (B, d) tensors, got {type(value).__name__}")
    return value, names


def product_of_experts(
    mu: Tensor | Mapping[str, Tensor],
    logvar: Tensor | Mapping[str, Tensor],
    present: Tensor | Mapping[str, Tensor] | None = None,
    *,
    prior: bool = True,
) -> tuple[Tensor, Tensor]:
    """Product of diagonal Gaussian experts, with the prior expert ``N(0, I)`` by default.

    Wu & Goodman (NeurIPS 2018), the joint posterior of MVAE for survey Eq. (3).

    ``mu``, ``logvar``: ``(B, M, d)`` tensors, or dicts ``{modality: (B, d)}``.
    ``present``: ``(B, M)`` bool (or a dict ``{modality: (B,)}``); absent
    experts are left out of the product. ``None`` means every expert is present.
    ``prior=False`` leaves out the prior expert; then every row needs at least
    one present expert. Returns ``(mu, logvar)`` of the product, each ``(B, d)``.
    """
    mu_t, names = _stack(mu, None, "product_of_experts mu")
    logvar_t, _ = _stack(logvar, names, "product_of_experts logvar")
    if mu_t.dim() != 3:
        raise ValueError(f"product_of_experts: mu has shape {tuple(mu_t.shape)}; expected (B, M, d)")
    if logvar_t.shape != mu_t.shape:
        raise ValueError(
            f"product_of_experts: logvar has shape {tuple(logvar_t.shape)}; expected {tuple(mu_t.shape)} like mu"
        )
    B, M, _ = mu_t.shape
    if present is None:
        mask = torch.ones(B, M, dtype=torch.bool, device=mu_t.device)
    else:
        mask, _ = _stack(present, names, "product_of_experts present")
        if tuple(mask.shape) != (B, M):
            raise ValueError(f"product_of_experts: present has shape {tuple(mask.shape)}; expected ({B}, {M})")
        mask = mask.to(torch.bool)
    if not prior and not bool(mask.any(dim=1).all()):
        rows = torch.nonzero(~mask.any(dim=1)).flatten()[:5].tolist()
        raise ValueError(f"product_of_experts: rows {rows} have no present expert and prior=False")
    # T_i = 1 / sigma_i^2, zero for absent experts (selected, so an absent NaN expert cannot leak): (B, M, d)
    keep = mask.unsqueeze(-1)
    precision = torch.where(keep, torch.exp(-logvar_t), torch.zeros((), dtype=mu_t.dtype, device=mu_t.device))
    # T = T_0 + sum_i T_i, with the prior expert T_0 = 1, mu_0 = 0: (B, d)
    total = precision.sum(dim=1) + (1.0 if prior else 0.0)
    # mu = sum_i T_i mu_i / T (the prior adds 0 to the numerator): (B, d)
    weighted = torch.where(keep, precision * mu_t, torch.zeros((), dtype=mu_t.dtype, device=mu_t.device))
    mu_joint = weighted.sum(dim=1) / total
    # sigma^2 = 1 / T  ->  log sigma^2 = -log T
    return mu_joint, -torch.log(total)


def nonempty_subsets(names: Sequence[str]) -> list[tuple[str, ...]]:
    """All ``2^M - 1`` non-empty subsets of ``names``, smallest first (MoPoE's mixture components)."""
    names = list(names)
    return [s for k in range(1, len(names) + 1) for s in combinations(names, k)]
