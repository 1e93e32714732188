"""Per-modality responses of a fused classifier: what each modality contributes to the logits.

Two ways to split the fused logits ``f(x_1, x_2)`` (B, C) into one response per
modality, both used by the balance methods:

- :func:`split_logits` (OGM-GE, Peng et al. CVPR 2022): when the classifier is
  *linear in the features*, ``f = sum_m W_m z_m + b``, modality ``m``'s response
  is ``W_m z_m + b / M``. For a concatenation head ``W = [W_1 | W_2]`` this is
  the paper's ``out_a = W_a phi_a + b/2``.
- :func:`shapley_responses` (AGM, Li et al. ICCV 2023): for any fusion, run the
  model with one modality's *input* zeroed and take the two-player Shapley value
  plus half of ``f(0, 0)``, so that the two responses add up to ``f(x_1, x_2)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..fusion import EarlyFusion, LateFusion


def fused_logits(model: nn.Module, features: Mapping[str, Tensor], present=None) -> Tensor:
    """Logits from given encoder features: ``head(fusion(features))``, (B, C)."""
    return model.head(model.fusion(features, present))


def _check_model(model: nn.Module, what: str) -> None:
    for attr in ("encoders", "fusion", "head"):
        if not hasattr(model, attr):
            raise TypeError(
                f"{what} needs a MultimodalClassifier-like model with .encoders, .fusion and .head; "
                f"{type(model).__name__} has no .{attr}"
            )


def is_linear_classifier(model: nn.Module) -> bool:
    """True when the logits are an affine function of the encoder features (so they split per modality)."""
    fusion = getattr(model, "fusion", None)
    if isinstance(fusion, LateFusion):
        return True
    return (
        isinstance(fusion, EarlyFusion)
        and isinstance(fusion.act, nn.Identity)
        and isinstance(getattr(model, "head", None), nn.Linear)
    )


def split_logits(model: nn.Module, features: Mapping[str, Tensor], present=None) -> dict[str, Tensor]:
    """Split the logits of a classifier that is linear in the features: ``{m: (B, C)}``, summing to the logits.

    - Late fusion (survey Eq. 5), ``f = sum_m w_m g_m(z_m)``: response ``w_m g_m(z_m)``.
    - Early fusion with identity activation followed by a linear head,
      ``f = V (sum_m W_m z_m + b) + c``: response ``V W_m z_m + (V b + c) / M``.

    Any other fusion is not linear in the features; use :func:`shapley_responses`.
    """
    _check_model(model, "split_logits")
    fusion = model.fusion
    x, mask = fusion.check(features, present)
    names = fusion.modalities
    batch = next(iter(x.values())).shape[0]
    if isinstance(fusion, LateFusion):
        # w_m per sample: (B, M)
        w = fusion.modality_weights(mask if present is not None else None, batch)
        # w_m g_m(z_m): (B, 1) * (B, C)
        return {m: w[:, i : i + 1] * fusion.heads[m](x[m]) for i, m in enumerate(names)}
    if is_linear_classifier(model):
        head = model.head
        # the shared bias V b + c, split evenly: (C,) / M
        shared = head(fusion.bias) / len(names)
        # V W_m z_m: (B, d_m) -> (B, d) -> (B, C)
        return {m: fusion.proj[m](x[m]) @ head.weight.T + shared for m in names}
    raise ValueError(
        f"split_logits needs logits linear in the features (LateFusion, or EarlyFusion(activation='identity') "
        f"with a linear head); this model uses {type(fusion).__name__}. "
        "Use shapley_responses (scores='shapley') for other fusions."
    )


def zero_modality(inputs: Mapping[str, Tensor], modality: str) -> dict[str, Tensor]:
    """The same inputs with ``modality``'s input replaced by zeros (AGM's "removed" modality)."""
    if modality not in inputs:
        raise ValueError(f"unknown modality {modality!r}; expected one of {sorted(inputs)}")
    return {m: torch.zeros_like(x) if m == modality else x for m, x in inputs.items()}


def _logits(out) -> Tensor:
    return out.logits if hasattr(out, "logits") else out


def removed_logits(model: nn.Module, inputs: Mapping[str, Tensor], present=None) -> dict[str, Tensor]:
    """``{m: f(x with modality m zeroed)}``, each (B, C), computed in eval mode (as AGM does)."""
    was_training = model.training
    model.eval()
    try:
        forward = model.forward_all if hasattr(model, "forward_all") else model
        return {m: _logits(forward(zero_modality(inputs, m), present)) for m in inputs}
    finally:
        model.train(was_training)


def shapley_responses(
    model: nn.Module,
    inputs: Mapping[str, Tensor],
    present=None,
    full: Tensor | None = None,
    removed: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """AGM's mono-modal responses for two modalities ``a, b`` (Li et al. ICCV 2023), each (B, C)::

        m_a = 1/2 [ f(a, b) - f(0, b) + f(a, 0) ]
        m_b = 1/2 [ f(a, b) - f(a, 0) + f(0, b) ]

    (the two-player Shapley value of each modality plus ``f(0, 0) / 2``), so
    ``m_a + m_b = f(a, b)``. ``full`` is ``f(a, b)`` if already computed;
    ``removed`` the output of :func:`removed_logits` if already computed.
    """
    names = list(inputs)
    if len(names) != 2:
        raise ValueError(f"Shapley responses are defined here for exactly two modalities, got {names}")
    a, b = names
    if full is None:
        forward = model.forward_all if hasattr(model, "forward_all") else model
        full = _logits(forward(inputs, present))
    if removed is None:
        removed = removed_logits(model, inputs, present)
    f_0b, f_a0 = removed[a], removed[b]  # f(0, b): a removed; f(a, 0): b removed
    return {
        # m_a = 1/2 [f(a,b) - f(0,b) + f(a,0)]
        a: 0.5 * (full - f_0b + f_a0),
        # m_b = 1/2 [f(a,b) - f(a,0) + f(0,b)]
        b: 0.5 * (full - f_a0 + f_0b),
    }
