"""A two-tower alignment model (CLIP's shape, small) and its contrastive training loop.

Two encoders (the library's default ones: :class:`~mmlearn.models.ImageCNN`
for ``image``, :class:`~mmlearn.models.SpectrogramCNN` for ``audio``, an MLP
otherwise), a linear projection head per modality into a shared ``embed_dim``
space, and a :class:`~mmlearn.alignment.ContrastiveLoss` holding the learnable
temperature. Training uses no labels: only which image goes with which clip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import distributed as D
from .._checks import check_finite_loss, check_modality_dict
from ..data.batch import as_batch
from ..models import default_encoders
from ..train import _training_setup, _wrap_ddp, minibatches
from .loss import INIT_TEMPERATURE, ContrastiveLoss
from .metrics import retrieval_metrics


class AlignmentModel(nn.Module):
    """Encoder + projection head per modality, trained with survey Eq. (2).

    ``shapes``: exactly two modalities, ``{name: trailing input shape}``, e.g.
    ``{"image": (8, 8), "audio": (20, 20)}``. ``feature_dim``: encoder width;
    ``embed_dim``: the shared space. ``temperature`` / ``learnable_temperature``
    configure :class:`ContrastiveLoss` (``self.loss``). ``encoders`` overrides
    the default encoders (a mapping of modules with an ``out_dim``).

    ``model(inputs)`` -> ``{name: (B, embed_dim)}`` (not normalised; the loss
    and metrics normalise); ``model.embed(inputs)`` -> unit-norm embeddings
    without gradients; ``model.compute_loss(inputs)`` -> the contrastive loss.

    Under ``torch.distributed``, wrap the model in ``DistributedDataParallel``
    and compute ``z = ddp_model(inputs)`` then ``model.loss(z[a], z[b])`` on each
    rank's batch: the loss gathers every rank's features (see :class:`ContrastiveLoss`).
    :func:`train_alignment` does this by itself when run under ``torchrun``.
    """

    def __init__(self, shapes: Mapping[str, Sequence[int]], *, embed_dim: int = 32, feature_dim: int = 64,
                 temperature: float = INIT_TEMPERATURE, learnable_temperature: bool = True,
                 encoders: Mapping[str, nn.Module] | None = None, seed: int | None = 0):
        super().__init__()
        if len(shapes) != 2:
            raise ValueError(f"an AlignmentModel aligns exactly two modalities, got {list(shapes)}")
        if seed is not None:
            torch.manual_seed(seed)
        self.shapes = {m: tuple(s) for m, s in shapes.items()}
        if encoders is None:
            encoders = default_encoders(self.shapes, feature_dim)
        elif set(encoders) != set(shapes):
            raise ValueError(f"encoders are for {sorted(encoders)} but shapes for {sorted(shapes)}")
        self.encoders = nn.ModuleDict(dict(encoders))
        # projection head g_m: encoder features (B, d_m) -> shared space (B, embed_dim)
        self.heads = nn.ModuleDict({m: nn.Linear(int(e.out_dim), embed_dim) for m, e in self.encoders.items()})
        self.loss = ContrastiveLoss(temperature, learnable=learnable_temperature)
        self.embed_dim = embed_dim

    @property
    def modalities(self) -> tuple[str, str]:
        a, b = self.shapes
        return a, b

    def forward(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        check_modality_dict(inputs, self.shapes, what="AlignmentModel inputs")
        # z_m = g_m(f_m(x_m)): (B, *shape_m) -> (B, embed_dim)
        return {m: self.heads[m](self.encoders[m](inputs[m])) for m in self.modalities}

    def compute_loss(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Survey Eq. (2), symmetric, on this batch (gathered across ranks under torch.distributed)."""
        z = self(inputs)
        a, b = self.modalities
        return self.loss(z[a], z[b])

    @torch.no_grad()
    def embed(self, inputs: Mapping[str, Tensor], batch_size: int = 1024) -> dict[str, Tensor]:
        """Unit-norm embeddings ``{name: (N, embed_dim)}`` on CPU, in eval mode, without gradients."""
        n = check_modality_dict(inputs, self.shapes, what="AlignmentModel inputs")
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            chunks = [self({m: x[i : i + batch_size].to(device) for m, x in inputs.items()})
                      for i in range(0, n, batch_size)]
        finally:
            self.train(was_training)
        return {m: F.normalize(torch.cat([c[m] for c in chunks]), dim=-1).cpu() for m in self.modalities}


