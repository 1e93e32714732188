"""Early fusion, survey Eq. (4)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .base import Fusion, register_fusion

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "identity": nn.Identity}


@register_fusion("early")
class EarlyFusion(Fusion):
    """Early fusion of input-level features, survey Eq. (4)::

        h_fused = f( sum_m W_m x_m + b )

    One weight matrix ``W_m`` per modality, one shared bias ``b``, activation
    ``f``. The sum of per-modality projections equals a single linear layer on
    the concatenation ``[x_1; ...; x_M]``; what makes the fusion *early* is where
    it sits: on (flattened) raw inputs, before any modality-specific network.
    An absent modality contributes ``W_m 0 = 0``.

    ``features[m]``: (B, in_dims[m]) -> (B, out_dim).
    """

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, activation: str = "relu"):
        super().__init__(in_dims, out_dim)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        # W_m, one per modality, no bias of their own
        self.proj = nn.ModuleDict({m: nn.Linear(d, out_dim, bias=False) for m, d in self.in_dims.items()})
        # b, shared
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.act = ACTIVATIONS[activation]()

    def forward(self, features, present=None) -> Tensor:
        x, _ = self.check(features, present)
        # sum_m W_m x_m + b: (B, out_dim)
        pre = sum(self.proj[m](x[m]) for m in self.modalities) + self.bias
        return self.act(pre)
