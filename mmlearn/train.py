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

No silent NaN: ``fit`` stops with :class:`~mmlearn._checks.NonFiniteLossError`
(naming the epoch and the step) as soon as a loss or a gradient is NaN/inf
(``on_nonfinite="warn"`` skips that update and goes on instead), ``evaluate``
refuses to score NaN/inf logits, and empty data sets are refused with a
``ValueError`` (``predict`` returns an empty ``(0, C)`` tensor).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._checks import NonFiniteLossError, check_finite, check_finite_loss, check_number
from .data.batch import Batch, as_batch, check_labels

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


def _whole(value):
    """numpy and other integer-like scalars as a Python int (check_number wants int or float)."""
    return operator.index(value) if hasattr(type(value), "__index__") and not isinstance(value, bool) else value


def _with_checked_labels(batch: Batch, model: nn.Module, what: str) -> Batch:
    """Labels as int64 class ids in 0..n_classes-1 (``model.n_classes`` when the model has one)."""
    n_classes = getattr(model, "n_classes", None)
    y = check_labels(batch.y, n_classes if isinstance(n_classes, int) else None, what=what)
    return batch if y is batch.y else Batch(batch.inputs, y, batch.present)


def _check_batch_size(batch_size, what: str = "batch_size") -> int:
    try:
        return check_number(_whole(batch_size), what, low=1, integer=True)
    except TypeError as err:
        raise ValueError(str(err)) from None


def _grads_finite(model: nn.Module) -> bool:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


