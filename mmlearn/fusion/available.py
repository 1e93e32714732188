"""Fusion over the available modalities only (survey Sec. XI, Eq. 9).

    z = sum_{m in M_avail} W_m x_m + b                                          (9)

Each modality has its own projection ``W_m`` (no bias); one shared bias ``b``.
A modality that is absent in a row contributes nothing to that row: its term is
dropped with ``torch.where`` (never multiplied by the mask, so a NaN left in an
absent row cannot reach the output).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .._checks import fill_absent
from .base import Fusion, register_fusion, stack_present

NORMALIZATIONS = ("none", "mean")


@register_fusion("available")
class AvailableModalityFusion(Fusion):
    """Sum of per-modality linear maps over the modalities present in each row (Eq. 9).

    ``normalize`` (a class attribute, so that each variant is one registered name):

    - ``"none"`` (``"available"``, Eq. 9 as written): ``z = sum_{m present} W_m x_m + b``;
      a row with fewer modalities has a smaller sum;
    - ``"mean"`` (``"available_mean"``, :class:`MeanAvailableModalityFusion`):
      ``z = (M / |present|) sum_{m present} W_m x_m + b``, so the sum keeps the
      scale it has with all ``M`` modalities (with every modality present the
      factor is 1 and both agree). A row with no modality present gets ``z = b``.

    Shapes: ``features[m]`` ``(B, in_dims[m])``, ``present[m]`` ``(B,)``, output ``(B, out_dim)``.
    """

    handles_missing = True
    normalize = "none"

    def __init__(self, in_dims: Mapping[str, int], out_dim: int):
        super().__init__(in_dims, out_dim)
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        # W_m: (d_m -> out_dim), one per modality; b shared
        self.maps = nn.ModuleDict({m: nn.Linear(d, out_dim, bias=False) for m, d in self.in_dims.items()})
        self.bias = nn.Parameter(torch.zeros(out_dim))
        bound = 1.0 / sum(self.in_dims.values()) ** 0.5
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> Tensor:
        # names, shapes, dtype and the mask checked; NaN/inf in present rows rejected; absent rows zero-filled
        x, mask = self.check(features, present)
        first = x[self.modalities[0]]
        z = first.new_zeros(first.shape[0], self.out_dim)
        for m in self.modalities:
            # fill_absent again: a no-op after check, kept so that this module alone guarantees it
            term = self.maps[m](fill_absent(x[m], mask[m]))  # (B, out_dim)
            # the term of an absent modality is dropped (selection, not multiplication)
            z = z + torch.where(mask[m][:, None], term, torch.zeros_like(term))
        if self.normalize == "mean":
            # rescale by M / number present (at least 1)
            count = stack_present(mask, self.modalities, z.dtype).sum(dim=1, keepdim=True)  # (B, 1)
            z = z * (len(self.modalities) / count.clamp(min=1.0))
        return z + self.bias


@register_fusion("available_mean")
class MeanAvailableModalityFusion(AvailableModalityFusion):
    """Eq. (9) rescaled by ``M / |present|``: ``z = (M / |present|) sum_{m present} W_m x_m + b``."""

    normalize = "mean"
