"""One training loop, small enough to read in one sitting.

``fit`` trains a :class:`~mmlearn.models.MultimodalClassifier` (or any module
with the same ``forward_all``) with cross-entropy and two extension points:

- ``extra_losses``: callables ``term(model, out, batch) -> Tensor`` added to the
  loss (``out`` is the :class:`~mmlearn.models.MultimodalOutput`, ``batch`` the
  :class:`~mmlearn.data.Batch`), e.g. unimodal losses or a regulariser;
- ``grad_hook``: ``hook(model, out, batch, step)`` called between ``backward()``
  and ``optimizer.step()``; it may rescale ``p.grad`` per modality (OGM-GE, MMPareto);
- ``before_backward``: ``hook(model, out, batch, step)`` called after the loss and
  before ``backward()``, for methods that set a gradient scale from the labels of
  the current batch inside the graph (AGM).

Seeded and deterministic on CPU: the same ``seed`` and initial weights give the
same trained weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data.batch import Batch, as_batch

ExtraLoss = Callable[[nn.Module, object, Batch], Tensor]
GradHook = Callable[[nn.Module, object, Batch, int], None]


def _forward(model: nn.Module, batch: Batch):
    if hasattr(model, "forward_all"):
        return model.forward_all(batch.inputs, batch.present)
    return model(batch.inputs, batch.present)


def _logits(out) -> Tensor:
    return out.logits if hasattr(out, "logits") else out


def minibatches(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterable[Tensor]:
    """Row indices of each minibatch: a seeded permutation when ``generator`` is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


@torch.no_grad()
def predict(model: nn.Module, data, *, batch_size: int = 1024, device=None) -> Tensor:
    """Logits for every row of ``data`` (a Batch, ``(inputs, y)`` or a dataset), on CPU."""
    batch = as_batch(data)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        chunks = [
            _logits(_forward(model, batch.index(idx).to(device))).cpu()
            for idx in minibatches(batch.size, batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def evaluate(model: nn.Module, data, *, batch_size: int = 1024, device=None) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data``."""
    batch = as_batch(data)
    logits = predict(model, batch, batch_size=batch_size, device=device)
    return {
        "loss": float(F.cross_entropy(logits, batch.y)),
        "accuracy": float((logits.argmax(dim=1) == batch.y).float().mean()),
    }


def fit(
    model: nn.Module,
    train,
    eval_data=None,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: str | Callable = "adam",
    seed: int = 0,
    device=None,
    progress: bool = True,
    extra_losses: Sequence[ExtraLoss] = (),
    grad_hook: GradHook | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    on_epoch_end: Callable[[nn.Module, int, dict], None] | None = None,
    train_transform: Callable[[Batch, int], Batch] | None = None,
    before_backward: GradHook | None = None,
) -> dict[str, list]:
    """Train ``model`` on ``train`` and return the per-epoch history.

    ``train`` / ``eval_data``: a :class:`~mmlearn.data.Batch`, an
    ``(inputs, y[, present])`` tuple or a ``datasets.Dataset``. The history is a
    dict of lists: ``epoch``, ``train_loss`` (mean over minibatches of the total
    loss, extra terms included), ``train_acc``, and with ``eval_data``
    ``eval_loss`` and ``eval_acc`` (plain cross-entropy and accuracy).
    ``optimizer``: ``"adam"``, ``"sgd"`` (momentum 0.9) or a callable
    ``params -> torch.optim.Optimizer``. ``on_epoch_end(model, epoch, history)``
    lets callers record more (e.g. linear probes per epoch).
    ``train_transform(batch, step) -> batch`` changes each training minibatch,
    e.g. modality dropout with :func:`mmlearn.data.drop_modalities` seeded by ``step``.
    ``before_backward(model, out, batch, step)`` runs after the loss is formed and
    before ``loss.backward()``.
    """
    if epochs < 0 or batch_size <= 0:
        raise ValueError(f"epochs must be >= 0 and batch_size > 0, got {epochs} and {batch_size}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    model.to(device)
    train_batch = as_batch(train)
    eval_batch = as_batch(eval_data) if eval_data is not None else None
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    elif callable(optimizer):
        opt = optimizer(model.parameters())
    else:
        raise ValueError(f"optimizer must be 'adam', 'sgd' or a callable, got {optimizer!r}")

    torch.manual_seed(seed)  # dropout and any sampling inside the model
    shuffle = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"epoch": [], "train_loss": [], "train_acc": []}
    if eval_batch is not None:
        history.update(eval_loss=[], eval_acc=[])
    step = 0
    bar = tqdm(range(1, epochs + 1), desc="training", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        total_loss, correct = 0.0, 0
        for idx in minibatches(train_batch.size, batch_size, shuffle):
            batch = train_batch.index(idx)
            if train_transform is not None:
                batch = train_transform(batch, step)
            batch = batch.to(device)
            out = _forward(model, batch)
            logits = _logits(out)
            loss = loss_fn(logits, batch.y)
            for term in extra_losses:
                loss = loss + term(model, out, batch)
            opt.zero_grad(set_to_none=True)
            if before_backward is not None:
                before_backward(model, out, batch, step)
            loss.backward()
            if grad_hook is not None:
                grad_hook(model, out, batch, step)
            opt.step()
            step += 1
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.detach().argmax(dim=1) == batch.y).sum())
        history["epoch"].append(epoch)
        history["train_loss"].append(total_loss / train_batch.size)
        history["train_acc"].append(correct / train_batch.size)
        if eval_batch is not None:
            scores = evaluate(model, eval_batch, device=device)
            history["eval_loss"].append(scores["loss"])
            history["eval_acc"].append(scores["accuracy"])
            bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}", eval_acc=f"{scores['accuracy']:.3f}")
        if on_epoch_end is not None:
            on_epoch_end(model, epoch, history)
    return history


def subset_accuracies(model: nn.Module, data, subsets: Sequence[Sequence[str]] | None = None,
                      *, device=None) -> dict[str, float]:
    """Accuracy when only each subset of modalities is present (the rest zero-filled, marked absent).

    Default subsets: each modality alone, then all together. Keys join names with
    ``+``: ``{"image": 0.71, "audio": 0.64, "image+audio": 0.93}``.
    """
    batch = as_batch(data)
    names = batch.modalities
    if subsets is None:
        subsets = [[m] for m in names] + ([names] if len(names) > 1 else [])
    out = {}
    for subset in subsets:
        for m in subset:
            if m not in names:
                raise ValueError(f"unknown modality {m!r} in subset {list(subset)}; expected one of {names}")
        present = {m: torch.full((batch.size,), m in subset, dtype=torch.bool) for m in names}
        inputs = {m: x if m in subset else torch.zeros_like(x) for m, x in batch.inputs.items()}
        out["+".join(subset)] = evaluate(model, Batch(inputs, batch.y, present), device=device)["accuracy"]
    return out
