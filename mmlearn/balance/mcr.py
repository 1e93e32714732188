"""MCR: the multimodal competition regulariser of Kontras et al. ("Multimodal Competition
Regularizer", arXiv 2411.07335), in a simplified form. Not one of the survey's
equations; it addresses the modality competition of survey Sec. IV.

Each encoder is a player in a game. Modality ``i``'s contribution to the fused
prediction is estimated by how much the prediction changes when ``i``'s
features are shuffled across the batch (breaking their link to the sample)::

    JSD_i = mean_{perm, n} JSD( softmax f(z_i[perm], z_rest), softmax f(z_i, z_rest) )

and player ``j`` (encoder ``j``) minimises (README of the official code)::

    L_j = -( JSD_j + k * sum_{i != j} JSD_i ),   k = -1 greedy, 0 independent, +1 collaborative

with gradients reaching encoder ``j`` only through its own features (the
others are detached in player ``j``'s term).

What is simplified, and why:

1. Only the game term (the paper's L_MIPD) is kept. MCR's two auxiliary terms,
   a supervised contrastive loss between modalities (L_Con) and a conditional
   entropy bottleneck estimate (L_CEB), are left out: they regularise the
   representation, not the competition, and would double the code.
2. The mutual-information estimate is the code's permutation JSD itself (no
   separate MI estimator), with a fixed number of permutations drawn from
   the regulariser's own seeded generator.
3. The fusion and head get the gradient of every player's term (the official
   code's exact routing of those gradients is not documented; method notes 16b).
4. Every term is added to the loss (in the released code the terms are
   logged, and how they reach the optimiser is unclear).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_number
from .responses import fused_logits

GAMES = {"greedy": -1.0, "independent": 0.0, "collaborative": 1.0}


def jensen_shannon(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """Per-sample Jensen-Shannon divergence (nats) between softmax(p) and softmax(q): (B, C) x 2 -> (B,)."""
    log_p, log_q = F.log_softmax(p_logits, dim=1), F.log_softmax(q_logits, dim=1)
    # log m = log( (p + q) / 2 )
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(dim=1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(dim=1)
    return (0.5 * (kl_pm + kl_qm)).clamp_min(0.0)  # >= 0; clamp float round-off


class CompetitionRegularizer:
    """MCR's competition game (Kontras et al., 2024), simplified (see module docstring); an extra loss.

    ``weight``: lambda; ``game``: ``"greedy"`` (k = -1, the README example's choice), ``"independent"`` (0),
    ``"collaborative"`` (+1) or a number ``k``; ``num_permutations``: shuffles
    per modality per step. ``fit(model, data, **mcr.fit_kwargs())``.
    ``history`` records the contributions JSD_i per step.
    """

    def __init__(self, weight: float = 0.1, game: str | float = "greedy", num_permutations: int = 4,
                 seed: int = 0):
        weight = check_number(weight, "weight", low=0.0)
        if isinstance(game, str):
            if game not in GAMES:
                raise ValueError(f"game must be one of {sorted(GAMES)} or a number, got {game!r}")
            k = GAMES[game]
        else:
            k = check_number(game, "game")  # any finite k; -1 greedy, 0 independent, +1 collaborative
        num_permutations = check_number(num_permutations, "num_permutations", low=1, integer=True)
        seed = check_number(seed, "seed", low=0, integer=True)
        self.weight, self.k, self.num_permutations = weight, k, num_permutations
        self.generator = torch.Generator().manual_seed(seed)
        self.history: dict[str, list] = {"contribution": []}

    def fit_kwargs(self) -> dict:
        return {"extra_losses": [self]}

    def _permutations(self, n: int) -> list[Tensor]:
        return [torch.randperm(n, generator=self.generator) for _ in range(self.num_permutations)]

    def contributions(self, model: nn.Module, features: dict[str, Tensor], present=None,
                      permutations: list[Tensor] | None = None) -> dict[str, Tensor]:
        """``{i: JSD_i}`` (scalar tensors): mean JSD between the prediction with ``z_i`` shuffled and the original."""
        n = next(iter(features.values())).shape[0]
        perms = self._permutations(n) if permutations is None else permutations
        base = fused_logits(model, features, present)  # f(z): (B, C)
        out = {}
        for i in features:
            jsd = []
            for perm in perms:
                shuffled = {m: (z[perm] if m == i else z) for m, z in features.items()}  # z_i[perm]
                jsd.append(jensen_shannon(fused_logits(model, shuffled, present), base).mean())
            out[i] = torch.stack(jsd).mean()
        return out

    def __call__(self, model: nn.Module, out, batch) -> Tensor:
        names = list(out.features)
        if len(names) < 2:
            raise ValueError(f"the competition game needs at least two modalities, got {names}")
        n = out.logits.shape[0]
        perms = self._permutations(n)  # the same shuffles for every player
        total = out.logits.new_zeros(())
        record = {}
        for j in names:
            # player j: gradients reach encoder j only through z_j
            feats_j = {m: (z if m == j else z.detach()) for m, z in out.features.items()}
            jsd = self.contributions(model, feats_j, out.present, perms)
            # L_j = -(JSD_j + k sum_{i != j} JSD_i)
            total = total - (jsd[j] + self.k * sum(jsd[i] for i in names if i != j))
            record[j] = float(jsd[j].detach())
        self.history["contribution"].append(record)
        return self.weight * total
