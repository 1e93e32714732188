"""One training loop for the models of this package.

Every model here has ``objective(inputs, present=None, y=None) -> dict`` whose
``"loss"`` entry is the scalar to minimise (Eq. 1, Eq. 3 or the MFM loss);
:func:`fit_representation` minimises it with Adam over seeded minibatches.
(:func:`mmlearn.train.fit` is the classifier loop with cross-entropy; these
objectives are not a classification loss, so they get this small loop.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._checks import check_finite_loss, check_number
from ..data.batch import Batch, as_batch
from ..train import minibatches


def _scalar_terms(out: dict, prefix: str = "") -> dict[str, float]:
    """Flatten ``{"loss": t, "recon": {"image": t}}`` into ``{"loss": x, "recon/image": x}``."""
    flat = {}
    for k, v in out.items():
        if isinstance(v, dict):
            flat.update(_scalar_terms(v, f"{prefix}{k}/"))
        elif isinstance(v, torch.Tensor) and v.dim() == 0:
            flat[prefix + k] = float(v.detach())
    return flat


def fit_representation(
    model: nn.Module,
    train,
    *,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    device=None,
    on_epoch_end: Callable[[nn.Module, int, dict], None] | None = None,
    on_nonfinite: str = "raise",
) -> dict[str, list]:
    """Minimise ``model.objective`` on ``train``; return the per-epoch history.

    ``train``: a :class:`~mmlearn.data.Batch`, ``(inputs, y[, present])`` or a
    dataset. The history holds ``epoch`` and the row-weighted mean of every
    scalar term the objective returns (``loss``, ``recon/image``, ``kl`` ...).
    Seeded: the same ``seed`` and initial weights give the same trained model.
    The model is left in eval mode (posterior means, no modality dropout).

    A NaN or infinite loss stops training with
    :class:`~mmlearn._checks.NonFiniteLossError` naming the epoch and step
    (``on_nonfinite="raise"``); with ``on_nonfinite="warn"`` the step is
    skipped with a warning (no update, not counted in the history).
    """
    if not hasattr(model, "objective"):
        raise TypeError(f"{type(model).__name__} has no objective(inputs, present, y) method")
    epochs = check_number(epochs, "epochs", low=0, integer=True)
    batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
    lr = check_number(lr, "lr", low=0.0, low_open=True)
    weight_decay = check_number(weight_decay, "weight_decay", low=0.0)
    seed = check_number(seed, "seed", low=0, integer=True)
    if on_nonfinite not in ("raise", "warn"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    model.to(device)
    data: Batch = as_batch(train)
    if data.size == 0:
        raise ValueError("fit_representation: the training data is empty (0 rows)")
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    torch.manual_seed(seed)  # reparameterisation noise, modality dropout
    shuffle = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"epoch": []}
    for epoch in range(1, epochs + 1):
        model.train()
        sums: dict[str, float] = {}
        rows = 0
        for step, idx in enumerate(minibatches(data.size, batch_size, shuffle)):
            batch = data.index(idx).to(device)
            out = model.objective(batch.inputs, batch.present, batch.y)
            opt.zero_grad(set_to_none=True)
            if not check_finite_loss(out["loss"], epoch=epoch, step=step, where="fit_representation",
                                     on_nonfinite=on_nonfinite):
                continue  # "warn": skip this update, the parameters stay finite
            out["loss"].backward()
            opt.step()
            rows += len(idx)
            for k, v in _scalar_terms(out).items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
        history["epoch"].append(epoch)
        for k, v in sums.items():
            history.setdefault(k, []).append(v / rows)
        for k in ["loss", *history]:  # an epoch whose every step was skipped ("warn") records NaN
            if k != "epoch" and len(history.setdefault(k, [])) < len(history["epoch"]):
                history[k].append(float("nan"))
        if on_epoch_end is not None:
            on_epoch_end(model, epoch, history)
    model.eval()
    return history
