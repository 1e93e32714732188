"""Adversarial attacks on chosen modalities, and adversarial training through ``fit`` (survey Eq. 11).

    L_adv = max_{||delta||_p <= eps} L(f(x + delta), y)                              (11)

:func:`fgsm` takes one step of size ``eps`` along the sign of the input
gradient (Goodfellow et al. 2015); :func:`pgd` iterates projected steps
(Madry et al. 2018) in the L-inf or L2 ball. Both attack only the modalities
named, only the rows where they are present, return a new inputs dict (other
modalities are the very same tensors), keep each attacked input inside its
valid range (``clamp``), and run the model in eval mode (restored afterwards),
without touching its parameters' ``.grad``.

The L2 ball is per modality and per row: ``||delta_m[b]||_2 <= eps_m``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_modality_dict, check_number, check_present, chosen_modalities, row_mask
from ..data.batch import Batch

NORMS = ("linf", "l2")


def _forward_logits(model: nn.Module, inputs, present) -> Tensor:
    if hasattr(model, "forward_all"):
        return model.forward_all(inputs, present).logits
    return model(inputs, present)


def _setup(inputs, y, epsilon, modalities, present, clamp, what):
    n = check_modality_dict(inputs, what=f"{what} inputs")
    if not isinstance(y, Tensor) or tuple(y.shape) != (n,):
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"{what}: labels y have shape {shape}; expected ({n},) to match the inputs")
    names = list(inputs)
    modalities = chosen_modalities(modalities, epsilon, names, what)
    for m in modalities:
        if not torch.is_floating_point(inputs[m]):
            raise TypeError(f"{what}: modality {m!r} has dtype {inputs[m].dtype}; only float inputs can be attacked")
    if isinstance(epsilon, Mapping):
        for m in epsilon:
            if m not in inputs:
                raise ValueError(f"{what} epsilon: unknown modality {m!r}; inputs have {sorted(inputs)}")
        eps = {m: check_number(epsilon.get(m, 0.0), f"{what} epsilon for modality {m!r}", low=0.0) for m in modalities}
    else:
        eps = {m: check_number(epsilon, f"{what} epsilon for modality {m!r}", low=0.0) for m in modalities}
    bounds: dict[str, tuple[float, float]] = {}
    if clamp is not None:
        if isinstance(clamp, Mapping):
            for m in clamp:
                if m not in inputs:
                    raise ValueError(f"{what} clamp: unknown modality {m!r}; inputs have {sorted(inputs)}")
            items = {m: clamp[m] for m in modalities if m in clamp and clamp[m] is not None}
        else:
            items = {m: clamp for m in modalities}
        for m, b in items.items():
            if len(b) != 2:
                raise ValueError(f"{what} clamp for modality {m!r} must be (low, high), got {b!r}")
            lo = check_number(b[0], f"{what} clamp low of {m!r}")
            hi = check_number(b[1], f"{what} clamp high of {m!r}")
            if lo > hi:
                raise ValueError(f"{what} clamp for modality {m!r}: low {lo} > high {hi}")
            bounds[m] = (lo, hi)
    mask = check_present(present, names, n, next(iter(inputs.values())).device)
    return list(modalities), eps, bounds, mask


def _input_gradients(model, inputs, y, present, attacked, loss_fn) -> dict[str, Tensor]:
    """d loss / d inputs[m] for the attacked modalities (model parameters' .grad untouched)."""
    leaves = {m: inputs[m].detach().clone().requires_grad_(True) for m in attacked}
    full = {m: leaves.get(m, x) for m, x in inputs.items()}
    with torch.enable_grad():
        loss = loss_fn(_forward_logits(model, full, present), y)
        grads = torch.autograd.grad(loss, [leaves[m] for m in attacked])
    return dict(zip(attacked, grads))


def _finish(x0: Tensor, x: Tensor, bound, keep: Tensor) -> Tensor:
    if bound is not None:
        x = x.clamp(*bound)
    return torch.where(row_mask(keep, x0), x, x0)  # absent rows untouched


class _EvalMode:
    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


def fgsm(
    model: nn.Module,
    inputs: Mapping[str, Tensor],
    y: Tensor,
    epsilon: float | Mapping[str, float],
    modalities: Sequence[str] | None = None,
    present: Mapping[str, Tensor] | None = None,
    clamp: tuple[float, float] | Mapping[str, tuple[float, float]] | None = None,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> dict[str, Tensor]:
    """Fast gradient sign method: ``x_m' = clamp(x_m + eps_m * sign(d L / d x_m))`` for each attacked ``m``.

    ``epsilon``: one number >= 0 or ``{modality: eps}``; ``modalities``: which to
    attack (default all, or the keys of an ``epsilon`` dict). ``clamp``: a valid
    range ``(low, high)`` for every attacked modality or ``{modality: (low, high)}``;
    default no clamp (AV-Digits images carry Gaussian pixel noise, so they are
    not confined to [0, 1]). Unattacked modalities are returned as the same
    tensor objects; rows where a modality is absent are never changed.
    """
    attacked, eps, bounds, mask = _setup(inputs, y, epsilon, modalities, present, clamp, "fgsm")
    with _EvalMode(model):
        grads = _input_gradients(model, inputs, y, present, attacked, loss_fn)
    out = dict(inputs)
    for m in attacked:
        x0 = inputs[m].detach()
        out[m] = _finish(x0, x0 + eps[m] * grads[m].sign(), bounds.get(m), mask[m])
    return out


def _l2_norm(d: Tensor) -> Tensor:
    """Per-row L2 norm, shaped to broadcast over ``d`` (B, 1, ..., 1)."""
    return d.reshape(d.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (d.dim() - 1)))


def pgd(
    model: nn.Module,
    inputs: Mapping[str, Tensor],
    y: Tensor,
    epsilon: float | Mapping[str, float],
    steps: int = 10,
    step_size: float | Mapping[str, float] | None = None,
    modalities: Sequence[str] | None = None,
    present: Mapping[str, Tensor] | None = None,
    *,
    norm: str = "linf",
    random_start: bool = True,
    seed: int = 0,
    clamp: tuple[float, float] | Mapping[str, tuple[float, float]] | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> dict[str, Tensor]:
    """Projected gradient descent on the loss (ascent), in the L-inf or L2 ball of radius ``eps`` (Eq. 11).

    For ``steps`` iterations, for every attacked modality at once::

        linf: x <- Proj_{||x - x0||_inf <= eps}(x + alpha * sign(g))
        l2:   x <- Proj_{||x - x0||_2  <= eps}(x + alpha * g / ||g||_2)     (per row)

    then clamp to the valid range. ``step_size`` ``alpha`` defaults to
    ``2.5 * eps / steps`` (Madry et al.). ``random_start``: begin at a uniform
    point of the L-inf ball, or a point of the L2 ball with a uniform random
    radius and direction, drawn from a generator seeded by ``seed``. Returns
    the last iterate. Other arguments as :func:`fgsm`.
    """
    if norm not in NORMS:
        raise ValueError(f"pgd: norm must be one of {NORMS}, got {norm!r}")
    steps = int(check_number(steps, "pgd steps", low=1, integer=True))
    attacked, eps, bounds, mask = _setup(inputs, y, epsilon, modalities, present, clamp, "pgd")
    if step_size is None:
        alpha = {m: 2.5 * eps[m] / steps for m in attacked}
    elif isinstance(step_size, Mapping):
        alpha = {m: check_number(step_size.get(m, 0.0), f"pgd step_size for {m!r}", low=0.0) for m in attacked}
    else:
        alpha = {m: check_number(step_size, "pgd step_size", low=0.0) for m in attacked}
    x0 = {m: inputs[m].detach() for m in attacked}
    g = torch.Generator(device=next(iter(inputs.values())).device).manual_seed(int(seed))

    def project(m: str, x: Tensor) -> Tensor:
        d = x - x0[m]
        if norm == "linf":
            d = d.clamp(-eps[m], eps[m])
        else:
            # scale rows outside the ball back onto its surface
            r = _l2_norm(d)
            d = d * torch.where(r > eps[m], eps[m] / r.clamp(min=1e-12), torch.ones_like(r))
        return _finish(x0[m], x0[m] + d, bounds.get(m), mask[m])

    x = {}
    for m in attacked:
        if random_start and eps[m] > 0:
            if norm == "linf":
                d = (torch.rand(x0[m].shape, generator=g, device=x0[m].device, dtype=x0[m].dtype) * 2 - 1) * eps[m]
            else:
                d = torch.randn(x0[m].shape, generator=g, device=x0[m].device, dtype=x0[m].dtype)
                radius = torch.rand((x0[m].shape[0],), generator=g, device=d.device, dtype=d.dtype) * eps[m]
                d = d / _l2_norm(d).clamp(min=1e-12) * row_mask(radius, d)
            x[m] = project(m, x0[m] + d)
        else:
            x[m] = x0[m].clone()
    with _EvalMode(model):
        for _ in range(steps):
            grads = _input_gradients(model, {**inputs, **x}, y, present, attacked, loss_fn)
            for m in attacked:
                if norm == "linf":
                    step = alpha[m] * grads[m].sign()
                else:
                    step = alpha[m] * grads[m] / _l2_norm(grads[m]).clamp(min=1e-12)
                x[m] = project(m, x[m] + step)
    out = dict(inputs)
    out.update(x)
    return out


def attack(model, inputs, y, method: str, epsilon, **options) -> dict[str, Tensor]:
    """``fgsm`` or ``pgd`` by name (for sweeps)."""
    if method == "fgsm":
        return fgsm(model, inputs, y, epsilon, **options)
    if method == "pgd":
        return pgd(model, inputs, y, epsilon, **options)
    raise ValueError(f"unknown attack {method!r}; expected 'fgsm' or 'pgd'")


def adversarial_training_transform(
    model: nn.Module,
    epsilon: float | Mapping[str, float],
    *,
    method: str = "fgsm",
    modalities: Sequence[str] | None = None,
    clamp=None,
    **options,
):
    """A ``train_transform(batch, step) -> batch`` for :func:`mmlearn.train.fit`: adversarial training.

    Each minibatch is replaced by its adversarial version under the current
    weights (``method`` ``"fgsm"`` or ``"pgd"``; PGD seeded by the step), so
    ``fit`` minimises ``E[max_{||delta|| <= eps} L(f(x + delta), y)]``, Eq. (11)
    with the inner max approximated by the attack (Madry et al. 2018). Use
    :func:`adversarial_loss_term` instead to add the adversarial loss to the
    clean one.
    """
    if method not in ("fgsm", "pgd"):
        raise ValueError(f"unknown attack {method!r}; expected 'fgsm' or 'pgd'")

    def transform(batch: Batch, step: int) -> Batch:
        device = next(model.parameters()).device
        b = batch.to(device)
        extra = {"seed": int(step)} if method == "pgd" else {}
        adv = attack(model, b.inputs, b.y, method, epsilon, modalities=modalities, present=b.present,
                     clamp=clamp, **extra, **options)
        return Batch({m: v.detach() for m, v in adv.items()}, b.y, b.present)

    return transform


def adversarial_loss_term(epsilon, *, weight: float = 1.0, method: str = "fgsm", modalities=None, clamp=None,
                          **options):
    """An ``extra_losses`` term for :func:`mmlearn.train.fit`: ``weight * L(f(x_adv), y)``.

    With ``fit``'s clean cross-entropy this trains on ``L(f(x), y) + weight * L(f(x_adv), y)``
    (Goodfellow et al.'s mixed objective with ``weight = 1``: their ``alpha = 0.5`` up to a factor 2).
    """
    weight = check_number(weight, "weight", low=0.0)
    if method not in ("fgsm", "pgd"):
        raise ValueError(f"unknown attack {method!r}; expected 'fgsm' or 'pgd'")

    def term(model, out, batch) -> Tensor:
        adv = attack(model, batch.inputs, batch.y, method, epsilon, modalities=modalities, present=batch.present,
                     clamp=clamp, **options)
        adv = {m: v.detach() for m, v in adv.items()}
        was = model.training
        logits = _forward_logits(model, adv, batch.present)
        model.train(was)
        return weight * F.cross_entropy(logits, batch.y)

    return term
