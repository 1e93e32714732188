"""Intermediate (feature-level) fusion by concatenation."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .._checks import check_number
from .base import Fusion, register_fusion


@register_fusion("concat")
class ConcatFusion(Fusion):
    """Intermediate fusion: concatenate the encoders' features, then a fusion layer::

        h = ReLU( W [z_1; ...; z_M] + b )          z_m = encoder_m(x_m)

    The survey's Fig. 3 "intermediate fusion": modality-specific backbones
    first, a joint layer after. With ``hidden`` > 0 the fusion layer is a
    two-layer MLP (concat -> hidden -> out_dim). Absent features are zero-filled.

    ``features[m]``: (B, in_dims[m]) -> (B, out_dim).
    """

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__(in_dims, out_dim)
        hidden = check_number(hidden, "hidden", low=0, integer=True)
        dropout = check_number(dropout, "dropout", low=0.0, high=1.0, high_open=True)
        total = sum(self.in_dims.values())
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        if hidden > 0:
            layers += [nn.Linear(total, hidden), nn.ReLU(), nn.Linear(hidden, out_dim), nn.ReLU()]
        else:
            layers += [nn.Linear(total, out_dim), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, features, present=None) -> Tensor:
        x, _ = self.check(features, present)
        # [z_1; ...; z_M]: (B, sum_m d_m)
        z = torch.cat([x[m] for m in self.modalities], dim=-1)
        return self.net(z)
