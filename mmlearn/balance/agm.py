"""AGM: adaptive gradient modulation (Li et al., "Boosting Multi-modal Model Performance
with Adaptive Gradient Modulation", ICCV 2023); survey Eq. (6)::

    grad_theta L = sum_m alpha_m(t) * grad_theta L_m

The fused logits are split into one Shapley-style mono-modal response per
modality, ``f(a, b) = m_a + m_b``; the gradient that flows back through ``m_u``
is multiplied by a time-varying coefficient ``kappa_u(t)`` (the survey's
``alpha_m(t)``), set from how far each modality is ahead of its running average.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_number
from ..models import MultimodalOutput
from .responses import removed_logits, shapley_responses


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


class _ModulatedResponses(torch.autograd.Function):
    """Forward: ``f(a, b)`` itself (= m_a + m_b). Backward: the gradient that the sum
    ``kappa_a-hooked(m_a) + kappa_b-hooked(m_b)`` would send to f(a,b), f(0,b), f(a,0)::

        dL/df(a,b) = 1/2 (kappa_a + kappa_b) g
        dL/df(0,b) = 1/2 (kappa_b - kappa_a) g          (a removed)
        dL/df(a,0) = 1/2 (kappa_a - kappa_b) g          (b removed)

    Returning ``f(a, b)`` itself (not the float sum m_a + m_b) and sending no
    gradient to the removed passes when ``kappa_a = kappa_b`` makes ``alpha = 0``
    bit-for-bit plain training.
    """

    @staticmethod
    def forward(ctx, full, f_0b, f_a0, state):
        ctx.state = state
        return full.clone()

    @staticmethod
    def backward(ctx, g):
        k_a, k_b = ctx.state.current
        d_full = (0.5 * (k_a + k_b)) * g
        if k_a == k_b:
            return d_full, None, None, None
        return d_full, (0.5 * (k_b - k_a)) * g, (0.5 * (k_a - k_b)) * g, None


class AGM(nn.Module):
    """Adaptive gradient modulation (Li et al., ICCV 2023), survey Eq. (6), for two modalities.

    Wraps a :class:`~mmlearn.models.MultimodalClassifier` (registered as
    ``self.model``, so its parameters are this module's). Use with
    :func:`mmlearn.train.fit` as ``fit(agm, data, **agm.fit_kwargs())``.

    Each training step:

    1. responses (:func:`~mmlearn.balance.responses.shapley_responses`), (B, C) each:
       ``m_a = 1/2[f(a,b) - f(0,b) + f(a,0)]``, ``m_b = 1/2[f(a,b) - f(a,0) + f(0,b)]``,
       the removed-modality passes run in eval mode;
    2. scores ``s_u = mean_i -log softmax(m_u)_{y_i}`` (probabilities clipped at 1e-8);
    3. ratios ``r_a = exp(s_b - s_a)``, ``rbar_a = exp(sbar_b - sbar_a)`` (and symmetrically),
       where ``sbar_u`` is the running mean of the scores of the *previous* steps (0 before
       the first), coefficients ``kappa_u = exp(alpha * min(rbar_u - r_u, 10))``; only then
       the running means take this step's score, ``sbar_u <- sbar_u (t-1)/t + s_u / t``
       (the official code's order, ``run/CREMAD_main.py``; at step 1 ``rbar = 1``, so
       ``kappa`` is not 1 unless the two scores are equal);
    4. the gradient reaching ``m_u`` is multiplied by ``kappa_u`` (loss ``CE(f(a,b), y)``).

    Steps 2-3 run in :meth:`update` (``before_backward`` in ``fit``), step 4 in
    the backward pass. With ``clip_grad`` the grad hook also applies the
    official code's safeguard: if a fusion/head weight gradient leaves [-1, 1],
    all gradients are clipped to total norm 1. In eval mode the wrapper is the
    plain model. ``history`` records scores and coefficients per step.
    """

    def __init__(self, model: nn.Module, alpha: float = 1.0, *, clip_grad: bool = False, max_exponent: float = 10.0):
        super().__init__()
        if not hasattr(model, "forward_all") or not hasattr(model, "encoders"):
            raise TypeError(f"AGM wraps a MultimodalClassifier-like model, got {type(model).__name__}")
        if len(model.encoders) != 2:
            raise ValueError(
                f"AGM's Shapley responses are for exactly two modalities, the model has {list(model.encoders)}"
            )
        self.model = model
        self.alpha = check_number(alpha, "alpha", low=0.0)
        self.clip_grad = bool(clip_grad)
        self.max_exponent = check_number(max_exponent, "max_exponent", low=0.0)
        self.register_buffer("score_mean", torch.zeros(2, dtype=torch.float64))  # sbar_u
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # t
        self.current = (1.0, 1.0)  # kappa_a, kappa_b used by the next backward
        self.history: dict[str, list] = {"step": [], "scores": [], "coeff": []}

    @property
    def modalities(self) -> list[str]:
        return list(self.model.encoders)

    @property
    def encoders(self):
        return self.model.encoders

    def fit_kwargs(self) -> dict:
        """Arguments for :func:`mmlearn.train.fit`."""
        kwargs = {"before_backward": self.update}
        if self.clip_grad:
            kwargs["grad_hook"] = self.clip
        return kwargs

    def responses(self, inputs: Mapping[str, Tensor], present=None) -> dict[str, Tensor]:
        """The two mono-modal responses ``{m: (B, C)}`` (they sum to the fused logits)."""
        return shapley_responses(self.model, inputs, present)

    def forward_all(self, inputs: Mapping[str, Tensor], present=None) -> MultimodalOutput:
        out = self.model.forward_all(inputs, present)
        if not (self.training and torch.is_grad_enabled()):
            return out
        a, b = self.modalities
        removed = removed_logits(self.model, inputs, present)  # f(0,b), f(a,0): (B, C) each
        responses = shapley_responses(self.model, inputs, present, full=out.logits, removed=removed)
        logits = _ModulatedResponses.apply(out.logits, removed[a], removed[b], self)
        unimodal = {m: r.detach() for m, r in responses.items()}
        return MultimodalOutput(logits, out.features, out.fused, unimodal, out.present)

    def forward(self, inputs, present=None):
        return self.forward_all(inputs, present).logits

    @torch.no_grad()
    def coefficients(self, scores: Mapping[str, float]) -> dict[str, float]:
        """Return ``kappa`` per modality for this step's scores, then update the running means.

        Official order (``run/CREMAD_main.py`` of lihong2303/AGM_ICCV2023): the
        ratios ``rbar`` use the running means of the *previous* steps (0 before
        the first step), and only after the coefficients are set is this step's
        score folded into the means.

        A non-finite score (a diverged step, which the training loop stops or
        skips through its non-finite loss check) gives ``kappa = 1`` and leaves
        the running means untouched, so one bad step cannot poison later ones.
        """
        a, b = self.modalities
        s_a, s_b = float(scores[a]), float(scores[b])
        if not (math.isfinite(s_a) and math.isfinite(s_b)):
            return {a: 1.0, b: 1.0}
        sbar_a, sbar_b = self.score_mean.tolist()  # previous steps only (0, 0 at t = 1)
        # r_a = exp(s_b - s_a), rbar_a = exp(sbar_b - sbar_a); symmetric for b
        r = {a: _exp(s_b - s_a), b: _exp(s_a - s_b)}
        rbar = {a: _exp(sbar_b - sbar_a), b: _exp(sbar_a - sbar_b)}
        # kappa_u = exp(alpha * min(rbar_u - r_u, 10)); inf (not OverflowError) past float range, which the
        # training loop then reports as a non-finite gradient
        kappa = {m: _exp(self.alpha * min(rbar[m] - r[m], self.max_exponent)) for m in (a, b)}
        # only then: sbar_u <- sbar_u (t-1)/t + s_u/t
        self.steps += 1
        t = float(self.steps)
        s = torch.tensor([s_a, s_b], dtype=torch.float64, device=self.score_mean.device)
        self.score_mean.mul_((t - 1) / t).add_(s / t)
        return kappa

    @torch.no_grad()
    def update(self, model, out, batch, step: int) -> None:
        """``before_backward`` hook: scores of this batch -> coefficients -> running means."""
        if not out.unimodal:
            raise ValueError("AGM.update needs the responses from AGM.forward_all in training mode")
        y = batch.y
        # s_u = mean_i -log max(softmax(m_u)_{y_i}, 1e-8)
        scores = {
            m: float(-torch.log(F.softmax(r, dim=1).gather(1, y[:, None]).clamp_min(1e-8)).mean())
            for m, r in out.unimodal.items()
        }
        coeff = self.coefficients(scores)
        self.current = (coeff[self.modalities[0]], coeff[self.modalities[1]])
        self.history["step"].append(step)
        self.history["scores"].append(scores)
        self.history["coeff"].append(coeff)

    @torch.no_grad()
    def clip(self, model, out, batch, step: int) -> None:
        """Grad hook (``clip_grad=True``): if a fusion/head weight gradient leaves [-1, 1], clip all to norm 1."""
        inner = self.model
        heads = [p for mod in (inner.fusion, inner.head) for p in mod.parameters() if p.grad is not None]
        if any(bool((p.grad.abs() > 1).any()) for p in heads):
            torch.nn.utils.clip_grad_norm_(inner.parameters(), 1.0)
