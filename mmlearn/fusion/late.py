"""Late (decision-level) fusion, survey Eq. (5)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .base import Fusion, check_weights, register_fusion, stack_present


@register_fusion("late")
class LateFusion(Fusion):
    """Late fusion of per-modality predictions, survey Eq. (5)::

        y_fused = sum_m w_m * g_m(x_m; theta_m)

    ``g_m`` is a linear prediction head on modality ``m``'s features (the
    encoder before it completes the per-modality model). ``weights``:

    - ``"learned"`` (default): ``w = softmax(a)`` with a learnable ``a`` (M,);
    - ``"uniform"``: ``w_m = 1 / M``, fixed;
    - a dict ``{modality: w_m}``: fixed weights as given.

    Missing-aware: the weights of absent modalities are set to zero and the rest
    renormalised to sum to one, so a sample is predicted from what it has.
    The output is already a prediction (``outputs_predictions``), so ``out_dim``
    is the number of classes and a classifier adds no head after it.
    Because the combination is additive across modalities, late fusion cannot
    represent labels that need an interaction, such as XOR (notebook 03).

    ``features[m]``: (B, in_dims[m]) -> (B, out_dim).
    """

    outputs_predictions = True
    handles_missing = True

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, weights: str | Mapping[str, float] = "learned"):
        super().__init__(in_dims, out_dim)
        # g_m: one prediction head per modality
        self.heads = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in self.in_dims.items()})
        if isinstance(weights, Mapping):
            # each w_m finite and >= 0, positive sum (NaN rejected, not let through by ``w < 0``)
            w = check_weights(weights, self.modalities, "weights")
            self.register_buffer("fixed_weights", w / w.sum())
            self.logits = None
        elif weights == "uniform":
            self.register_buffer("fixed_weights", torch.full((len(self.in_dims),), 1.0 / len(self.in_dims)))
            self.logits = None
        elif weights == "learned":
            self.fixed_weights = None
            # a: softmax(a) = w, starts uniform
            self.logits = nn.Parameter(torch.zeros(len(self.in_dims)))
        else:
            raise ValueError(f"weights must be 'learned', 'uniform' or a dict, got {weights!r}")

    def modality_weights(self, present: Mapping[str, Tensor] | None = None, batch: int = 1) -> Tensor:
        """``(B, M)`` weights w_m per sample, zero for absent modalities, rows summing to one."""
        base = self.fixed_weights if self.logits is None else torch.softmax(self.logits, dim=0)
        w = base.expand(batch, -1)
        if present is not None:
            # absent -> weight exactly 0 (selected, not multiplied), then renormalise over the present ones
            w = torch.where(stack_present(present, self.modalities, torch.bool), w, torch.zeros_like(w))
            w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return w

    def predictions(self, features, present=None) -> dict[str, Tensor]:
        """Per-modality predictions ``g_m(x_m)``, each (B, out_dim)."""
        x, _ = self.check(features, present)
        return {m: self.heads[m](x[m]) for m in self.modalities}

    def forward(self, features, present=None) -> Tensor:
        x, mask = self.check(features, present)
        # g_m(x_m): (B, M, out_dim)
        preds = torch.stack([self.heads[m](x[m]) for m in self.modalities], dim=1)
        # w_m: (B, M, 1)
        w = self.modality_weights(mask if present is not None else None, preds.shape[0]).unsqueeze(-1)
        # sum_m w_m g_m(x_m): (B, out_dim); a modality with weight 0 (absent) is dropped by selection
        return torch.where(w > 0, w * preds, torch.zeros_like(preds)).sum(dim=1)