@torch.no_grad()
def predict(model: nn.Module, data, *, batch_size: int = 1024, device=None) -> Tensor:
    """Logits for every row of ``data`` (a Batch, ``(inputs, y)`` or a dataset), on CPU.

    An empty ``data`` (0 rows) gives an empty ``(0, C)`` float32 tensor, with
    ``C = model.n_classes`` (a ``ValueError`` for a model without that attribute).
    """
    batch = as_batch(data)
    _check_batch_size(batch_size)
    if batch.size == 0:
        if not isinstance(getattr(model, "n_classes", None), int):
            raise ValueError("predict: the data has no rows, and the model has no n_classes to shape an empty result")
        return torch.empty(0, model.n_classes)
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
    """Mean cross-entropy and accuracy of ``model`` on ``data``.

    Raises ``ValueError`` when ``data`` has no rows (there is no accuracy to
    report) or when the model outputs NaN/inf logits (e.g. after a diverged run):
    an argmax over NaN would report a meaningless accuracy.
    """
    batch = as_batch(data)
    if batch.size == 0:
        raise ValueError("evaluate: the data has no rows, so there is no loss or accuracy to report")
    batch = _with_checked_labels(batch, model, "evaluate labels")
    logits = predict(model, batch, batch_size=batch_size, device=device)
    finite = torch.isfinite(logits).reshape(len(logits), -1).all(dim=1)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite).flatten()[:5].tolist()
        raise ValueError(
            f"evaluate: the model output NaN or inf logits for {int((~finite).sum())} of {len(logits)} rows "
            f"(first: {rows}); no accuracy is reported for them. Did training diverge (see the loss history), "
            "or do the inputs hold NaN/inf?"
        )
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
    on_nonfinite: str = "raise",
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

    ``on_nonfinite``: what a NaN/inf loss (or gradient) does. ``"raise"`` (default)
    stops with :class:`~mmlearn._checks.NonFiniteLossError` naming the epoch and
    the step; ``"warn"`` emits a ``RuntimeWarning``, skips that update (the
    parameters stay as they were) and goes on. Skipped steps are left out of
    ``train_loss`` and ``train_acc``; an epoch whose steps were all skipped
    records NaN for both, and ``history["skipped_steps"]`` counts them per epoch.
    Empty training (or evaluation) data is refused with a ``ValueError``.
    """
    epochs = check_number(_whole(epochs), "epochs", low=0, integer=True)
    batch_size = _check_batch_size(batch_size)
    check_number(lr, "lr", low=0)
    if on_nonfinite not in ("raise", "warn"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    model.to(device)
    train_batch = as_batch(train)
    if train_batch.size == 0:
        raise ValueError("fit: the training data has no rows")
    if loss_fn is F.cross_entropy:
        train_batch = _with_checked_labels(train_batch, model, "fit labels")
    eval_batch = as_batch(eval_data) if eval_data is not None else None
    if eval_batch is not None and eval_batch.size == 0:
        raise ValueError("fit: eval_data has no rows, so there is no accuracy to report; pass None to skip evaluation")
    if eval_batch is not None:
        eval_batch = _with_checked_labels(eval_batch, model, "fit eval_data labels")
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
    if on_nonfinite == "warn":
        history["skipped_steps"] = []
    # NaN/inf in present training rows is bad data, reported as such before any step
    check_finite(train_batch.inputs, train_batch.present, what="fit: training inputs")
    step = 0
    bar = tqdm(range(1, epochs + 1), desc="training", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        total_loss, correct, seen, skipped = 0.0, 0, 0, 0
        for idx in minibatches(train_batch.size, batch_size, shuffle):
            batch = train_batch.index(idx)
            if train_transform is not None:
                batch = train_transform(batch, step)
            batch = batch.to(device)
            try:
                out = _forward(model, batch)
            except ValueError as err:
                # the data were checked finite above, so NaN/inf inside the model means the weights diverged
                if "NaN or inf" not in str(err):
                    raise
                msg = (f"fit: the model's intermediate values became NaN or inf at epoch {epoch}, step {step} "
                       f"({err}); the inputs are finite, so training diverged: lower the learning rate")
                if on_nonfinite == "raise":
                    raise NonFiniteLossError(msg) from err
                import warnings

                warnings.warn(msg + "; this step was skipped", RuntimeWarning, stacklevel=2)
                step, skipped = step + 1, skipped + 1
                continue
            logits = _logits(out)
            loss = loss_fn(logits, batch.y)
            for term in extra_losses:
                loss = loss + term(model, out, batch)
            opt.zero_grad(set_to_none=True)
            if not check_finite_loss(loss, epoch=epoch, step=step, where="fit", on_nonfinite=on_nonfinite):
                step, skipped = step + 1, skipped + 1
                continue
            if before_backward is not None:
                before_backward(model, out, batch, step)
            loss.backward()
            if grad_hook is not None:
                grad_hook(model, out, batch, step)
            if not _grads_finite(model):
                msg = (f"fit: a gradient became NaN or inf at epoch {epoch}, step {step} (the loss was "
                       f"{float(loss.detach()):.4g}); training diverged: lower the learning rate or check the inputs")
                if on_nonfinite == "raise":
                    raise NonFiniteLossError(msg)
                import warnings

                warnings.warn(msg + "; this step's update was skipped", RuntimeWarning, stacklevel=2)
                opt.zero_grad(set_to_none=True)
                step, skipped = step + 1, skipped + 1
                continue
            opt.step()
            step += 1
            seen += len(idx)
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.detach().argmax(dim=1) == batch.y).sum())
        history["epoch"].append(epoch)
        history["train_loss"].append(total_loss / seen if seen else float("nan"))
        history["train_acc"].append(correct / seen if seen else float("nan"))
        if on_nonfinite == "warn":
            history["skipped_steps"].append(skipped)
        if eval_batch is not None:
            try:
                scores = evaluate(model, eval_batch, device=device)
            except ValueError as err:
                if on_nonfinite == "raise" or "NaN or inf logits" not in str(err):
                    raise
                import warnings

                warnings.warn(f"epoch {epoch}: {err}; eval_loss and eval_acc recorded as NaN", RuntimeWarning,
                              stacklevel=2)
                scores = {"loss": float("nan"), "accuracy": float("nan")}
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