def evaluate_alignment(model, data, ks=(1, 5, 10)) -> dict[str, float]:
    """Retrieval on ``data`` (a Batch, ``(inputs, y)`` or dataset): instance and class level, both directions.

    ``model``: anything with ``modalities`` and ``embed(inputs)`` (:class:`AlignmentModel`, :class:`CCABaseline`).

    Keys as :func:`retrieval_metrics` with names ``(a, b)``, instance-level hits
    (the partner itself) first, then class-level hits (same label) prefixed ``class ``.
    """
    batch = as_batch(data, list(model.modalities))
    z = model.embed(batch.inputs)
    a, b = model.modalities
    out = retrieval_metrics(z[a], z[b], ks=ks, names=(a, b))
    out.update({f"class {k}": v for k, v in retrieval_metrics(z[a], z[b], batch.y, ks=ks, names=(a, b)).items()})
    return out


def train_alignment(model: AlignmentModel, train, eval_data=None, *, epochs: int = 10, batch_size: int = 128,
                    lr: float = 3e-3, weight_decay: float = 0.0, seed: int = 0, device=None,
                    progress: bool = False, on_nonfinite: str = "raise",
                    distributed: bool | None = None) -> dict[str, list]:
    """Train ``model`` with the contrastive loss; labels are never used. Returns the history.

    Each epoch visits a seeded permutation of ``train`` in full batches of
    ``batch_size`` pairs (the incomplete last batch is dropped, as in CLIP: the
    number of negatives stays fixed). Adam over every parameter, the
    temperature included; after each step the logit scale is clamped to
    ``[0, log 100]`` (CLIP). History: ``epoch``, ``train_loss`` (mean over
    batches), ``temperature``, and with ``eval_data`` the recall@1 per direction
    at instance level (``eval a->b R@1``...) and class level (``eval class a->b R@1``...).
    Deterministic on CPU for a fixed ``seed`` and initial weights.

    ``on_nonfinite``: a NaN/inf loss stops training with
    :class:`~mmlearn._checks.NonFiniteLossError` naming the epoch and the step
    (``"raise"``, default), or is skipped with a ``RuntimeWarning`` (``"warn"``:
    no update for that batch; skipped batches are left out of ``train_loss``,
    which is NaN for an epoch whose batches were all skipped).

    ``distributed`` (as in :func:`mmlearn.train.fit`; default: when a process
    group of more than one process is initialised, e.g. under ``torchrun``):
    ``batch_size`` is the **global** batch, divisible by the world size W; each
    rank takes a contiguous ``batch_size / W`` pairs of each global batch of
    the same seeded permutation and runs them through a
    ``DistributedDataParallel`` wrapper of ``model``. The contrastive loss
    gathers every rank's embeddings, so each rank computes the loss of the whole
    global batch (every pair a negative for every other), and after DDP's
    gradient averaging the update equals the single-process one on that batch
    (see :class:`~mmlearn.alignment.ContrastiveLoss`). ``train_loss`` is that
    global loss (the same on every rank); a NaN/inf loss raises (or is skipped)
    on every rank together. Retrieval needs every embedding, so each rank
    evaluates the whole ``eval_data`` (the weights are identical, so are the
    numbers). ``distributed=False`` inside a process group trains this process
    alone: the loss's gathering is switched off for the call.
    """
    if on_nonfinite not in ("raise", "warn"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}")
    if epochs < 0 or batch_size < 2:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 2 (one positive, >= 1 negative), "
                         f"got {epochs} and {batch_size}")
    a, b = model.modalities
    train_batch = as_batch(train, [a, b])
    check_modality_dict(train_batch.inputs, model.shapes, what="training data")
    if train_batch.size < batch_size:
        raise ValueError(f"batch_size {batch_size} is larger than the training set ({train_batch.size} pairs)")
    eval_batch = as_batch(eval_data, [a, b]) if eval_data is not None else None
    dist_on, device = _training_setup(distributed, batch_size, device, "train_alignment")
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    torch.manual_seed(seed + (D.rank() if dist_on else 0))
    shuffle = torch.Generator().manual_seed(seed)  # the same permutation on every rank
    gather = model.loss.gather
    if not dist_on and D.is_distributed():
        model.loss.gather = False  # this process trains alone: no other rank's features to gather
    try:
        net = _wrap_ddp(model, device, find_unused=False) if dist_on else model  # forward passes go through net
        return _align_epochs(model, net, opt, train_batch, eval_batch,
                             epochs=epochs, batch_size=batch_size, device=device, shuffle=shuffle, progress=progress,
                             on_nonfinite=on_nonfinite, dist_on=dist_on)
    finally:
        model.loss.gather = gather


