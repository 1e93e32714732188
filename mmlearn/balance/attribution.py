"""Attribution regularisation so that the model uses every modality; survey Eq. (7)
(Yerramilli, Tamarapalli, Francis, Nyberg, "Attribution Regularization for Multimodal
Paradigms", 2024).

Two forms, both usable as an extra loss of :func:`mmlearn.train.fit`:

- ``kind="gradient"``: survey Eq. (7) as printed,
  ``L_total = L_task + lambda * sum_m || dL_task / dx_m ||_2^2``, an
  input-gradient penalty (double backpropagation);
- ``kind="share"``: the attribution-share penalty of Yerramilli et al. as
  summarised in the method notes (Sec. 10, third-party summary, not checked
  against code): Grad x Input attributions of each modality's embedding,
  normalised to shares, pulled towards target shares ``r`` (uniform by default).

Eq. (7) makes the model *less* sensitive to every input (most to the dominant
one); the share form directly asks that each modality carry its share of the
decision, which is the stated goal "use all modalities".
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_number
from .responses import fused_logits

KINDS = ("gradient", "share")


def input_gradient_penalty(model: nn.Module, batch) -> Tensor:
    """Survey Eq. (7)'s penalty ``sum_m || d l / d x_m ||_2^2``, averaged over samples.

    ``l = CE(f(x), y)`` per sample; the gradient is taken with respect to each
    modality's input ``x_m`` (B, ...) with ``create_graph=True``, so the penalty
    itself can be differentiated (double backpropagation). Samples are
    independent, so ``d l_i / d x_{m,i} = B * dL/dx_{m,i}`` for the batch mean L.
    """
    inputs = {m: x.detach().requires_grad_(True) for m, x in batch.inputs.items()}
    forward = model.forward_all if hasattr(model, "forward_all") else model
    out = forward(inputs, batch.present)
    logits = out.logits if hasattr(out, "logits") else out
    # sum_i l_i: its gradient w.r.t. x_{m,i} is d l_i / d x_{m,i}
    total = F.cross_entropy(logits, batch.y, reduction="sum")
    grads = torch.autograd.grad(total, list(inputs.values()), create_graph=True)
    B = logits.shape[0]
    # (1/B) sum_i || d l_i / d x_{m,i} ||^2, summed over modalities
    return sum(g.pow(2).sum() for g in grads) / B


def attribution_shares(model: nn.Module, features: Mapping[str, Tensor], present=None, *,
                       target_class: str | Tensor = "max", detach_features: bool = True) -> Tensor:
    """Per-sample attribution shares ``a_bar`` (B, M) of each modality's embedding (Yerramilli et al.)::

        A_m   = d f_c(e) / d e_m  (.)  e_m          Grad x Input, (B, d_m)
        a_m   = || A_m ||_2                           (B,)
        a_bar = a_m / sum_j a_j                       (B, M), rows sum to 1

    ``c`` is the top class (``"max"``) or the given labels (a (B,) tensor).
    The gradient is built with ``create_graph=True`` so the shares are
    differentiable. With ``detach_features`` the embeddings are treated as
    constants, so a penalty on the shares trains only the fusion and the head
    (the summary says that the regulariser has its own optimiser over those parameters).
    """
    names = list(features)
    e = {m: (z.detach() if detach_features else z) for m, z in features.items()}
    e = {m: (z.requires_grad_(True) if not z.requires_grad else z) for m, z in e.items()}
    logits = fused_logits(model, e, present)  # (B, C)
    if isinstance(target_class, str):
        if target_class != "max":
            raise ValueError(f"target_class must be 'max' or a (B,) label tensor, got {target_class!r}")
        c = logits.argmax(dim=1)
    else:
        c = target_class
        if c.shape != logits.shape[:1]:
            raise ValueError(f"target_class has shape {tuple(c.shape)}; expected ({logits.shape[0]},)")
    f_c = logits.gather(1, c[:, None]).sum()
    grads = torch.autograd.grad(f_c, [e[m] for m in names], create_graph=True)
    # a_m = || d f_c / d e_m (.) e_m ||_2: (B,) per modality -> (B, M)
    a = torch.stack([(g * e[m]).norm(dim=1) for g, m in zip(grads, names)], dim=1)
    return a / a.sum(dim=1, keepdim=True).clamp_min(1e-12)


def share_penalty(shares: Tensor, target: Tensor) -> Tensor:
    """``R = mean_i sum_m | a_bar_{i,m} - r_m / sum_j r_j |``; 0 at the target shares, at most 2."""
    r = target / target.sum()
    return (shares - r).abs().sum(dim=1).mean()


def attribution_penalty(model: nn.Module, out, batch, *, kind: str = "share",
                        target: Mapping[str, float] | None = None, target_class: str = "max",
                        detach_features: bool = True) -> Tensor:
    """The attribution regulariser (without its weight lambda), as an extra-loss term.

    ``kind="gradient"``: survey Eq. (7), :func:`input_gradient_penalty`.
    ``kind="share"``: Yerramilli et al.'s share penalty on ``out.features``
    (:func:`attribution_shares`, :func:`share_penalty`), target shares ``target``
    (``{modality: r_m}``, uniform by default). Use :class:`AttributionRegularizer`
    to add ``lambda *`` this to training.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "gradient":
        return input_gradient_penalty(model, batch)
    names = list(out.features)
    if target is None:
        r = torch.ones(len(names))
    else:
        for m in target:
            if m not in names:
                raise ValueError(f"target: unknown modality {m!r}; expected one of {names}")
        r = torch.tensor([check_number(target.get(m, 0.0), f"target[{m!r}]", low=0.0) for m in names])
        if float(r.sum()) <= 0:
            raise ValueError(f"target shares must be non-negative with a positive sum, got {dict(target)}")
    tc = batch.y if target_class == "true" else target_class
    shares = attribution_shares(model, out.features, out.present, target_class=tc, detach_features=detach_features)
    return share_penalty(shares, r.to(shares))


class AttributionRegularizer:
    """``lambda * attribution_penalty(...)`` as an extra loss: ``fit(model, data, **reg.fit_kwargs())``."""

    def __init__(self, weight: float = 1.0, kind: str = "share", **options):
        weight = check_number(weight, "weight", low=0.0)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.weight, self.kind, self.options = weight, kind, options

    def fit_kwargs(self) -> dict:
        return {"extra_losses": [self]}

    def __call__(self, model: nn.Module, out, batch) -> Tensor:
        return self.weight * attribution_penalty(model, out, batch, kind=self.kind, **self.options)
