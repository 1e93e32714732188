"""MMPareto (Wei & Hu, "MMPareto: Boosting Multimodal Learning with Innocent Unimodal
Assistance", ICML 2024): per-encoder combination of the multimodal and unimodal
loss gradients, with the MGDA min-norm direction when the two conflict.

In the survey's terms (Sec. IV, Eq. 6) each encoder's gradient is a weighted
sum ``alpha_mm(t) g_mm + alpha_u(t) g_u`` whose time-varying weights come from
the two gradients themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_number


def _flat(g: Tensor | Sequence[Tensor]) -> Tensor:
    if isinstance(g, Tensor):
        return g.reshape(-1)
    if len(g) == 0:
        raise ValueError("empty list of gradients")
    return torch.cat([t.reshape(-1) for t in g])


def min_norm_2(g1: Tensor | Sequence[Tensor], g2: Tensor | Sequence[Tensor], *, eps: float = 0.0):
    """Min-norm point of the segment between two gradients (two-task MGDA, Sener & Koltun 2018)::

        c* = argmin_{c in [0, 1]} || c g1 + (1 - c) g2 ||^2
           = clip( (g2 - g1) . g2 / ||g1 - g2||^2, 0, 1 )

    ``g1, g2``: tensors of one shape, or lists of tensors (flattened and joined).
    Returns ``(c, d)`` with ``d = c g1 + (1 - c) g2`` flattened. When the minimum
    lies at an end of the segment, ``c`` is ``1 - eps`` or ``eps`` (MMPareto's
    code uses ``eps = 0.001``). Unless an end is hit, ``d . g1 = d . g2 = ||d||^2``,
    so ``d`` decreases both losses (a common descent direction) when ``d != 0``.
    """
    a, b = _flat(g1), _flat(g2)
    if a.shape != b.shape:
        raise ValueError(f"min_norm_2: gradients must have the same size, got {tuple(a.shape)} and {tuple(b.shape)}")
    eps = check_number(eps, "eps", low=0.0, high=0.5, high_open=True)
    v11, v12, v22 = float(a @ a), float(a @ b), float(b @ b)
    if v12 >= v11:  # g1 is the closest point to the origin
        c = 1.0 - eps
    elif v12 >= v22:  # g2 is
        c = eps
    else:
        c = (v22 - v12) / (v11 + v22 - 2.0 * v12)
    return c, c * a + (1.0 - c) * b


def pareto_weights(g_mm: Tensor | Sequence[Tensor], g_uni: Tensor | Sequence[Tensor]) -> tuple[float, float]:
    """MMPareto's weights ``(a_mm, a_uni)`` for one encoder.

    ``cos(g_mm, g_uni) > 0``: no conflict, ``(1/2, 1/2)``; otherwise the min-norm
    point (:func:`min_norm_2` with the code's ``eps = 0.001``).
    """
    a, b = _flat(g_mm), _flat(g_uni)
    cos = F.cosine_similarity(a, b, dim=0)
    if float(cos) > 0:
        return 0.5, 0.5
    c, _ = min_norm_2(a, b, eps=0.001)
    return c, 1.0 - c


def pareto_combine(g_mm: Tensor, g_uni: Tensor, weights: tuple[float, float], gamma: float = 1.5,
                   g_total: Tensor | None = None) -> Tensor:
    """MMPareto's gradient for one parameter tensor::

        g_new = 2 (a_mm g_mm + a_uni g_uni)
        g_new <- g_new * ||g_total|| / ||g_new||     if ||g_total|| > ||g_new||
        g     = gamma * g_new

    ``g_total`` is the gradient of the summed losses (``g_mm + g_uni`` by default).
    """
    gamma = check_number(gamma, "gamma", low=0.0, low_open=True)
    if g_mm.shape != g_uni.shape:
        raise ValueError(f"pareto_combine: shapes differ, {tuple(g_mm.shape)} vs {tuple(g_uni.shape)}")
    g_total = g_mm + g_uni if g_total is None else g_total
    new = 2.0 * (weights[0] * g_mm + weights[1] * g_uni)
    new_norm, total_norm = new.norm(), g_total.norm()
    if float(new_norm) > 0 and float(total_norm) > float(new_norm):
        new = new * (total_norm / new_norm)
    return gamma * new


class MMPareto:
    """MMPareto (Wei & Hu, ICML 2024) for :func:`mmlearn.train.fit`: ``fit(model, data, **MMPareto().fit_kwargs())``.

    Losses: ``L_mm = CE(fused logits)`` (fit's own loss) plus the unimodal
    ``L_u = CE(unimodal logits_u)`` added by :meth:`loss` (the model needs
    per-modality logits: ``MultimodalClassifier(..., unimodal_heads=True)`` as in
    the paper, or late fusion). For each encoder ``u`` with parameters theta_u:

    1. ``g_mm = dL_mm/dtheta_u`` and ``g_u = dL_u/dtheta_u`` (in :meth:`loss`, before backward);
    2. weights :func:`pareto_weights`: ``(1/2, 1/2)`` if ``cos(g_mm, g_u) > 0``, else MGDA min-norm;
    3. per parameter tensor :func:`pareto_combine`: ``2 (a_mm g_mm + a_u g_u)``, raised to the
       norm of the summed-loss gradient if smaller, times ``gamma = 1.5``.

    Heads and fusion keep the plain gradient of ``L_mm + sum_u L_u``. ``history``
    records the cosines and weights per step.
    """

    def __init__(self, gamma: float = 1.5, unimodal_weight: float = 1.0):
        self.gamma = check_number(gamma, "gamma", low=0.0, low_open=True)
        self.unimodal_weight = check_number(unimodal_weight, "unimodal_weight", low=0.0)
        self._grads: dict | None = None
        self.history: dict[str, list] = {"step": [], "cos": [], "weights": []}

    def fit_kwargs(self) -> dict:
        """Arguments for :func:`mmlearn.train.fit`."""
        return {"extra_losses": [self.loss], "grad_hook": self}

    def loss(self, model: nn.Module, out, batch) -> Tensor:
        """Extra loss ``sum_u L_u``; also records ``g_mm`` and ``g_u`` per encoder."""
        if not out.unimodal:
            raise ValueError(
                "MMPareto needs per-modality logits: build the model with unimodal_heads=True (or late fusion)"
            )
        names = list(model.encoders)
        y = batch.y
        loss_mm = F.cross_entropy(out.logits, y)
        losses = {m: self.unimodal_weight * F.cross_entropy(out.unimodal[m], y) for m in names}
        params = {m: [p for p in model.encoders[m].parameters() if p.requires_grad] for m in names}
        flat = [p for m in names for p in params[m]]
        # g_mm for every encoder in one pass, then g_u for encoder u only
        g_mm_all = torch.autograd.grad(loss_mm, flat, retain_graph=True, allow_unused=True)
        grads, start = {}, 0
        for m in names:
            n = len(params[m])
            g_mm = g_mm_all[start : start + n]
            start += n
            g_u = torch.autograd.grad(losses[m], params[m], retain_graph=True, allow_unused=True)
            grads[m] = (
                params[m],
                [g if g is not None else torch.zeros_like(p) for g, p in zip(g_mm, params[m])],
                [g if g is not None else torch.zeros_like(p) for g, p in zip(g_u, params[m])],
            )
        self._grads = grads
        return sum(losses.values())

    @torch.no_grad()
    def __call__(self, model: nn.Module, out, batch, step: int) -> None:
        if self._grads is None:
            raise RuntimeError("MMPareto's grad hook ran without its loss term: pass **mmpareto.fit_kwargs() to fit")
        cosines, weights = {}, {}
        for m, (params, g_mm, g_u) in self._grads.items():
            cosines[m] = float(F.cosine_similarity(_flat(g_mm), _flat(g_u), dim=0))
            weights[m] = pareto_weights(g_mm, g_u)
            for p, gm, gu in zip(params, g_mm, g_u):
                total = p.grad if p.grad is not None else gm + gu
                p.grad = pareto_combine(gm, gu, weights[m], self.gamma, g_total=total)
        self._grads = None
        self.history["step"].append(step)
        self.history["cos"].append(cosines)
        self.history["weights"].append(weights)
