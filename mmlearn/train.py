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

Runs unchanged under ``torchrun``: with an initialised ``torch.distributed``
process group of several processes, ``fit`` trains a ``DistributedDataParallel``
wrapper of the model on each rank's part of every global minibatch (see
``fit``'s docstring and ``docs/DISTRIBUTED.md``).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import distributed as D
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


def _use_distributed(distributed: bool | None, where: str) -> bool:
    """Whether a training loop runs as one rank of several: ``None`` = when a process group of > 1 is initialised."""
    if distributed is None:
        return D.is_distributed() and D.world_size() > 1
    if distributed and not D.is_distributed():
        raise ValueError(f"{where}: distributed=True needs an initialised process group "
                         "(torch.distributed.init_process_group, e.g. under torchrun); see docs/DISTRIBUTED.md")
    return bool(distributed) and D.world_size() > 1


def _training_setup(distributed: bool | None, batch_size: int, device, where: str) -> tuple[bool, torch.device]:
    """``(distributed?, device)`` for a training loop: a global ``batch_size`` must divide by the world size."""
    dist_on = _use_distributed(distributed, where)
    if dist_on and batch_size % D.world_size():
        raise ValueError(f"{where}: batch_size is the global batch and must be divisible by the world size; got "
                         f"batch_size={batch_size} for {D.world_size()} processes")
    if dist_on:
        return True, _distributed_device(device)
    return False, torch.device(device) if device is not None else torch.device("cpu")


def _distributed_device(device) -> torch.device:
    """The given device, else this process's own (``cuda:LOCAL_RANK`` under NCCL); ``"cuda"`` gets the local rank."""
    device = torch.device(device) if device is not None else D.local_device()
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", D.local_rank())
        torch.cuda.set_device(device)  # NCCL reduces on the current device
    return device


