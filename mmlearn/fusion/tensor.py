"""Tensor Fusion Network (TFN): the outer product of the modality vectors, each with a 1 appended."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .._checks import check_number
from .base import Fusion, register_fusion
from .early import ACTIVATIONS


def append_one(z: Tensor) -> Tensor:
    """``z~ = [1; z]``: (B, d) -> (B, d + 1). The constant keeps the lower-order terms in the product."""
    return torch.cat([torch.ones_like(z[:, :1]), z], dim=1)


@register_fusion("tensor")
class TensorFusion(Fusion):
    """Tensor fusion (Zadeh et al., "Tensor Fusion Network for Multimodal
    Sentiment Analysis", EMNLP 2017); survey Sec. IV, intermediate fusion (Table I)::

        z~_m = [1; z_m]                                   (B, d_m + 1)
        Z    = z~_1 (x) z~_2 (x) ... (x) z~_M             (B, d_1 + 1, ..., d_M + 1)
        h    = ReLU( W vec(Z) + b )                       W: (out_dim, prod_m (d_m + 1))

    Because of the appended 1, ``Z`` holds every unimodal term (``Z[0,..,0,:,0,..]
    = z_m``), every bimodal product ``z_a z_b^T``, every trimodal product, and so
    on up to the M-way product: the linear map after it can weigh interactions
    of any order, which is what lets TFN represent XOR-like synergy that an
    additive (late) combination cannot. The price: the width
    ``prod_m (d_m + 1)`` grows exponentially with the number of modalities
    (:class:`~mmlearn.fusion.LowRankFusion` avoids it).

    A modality that is absent (zero-filled by the base class) gives
    ``z~_m = [1; 0]``, so ``Z`` keeps exactly the terms of the other modalities.

    ``features[m]``: (B, in_dims[m]) for any M >= 1 -> (B, out_dim).
    Options: ``activation`` (``"relu"``), ``dropout`` on ``vec(Z)``.

    Size guard: the weight ``W`` has ``prod_m (d_m + 1) * out_dim`` entries
    (5 modalities of width 64 and ``out_dim`` 32 would need about 37 G weights,
    148 GB in float32). Construction refuses a ``W`` with more than
    :attr:`max_weights` entries (50 M, 200 MB in float32) with a ``ValueError``
    that gives the tensor width and the parameter count; raise the class
    attribute (``TensorFusion.max_weights = ...``) if you really mean it, or
    use :class:`~mmlearn.fusion.LowRankFusion`.
    """

    #: the largest weight ``W`` (entries) that construction accepts; a class attribute so it can be raised
    max_weights: int = 50_000_000

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, activation: str = "relu", dropout: float = 0.0):
        super().__init__(in_dims, out_dim)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        dropout = check_number(dropout, "dropout", low=0.0, high=1.0, high_open=True)
        self.tensor_dim = math.prod(d + 1 for d in self.in_dims.values())
        n_weights = self.tensor_dim * out_dim
        if n_weights > self.max_weights:
            widths = " x ".join(f"({d} + 1)" for d in self.in_dims.values())
            raise ValueError(
                f"TensorFusion: the tensor width prod_m (d_m + 1) = {widths} = {self.tensor_dim:,} times "
                f"out_dim {out_dim} needs {n_weights + out_dim:,} parameters "
                f"({4 * (n_weights + out_dim) / 1e9:.1f} GB in float32), over TensorFusion.max_weights = "
                f"{self.max_weights:,}; use LowRankFusion (make_fusion('low_rank', ...)), which needs "
                "rank * sum_m (d_m + 1) * out_dim, or smaller features, or raise TensorFusion.max_weights"
            )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # W, b: the linear map on vec(Z)
        self.linear = nn.Linear(self.tensor_dim, out_dim)
        self.act = ACTIVATIONS[activation]()

    def tensor(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> Tensor:
        """``vec(Z)``, the flattened outer product: (B, prod_m (d_m + 1)), row-major in ``in_dims`` order."""
        x, _ = self.check(features, present)
        names = self.modalities
        # z~_1: (B, d_1 + 1)
        z = append_one(x[names[0]])
        for m in names[1:]:
            zm = append_one(x[m])  # (B, d_m + 1)
            # (B, D) x (B, d_m + 1) -> (B, D, d_m + 1) -> (B, D * (d_m + 1))
            z = (z.unsqueeze(2) * zm.unsqueeze(1)).flatten(1)
        return z

    def forward(self, features, present=None) -> Tensor:
        z = self.tensor(features, present)  # vec(Z): (B, prod_m (d_m + 1))
        # h = ReLU(W vec(Z) + b): (B, out_dim)
        return self.act(self.linear(self.dropout(z)))
