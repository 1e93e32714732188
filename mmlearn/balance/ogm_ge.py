"""OGM-GE: on-the-fly gradient modulation with generalization enhancement (Peng et al., CVPR 2022).

Survey Sec. IV, Eq. (6) family: the encoder of the modality that is currently
ahead gets its gradient scaled down, so the other one has time to learn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .._checks import check_number
from .responses import is_linear_classifier, shapley_responses, split_logits

GE_MODES = ("restore", "code", None)


def ogm_coefficients(scores: Mapping[str, float], alpha: float) -> dict[str, float]:
    """Modulation coefficients of OGM-GE, paper Eq. (10), for two modalities ``u, v``::

        rho_u = s_u / s_v
        k_u   = 1 - tanh(alpha * rho_u)   if rho_u > 1      (u is ahead: slow it down)
              = 1                         otherwise         (the weaker modality is never touched)

    ``scores[m] = s_m = sum_i softmax(out_m)_{i, y_i}`` (a float per modality).
    At ``rho -> 1+`` the coefficient jumps from 1 to ``1 - tanh(alpha)``, as in the paper.
    """
    names = list(scores)
    if len(names) != 2:
        raise ValueError(f"OGM-GE compares exactly two modalities, got {names}")
    alpha = check_number(alpha, "alpha", low=0.0)
    u, v = names
    s_u, s_v = float(scores[u]), float(scores[v])
    if not (s_u > 0 and s_v > 0 and math.isfinite(s_u) and math.isfinite(s_v)):
        raise ValueError(f"scores must be positive and finite (sums of probabilities), got {dict(scores)}")
    rho = {u: s_u / s_v, v: s_v / s_u}
    return {m: (1.0 - math.tanh(alpha * rho[m])) if rho[m] > 1 else 1.0 for m in names}


class OGMGE:
    """On-the-fly gradient modulation with generalization enhancement (Peng et al., CVPR 2022).

    A gradient hook for :func:`mmlearn.train.fit` (``grad_hook=OGMGE(alpha)``).
    After ``backward()``, for two modalities ``u, v``:

    1. per-modality logits from the split of the fused linear classifier
       (:func:`~mmlearn.balance.responses.split_logits`): ``out_u = W_u z_u + b/2``,
       each (B, C); with ``scores="shapley"`` AGM's responses instead, for any fusion;
    2. scores ``s_u = sum_i softmax(out_u)_{i, y_i}``, ratio ``rho_u = s_u / s_v``;
    3. coefficients :func:`ogm_coefficients` (paper Eq. 10): only the modality
       with ``rho > 1`` is slowed, by ``k = 1 - tanh(alpha * rho)``;
    4. every gradient of that modality's encoder becomes ``k * g + h`` with
       Gaussian "generalization enhancement" noise ``h``.

    ``ge`` chooses the noise ``h``:

    - ``"restore"`` (default): ``h ~ N(0, (1 - k^2) std(g)^2)`` on the slowed
      encoder only, where ``std(g)`` is the spread of that gradient tensor's
      entries (the official code's proxy for the gradient-noise scale). Scaling
      a stochastic gradient by ``k`` scales its noise variance by ``k^2``; this
      puts the lost variance back. It vanishes when ``k = 1``, so ``alpha = 0``
      is exactly plain training (the paper adds ``N(0, std(g)^2)`` whatever ``k``).
    - ``"code"``: as the official code, ``h ~ N(0, std(g)^2)`` added to every
      encoder gradient of both modalities at every step, modulated or not
      (training then differs from plain training even at ``alpha = 0``).
    - ``None``: plain OGM, no noise.

    The official code modulates only convolution weights; here every parameter
    of the encoder is modulated (the encoders here are small MLPs/CNNs).
    Noise is drawn from the hook's own seeded generator, so the global random
    state (dropout, shuffling) is the same as in plain training. ``history``
    records the scores, ratios and coefficients of every step.
    """

    def __init__(self, alpha: float = 0.8, *, ge: str | None = "restore", scores: str = "linear", seed: int = 0):
        alpha = check_number(alpha, "alpha", low=0.0)
        seed = check_number(seed, "seed", low=0, integer=True)
        if ge not in GE_MODES:
            raise ValueError(f"ge must be one of {GE_MODES}, got {ge!r}")
        if scores not in ("linear", "shapley"):
            raise ValueError(f"scores must be 'linear' or 'shapley', got {scores!r}")
        self.alpha = float(alpha)
        self.ge = ge
        self.scores = scores
        self.generator = torch.Generator().manual_seed(seed)
        self.history: dict[str, list] = {"step": [], "scores": [], "ratio": [], "coeff": []}

    def fit_kwargs(self) -> dict:
        """Arguments for :func:`mmlearn.train.fit`."""
        return {"grad_hook": self}

    @torch.no_grad()
    def modality_scores(self, model: nn.Module, out, batch) -> dict[str, float]:
        """``s_m = sum_i softmax(out_m)_{i, y_i}`` per modality (a float each)."""
        if self.scores == "linear":
            if not is_linear_classifier(model):
                raise ValueError(
                    f"OGM-GE's scores come from the split of a fused linear classifier, but this model's "
                    f"fusion is {type(model.fusion).__name__}; use LateFusion or EarlyFusion(activation='identity'), "
                    "or OGMGE(scores='shapley')"
                )
            # out_m = W_m z_m + b/M: (B, C) per modality
            per_modality = split_logits(model, out.features, out.present)
        else:
            per_modality = shapley_responses(model, batch.inputs, batch.present, full=out.logits)
        y = batch.y
        # s_m = sum_i softmax(out_m)_{i, y_i}
        return {m: float(torch.softmax(o, dim=1).gather(1, y[:, None]).sum()) for m, o in per_modality.items()}

    def _noise(self, g: Tensor, std: float) -> Tensor:
        return (torch.randn(g.shape, generator=self.generator) * std).to(device=g.device, dtype=g.dtype)

    @torch.no_grad()
    def __call__(self, model: nn.Module, out, batch, step: int) -> None:
        names = list(model.encoders)
        if len(names) != 2:
            raise ValueError(f"OGM-GE compares exactly two modalities, this model has {names}")
        scores = self.modality_scores(model, out, batch)
        coeff = ogm_coefficients(scores, self.alpha)
        u, v = names
        self.history["step"].append(step)
        self.history["scores"].append(scores)
        self.history["ratio"].append(scores[u] / scores[v])
        self.history["coeff"].append(coeff)
        for m in names:
            k = coeff[m]
            for p in model.encoders[m].parameters():
                if p.grad is None:
                    continue
                g = p.grad
                std = float(g.std(correction=0)) if g.numel() > 1 else 0.0
                if k < 1.0:
                    g.mul_(k)  # k * g(theta_m)
                    if self.ge == "restore":
                        # h ~ N(0, (1 - k^2) std(g)^2): the gradient-noise variance removed by k
                        g.add_(self._noise(g, math.sqrt(1.0 - k * k) * std))
                if self.ge == "code":
                    # h ~ N(0, std(g)^2) on every encoder gradient, as in the official code
                    g.add_(self._noise(g, std + 1e-8))
