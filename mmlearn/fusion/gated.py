"""Gated fusion: learned per-sample modality weights (a multimodal gated unit)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .base import Fusion, register_fusion, stack_present


@register_fusion("gated")
class GatedFusion(Fusion):
    """Gated fusion after the Gated Multimodal Unit (Arevalo et al., "Gated
    Multimodal Units for Information Fusion", ICLR workshop 2017); survey
    Sec. IV, intermediate fusion with adaptive modality weights::

        h_m = tanh( W_m z_m + b_m )                                 (B, out_dim)
        a   = W_g [z_1; ...; z_M] + b_g                             (B, M)  gate logits
        g   = softmax over the *present* modalities of a            (B, M)  a_m = -inf where absent
        h   = sum_m g_m h_m                                         (B, out_dim)

    The GMU of the paper gates two modalities with one sigmoid per output
    unit; here each sample gets one scalar weight per modality (a softmax over
    M), which generalises to any M and can be read off: :meth:`gates` returns
    ``g`` so a notebook can show how much each sample leans on each modality.
    It is Eq. (5)'s ``sum_m w_m g_m(x_m)`` with weights that depend on the input.

    Missing-aware: absent modalities get gate 0 and the rest renormalise.
    ``features[m]``: (B, in_dims[m]) -> (B, out_dim).
    """

    handles_missing = True

    def __init__(self, in_dims: Mapping[str, int], out_dim: int):
        super().__init__(in_dims, out_dim)
        # W_m, b_m: one projection per modality
        self.proj = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in self.in_dims.items()})
        # W_g, b_g: the gate network on the concatenation
        self.gate = nn.Linear(sum(self.in_dims.values()), len(self.in_dims))

    def _gates(self, x: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        # a = W_g [z_1; ...; z_M] + b_g: (B, M)
        logits = self.gate(torch.cat([x[m] for m in self.modalities], dim=1))
        present = stack_present(mask, self.modalities, torch.bool)  # (B, M)
        # absent -> -inf, so softmax gives them exactly 0
        logits = logits.masked_fill(~present, float("-inf"))
        g = torch.softmax(logits, dim=1)
        # a sample with no modality at all: all -inf -> NaN; give it zero weights
        return torch.nan_to_num(g, nan=0.0)

    def gates(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> Tensor:
        """The per-sample modality weights ``g``: (B, M) in ``in_dims`` order, rows summing to 1."""
        x, mask = self.check(features, present)
        return self._gates(x, mask)

    def forward(self, features, present=None) -> Tensor:
        x, mask = self.check(features, present)
        g = self._gates(x, mask)  # (B, M)
        # h_m = tanh(W_m z_m + b_m): (B, M, out_dim)
        h = torch.stack([torch.tanh(self.proj[m](x[m])) for m in self.modalities], dim=1)
        # h = sum_m g_m h_m: (B, out_dim)
        return (g.unsqueeze(-1) * h).sum(dim=1)