def _align_epochs(model: AlignmentModel, net: nn.Module, opt, train_batch, eval_batch, *, epochs, batch_size,
                  device, shuffle, progress, on_nonfinite, dist_on) -> dict[str, list]:
    """The epochs of :func:`train_alignment`; ``net`` is ``model`` or its DDP wrapper (forward passes go through it)."""
    a, b = model.modalities
    check_loss = D.check_finite_loss_all_ranks if dist_on else check_finite_loss
    history: dict[str, list] = {"epoch": [], "train_loss": [], "temperature": []}
    step = 0  # counts every full batch, skipped ones included (as fit does)
    for epoch in tqdm(range(1, epochs + 1), desc="aligning", disable=not progress or D.rank() != 0, leave=False):
        model.train()
        losses = []
        for idx in minibatches(train_batch.size, batch_size, shuffle):
            if len(idx) < batch_size:  # drop the incomplete last batch
                continue
            if dist_on:
                idx = D.shard(idx)  # this rank's contiguous batch_size / W pairs
            inputs = {m: x[idx].to(device) for m, x in train_batch.inputs.items()}
            # z_m = g_m(f_m(x_m)) through DDP; the loss gathers all ranks' z (the global batch's negatives)
            z = net(inputs)
            loss = model.loss(z[a], z[b])
            opt.zero_grad(set_to_none=True)
            step += 1
            if not check_loss(loss, epoch=epoch, step=step - 1, where="train_alignment", on_nonfinite=on_nonfinite):
                continue
            loss.backward()
            opt.step()
            model.loss.clamp_()  # 0 <= t <= log 100, as CLIP after each step
            losses.append(float(loss.detach()))
        history["epoch"].append(epoch)
        history["train_loss"].append(sum(losses) / len(losses) if losses else float("nan"))
        history["temperature"].append(model.loss.temperature)
        if eval_batch is not None:
            try:
                scores = evaluate_alignment(model, eval_batch, ks=(1,))
            except ValueError as err:
                if on_nonfinite == "raise" or "NaN or inf" not in str(err):
                    raise
                import warnings

                warnings.warn(f"epoch {epoch}: {err}; eval recalls recorded as NaN", RuntimeWarning, stacklevel=3)
                scores = {k: float("nan") for k in (f"{a}->{b} R@1", f"{b}->{a} R@1", f"class {a}->{b} R@1",
                                                    f"class {b}->{a} R@1")}
            for key in (f"{a}->{b} R@1", f"{b}->{a} R@1", f"class {a}->{b} R@1", f"class {b}->{a} R@1"):
                history.setdefault(f"eval {key}", []).append(scores[key])
    return history