class _ForwardAll(nn.Module):
    """``model.forward_all`` as ``forward``, so that DDP (which calls ``forward``) returns every output ``fit`` reads.

    A dataclass output (:class:`~mmlearn.models.MultimodalOutput`) leaves the DDP
    forward as a dict of its fields, where DDP finds its tensors (it does not look
    inside a dataclass, and then never all-reduces the gradients);
    :meth:`output` rebuilds it.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self._output_type = None

    def forward(self, inputs, present=None):
        out = _forward(self.model, Batch(inputs, None, present))
        if dataclasses.is_dataclass(out) and not isinstance(out, type):
            self._output_type = type(out)
            return {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}
        self._output_type = None
        return out

    def output(self, out):
        return out if self._output_type is None else self._output_type(**out)


def _wrap_ddp(model: nn.Module, device: torch.device, *, find_unused: bool) -> nn.Module:
    """``DistributedDataParallel(model)``: broadcasts rank 0's weights, then averages gradients in ``backward()``.

    ``find_unused`` (``fit``): parameters that get no gradient at a step (e.g.
    unimodal heads without a unimodal loss term) are all-reduced as zeros
    instead of leaving DDP waiting for them. It costs a walk over the autograd
    graph per step, and torch logs a one-time warning when there were none. It
    fails loudly ("marked ready twice") for a parameter used only *outside* the
    forward pass, which is why ``train_alignment`` (whose temperature is such a
    parameter, and whose parameters are all used) does without it. Measured:
    ``static_graph=True``, the documented alternative, silently stopped (torch 2.13, gloo)
    averaging gradients after the first step for a model with unused unimodal heads.
    """
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused)


def _evaluate_sharded(model: nn.Module, batch: Batch, device) -> dict[str, float]:
    """``evaluate``, each rank scoring its contiguous shard of ``batch``; the sums all-reduced (same on every rank)."""
    part = D.shard(torch.arange(batch.size))
    loss_sum, correct, bad = 0.0, 0, 0
    if len(part):
        local = batch.index(part)
        logits = predict(model, local, device=device)
        finite = torch.isfinite(logits).reshape(len(logits), -1).all(dim=1)
        bad = int((~finite).sum())
        if not bad:
            loss_sum = float(F.cross_entropy(logits, local.y, reduction="sum"))
            correct = int((logits.argmax(dim=1) == local.y).sum())
    loss_sum, correct, bad = D.all_reduce_sum([loss_sum, correct, bad]).tolist()
    if bad:  # the same error on every rank, so none of them waits for the others
        raise ValueError(
            f"evaluate: the model output NaN or inf logits for {int(bad)} of {batch.size} rows (summed over the "
            f"{D.world_size()} ranks' shards); no accuracy is reported for them. Did training diverge (see the loss "
            "history), or do the inputs hold NaN/inf?"
        )
    return {"loss": loss_sum / batch.size, "accuracy": correct / batch.size}


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
    distributed: bool | None = None,
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

    ``distributed``: ``None`` (default) runs as one rank of several when a
    ``torch.distributed`` process group with more than one process is
    initialised (e.g. under ``torchrun``), and as a single process otherwise;
    ``True`` requires a process group; ``False`` trains this process alone even
    inside one. Every rank calls ``fit`` with the same data, seed and options. Then:

    - ``batch_size`` is the **global** batch: it must be divisible by the world
      size W, and each rank takes a contiguous ``batch_size / W`` rows of each
      global minibatch (:func:`mmlearn.distributed.shard`) of the same seeded
      permutation, so the union over ranks is the minibatch a single process
      would take. The last, incomplete minibatch is kept (as single-process
      ``fit`` keeps it) and split as evenly as possible; each rank's loss is
      weighted by ``n_rank * W / n_global`` so that DDP's gradient average is
      the gradient of the mean loss over the global minibatch (exact for a loss
      that is a mean over rows, as cross-entropy is, plus terms that do not
      depend on the batch). A rank left with no row (a last minibatch of fewer
      than W rows) runs one row with weight 0 to take part in the all-reduce.
      ``train_transform`` is applied to the global minibatch before it is split,
      so a step-seeded transform draws what a single process draws.
    - The model is wrapped in ``DistributedDataParallel`` (which copies rank 0's
      weights to every rank first); the caller's ``model`` holds the trained
      weights afterwards, identical on every rank. ``device``: the given one,
      else ``cuda:LOCAL_RANK`` under NCCL and CPU otherwise (gloo).
    - ``train_loss`` / ``train_acc``: sums over every rank's rows divided by the
      global count; ``eval_loss`` / ``eval_acc``: each rank scores a contiguous
      shard of ``eval_data`` and the sums are all-reduced. Every rank returns the
      same history.
    - ``extra_losses``, ``before_backward`` and ``grad_hook`` receive the
      unwrapped model and this rank's part of the batch; ``grad_hook`` runs after
      DDP has averaged the gradients over ranks (so it sees the global-batch
      gradient); a hook that rescales from statistics of its own batch must
      all-reduce them (:func:`mmlearn.distributed.all_reduce_sum`), or the ranks'
      weights drift apart. ``on_epoch_end`` runs on every rank.
    - A NaN/inf loss, intermediate value or gradient on any rank raises (or is
      skipped, with ``"warn"``) on every rank at the same step: a flag is
      all-reduced, so no rank is left waiting in a collective.
    - The global RNG (dropout) is seeded with ``seed + rank``, so the ranks draw
      different dropout masks; BatchNorm uses per-rank batch statistics unless
      the model is converted with ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``.
    """
    epochs = check_number(_whole(epochs), "epochs", low=0, integer=True)
    batch_size = _check_batch_size(batch_size)
    check_number(lr, "lr", low=0)
    if on_nonfinite not in ("raise", "warn"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}")
    dist_on, device = _training_setup(distributed, batch_size, device, "fit")
    world, rank = (D.world_size(), D.rank()) if dist_on else (1, 0)
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

    torch.manual_seed(seed + rank)  # dropout and any sampling inside the model (rank 0 alone: seed)
    # every rank draws the same permutation from the seed; each takes its part of every minibatch
    shuffle = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"epoch": [], "train_loss": [], "train_acc": []}
    if eval_batch is not None:
        history.update(eval_loss=[], eval_acc=[])
    if on_nonfinite == "warn":
        history["skipped_steps"] = []
    # NaN/inf in present training rows is bad data, reported as such before any step
    check_finite(train_batch.inputs, train_batch.present, what="fit: training inputs")
    # what the forward pass goes through: the model, or under DDP a wrapper that calls its forward_all
    net = _wrap_ddp(_ForwardAll(model), device, find_unused=True) if dist_on else model
    # a flag (non-finite loss, value or gradient) as every rank sees it: with one process, the flag itself
    agree = D.any_rank if dist_on else bool
    check_loss = D.check_finite_loss_all_ranks if dist_on else check_finite_loss
    step = 0
    bar = tqdm(range(1, epochs + 1), desc="training", disable=not progress or rank != 0, leave=False)
    for epoch in bar:
        model.train()
        total_loss, correct, seen, skipped = 0.0, 0, 0, 0
        for idx in minibatches(train_batch.size, batch_size, shuffle):
            batch = train_batch.index(idx)
            if train_transform is not None:
                batch = train_transform(batch, step)
            n_rows, weight = len(idx), None  # rows this process learns from; loss weight under DDP
            if dist_on:
                part = D.shard(torch.arange(len(idx)))  # this rank's contiguous rows of the global minibatch
                n_rows, weight = len(part), len(part) * world / len(idx)
                batch = batch.index(part if len(part) else torch.arange(1))  # no row: one row, weight 0
            batch = batch.to(device)
            forward_error = None
            try:
                out = _forward(net, batch) if not dist_on else net.module.output(net(batch.inputs, batch.present))
            except ValueError as err:
                # the data were checked finite above, so NaN/inf inside the model means the weights diverged
                if "NaN or inf" not in str(err):
                    raise
                forward_error = err
            if agree(forward_error is not None):
                msg = (f"fit: the model's intermediate values became NaN or inf at epoch {epoch}, step {step} "
                       f"({forward_error}); the inputs are finite, so training diverged: lower the learning rate"
                       if forward_error is not None else
                       f"fit: the model's intermediate values became NaN or inf on another rank at epoch {epoch}, "
                       f"step {step}; training diverged: lower the learning rate")
                if on_nonfinite == "raise":
                    raise NonFiniteLossError(msg) from forward_error
                import warnings

                warnings.warn(msg + "; this step was skipped", RuntimeWarning, stacklevel=2)
                step, skipped = step + 1, skipped + 1
                continue
            logits = _logits(out)
            loss = loss_fn(logits, batch.y)
            for term in extra_losses:
                loss = loss + term(model, out, batch)
            opt.zero_grad(set_to_none=True)
            if not check_loss(loss, epoch=epoch, step=step, where="fit", on_nonfinite=on_nonfinite):
                step, skipped = step + 1, skipped + 1
                continue
            if before_backward is not None:
                before_backward(model, out, batch, step)
            # under DDP, backward() also averages the gradients over the ranks
            (loss if weight is None or weight == 1.0 else loss * weight).backward()
            if grad_hook is not None:
                grad_hook(model, out, batch, step)
            if agree(not _grads_finite(model)):
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
            if n_rows:
                seen += n_rows
                total_loss += float(loss.detach()) * n_rows
                correct += int((logits.detach().argmax(dim=1) == batch.y).sum())
        if dist_on:  # sums over every rank's rows, then divided by the global count
            total_loss, correct, seen = D.all_reduce_sum([total_loss, correct, seen]).tolist()
            correct, seen = round(correct), round(seen)
        history["epoch"].append(epoch)
        history["train_loss"].append(total_loss / seen if seen else float("nan"))
        history["train_acc"].append(correct / seen if seen else float("nan"))
        if on_nonfinite == "warn":
            history["skipped_steps"].append(skipped)
        if eval_batch is not None:
            try:
                scores = (_evaluate_sharded(model, eval_batch, device) if dist_on
                          else evaluate(model, eval_batch, device=device))
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
