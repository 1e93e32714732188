"""Contrastive alignment: the symmetric InfoNCE loss of CLIP (survey Eq. 2).

Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision" (CLIP, ICML 2021); the loss follows ``openai/CLIP`` (``model.py``)
and ``mlfoundations/open_clip`` (``loss.py``, ``ClipLoss``).

Survey Eq. (2), for paired representations z_i^1, z_i^2 of N pairs::

    L = - sum_i log  exp(sim(z_i^1, z_i^2) / tau) / sum_j exp(sim(z_i^1, z_j^2) / tau)

Conventions used here (those of CLIP):

- ``sim`` is the cosine similarity: both sides are L2-normalised first;
- ``1 / tau`` is stored as its logarithm, the *logit scale* ``t = log(1 / tau)``
  (CLIP initialises it to ``log(1 / 0.07)``), and the logits are ``exp(t) * cos``;
- the sum over i is replaced by the mean (so the loss does not grow with N),
  and the loss is symmetrised: the mean of Eq. (2) from modality 1 to 2
  (:func:`info_nce`) and from 2 to 1.

Distributed negatives: under ``torch.distributed`` every rank holds a slice of
the global batch; :func:`gather_features` concatenates all slices with an
all-gather whose backward sends each slice's gradient back to its rank, so every
pair in the global batch is a negative for every other (see
:class:`ContrastiveLoss` for what equals what).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

#: CLIP's initial temperature and the largest logit scale it allows (exp(t) <= 100)
INIT_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = 100.0


def _check_pair(z_a: Tensor, z_b: Tensor, names: tuple[str, str] = ("z_a", "z_b")) -> None:
    for name, z in zip(names, (z_a, z_b)):
        if not isinstance(z, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (N, d), got {type(z).__name__}")
        if z.dim() != 2:
            raise ValueError(f"{name} has shape {tuple(z.shape)}; expected (N, d), one embedding per row")
        if z.shape[0] == 0:
            raise ValueError(f"{name} has shape {tuple(z.shape)}; expected at least one row")
    if z_a.shape != z_b.shape:
        raise ValueError(
            f"{names[0]} has shape {tuple(z_a.shape)} but {names[1]} has shape {tuple(z_b.shape)}; "
            "paired embeddings need the same (N, d): row i of one side is the positive of row i of the other"
        )


def _as_scale(logit_scale, like: Tensor) -> Tensor:
    """The log-scale ``t`` as a 0-d tensor on ``like``'s device; rejects anything but a scalar."""
    t = logit_scale if isinstance(logit_scale, Tensor) else torch.tensor(float(logit_scale))
    if t.numel() != 1:
        raise ValueError(f"logit_scale must be a scalar (the log of 1/temperature), got shape {tuple(t.shape)}")
    return t.reshape(()).to(device=like.device, dtype=like.dtype)


def similarity_logits(z_a: Tensor, z_b: Tensor, logit_scale) -> Tensor:
    """``exp(t) * cos(z_a_i, z_b_j)`` for every pair: (N, d) x (M, d) -> (N, M)."""
    t = _as_scale(logit_scale, z_a)
    # sim(z_i^1, z_j^2) = <z_i^1 / |z_i^1|, z_j^2 / |z_j^2|>: (N, M)
    cos = F.normalize(z_a, dim=-1) @ F.normalize(z_b, dim=-1).T
    # 1 / tau = exp(t)
    return t.exp() * cos


def info_nce(z_query: Tensor, z_key: Tensor, logit_scale) -> Tensor:
    """One direction of survey Eq. (2), averaged over the N queries.

    ``-(1/N) sum_i log softmax_j(exp(t) cos(q_i, k_j))[i]``: row i of
    ``z_query`` (N, d) should pick row i of ``z_key`` (N, d) among all N keys.
    ``logit_scale`` is ``t = log(1 / tau)`` (exp is applied here). Returns a 0-d tensor.
    """
    _check_pair(z_query, z_key, ("z_query", "z_key"))
    logits = similarity_logits(z_query, z_key, logit_scale)  # (N, N)
    # matched pairs sit on the diagonal: target of row i is column i
    target = torch.arange(len(z_query), device=z_query.device)
    # -log [exp(l_ii) / sum_j exp(l_ij)], mean over i
    return F.cross_entropy(logits, target)


def clip_loss(z_a: Tensor, z_b: Tensor, logit_scale) -> Tensor:
    """Symmetric InfoNCE of CLIP on cosine similarity; survey Eq. (2).

    ``z_a``, ``z_b``: (N, d) embeddings of N pairs (row i of each is one pair;
    any scale: they are L2-normalised here). ``logit_scale``: a scalar
    ``t = log(1 / tau)``, *the logarithm* of the inverse temperature, as CLIP
    stores it (``log(1/0.07) = 2.659`` gives logits ``14.29 * cos``); pass a
    tensor with ``requires_grad`` to learn it. No clamping happens here:
    :class:`ContrastiveLoss` clamps ``exp(t)`` at 100.

    Returns ``(info_nce(z_a, z_b) + info_nce(z_b, z_a)) / 2``, a 0-d tensor.
    """
    _check_pair(z_a, z_b)
    logits = similarity_logits(z_a, z_b, logit_scale)  # (N, N): a -> b along rows
    target = torch.arange(len(z_a), device=z_a.device)
    # Eq. (2) from a to b (rows of L) and from b to a (rows of L^T), each a mean over the N pairs
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


# ---------------------------------------------------------------------------------------------
# distributed negatives


def distributed_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns to each rank the gradient of its own slice.

    Forward: (B, d) on each of W ranks -> (W*B, d), the same on every rank.
    Backward: every rank holds a gradient for all W*B rows (its own copy of the
    loss); the gradient of rank r's input is the *sum over ranks* of the rows
    that came from r (a reduce-scatter, done here as all_reduce + slice so it
    also runs on gloo). This is what ``torch.distributed.nn.all_gather`` does.
    """

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        rank, world = distributed_world()
        ctx.rank, ctx.rows = rank, z.shape[0]
        parts = [torch.empty_like(z) for _ in range(world)]
        dist.all_gather(parts, z.contiguous())
        return torch.cat(parts)  # (W*B, d), rank r's rows at [r*B, (r+1)*B)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        # sum_k dL_k / dZ over the ranks k, then keep this rank's rows
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_features(z: Tensor) -> Tensor:
    """Concatenate the (B, d) features of every rank into (W*B, d), gradients flowing back.

    Without an initialised process group (or with one process) returns ``z``.
    Every rank must hold the same B (checked: a ValueError names the sizes).
    Rank r's rows come at positions ``[r*B, (r+1)*B)``, so the global batch is
    the concatenation of the ranks' batches in rank order.
    """
    rank, world = distributed_world()
    if world == 1:
        return z
    if z.dim() != 2:
        raise ValueError(f"features have shape {tuple(z.shape)}; expected (B, d)")
    sizes = [torch.zeros(2, dtype=torch.long) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor(z.shape, dtype=torch.long))
    shapes = [tuple(int(v) for v in s) for s in sizes]
    if len(set(shapes)) != 1:
        raise ValueError(
            f"gather_features: the ranks hold features of shapes {shapes} (rank {rank}: {tuple(z.shape)}); "
            "every rank needs the same (B, d) (drop the last incomplete batch)"
        )
    return _GatherWithGrad.apply(z)


class ContrastiveLoss(nn.Module):
    """CLIP's loss as a module with a learnable temperature; survey Eq. (2).

    ``logit_scale`` is a registered parameter ``t = log(1 / tau)``, initialised
    to ``log(1 / temperature)`` (default ``temperature=0.07``, so
    ``exp(t) = 14.29``). ``learnable=False`` keeps it fixed (a buffer). The
    scale actually used is ``min(exp(t), 100)``; :meth:`clamp_` also clamps the
    parameter itself to ``[0, log 100]``, as CLIP does after each optimiser
    step (call it there so ``t`` does not drift beyond the clamp).

    ``loss(z_a, z_b)``, (B, d) each. With ``gather=True`` and an initialised
    ``torch.distributed`` group of W > 1 processes, the features of all ranks
    are gathered first (:func:`gather_features`) and every rank computes the
    loss of the global (W*B) batch. What equals what, with rank r holding rows
    ``[r*B, (r+1)*B)`` of a global batch of W*B pairs:

    - the loss on every rank equals ``clip_loss`` of the single process on the
      concatenated batch;
    - the gradient reaching rank r's features equals **W times** the
      single-process gradient of those rows (each of the W identical copies of
      the loss sends its share back);
    - hence after DDP's gradient *averaging* over ranks the parameter
      gradients equal the single-process gradients on the W*B batch exactly
      (the logit scale's gradient is the same on every rank, so averaging keeps it).
    """

    def __init__(self, temperature: float = INIT_TEMPERATURE, learnable: bool = True, gather: bool = True,
                 max_scale: float = MAX_LOGIT_SCALE):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not max_scale > 0:
            raise ValueError(f"max_scale must be > 0, got {max_scale}")
        init = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init)
        self.gather = gather
        self.max_log_scale = math.log(max_scale)

    @property
    def scale(self) -> float:
        """The logit scale in use, ``min(exp(t), max_scale)`` = 1 / temperature."""
        return float(self.logit_scale.detach().clamp(max=self.max_log_scale).exp())

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp ``t`` to ``[0, log max_scale]`` in place (CLIP, after each optimiser step)."""
        self.logit_scale.clamp_(0.0, self.max_log_scale)

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        _check_pair(z_a, z_b)
        if self.gather:
            # (B, d) per rank -> (W*B, d): negatives from every rank, gradients back to the local rows
            z_a, z_b = gather_features(z_a), gather_features(z_b)
        # exp(t) clamped at max_scale: the clamp acts on t, so its gradient is 0 beyond it
        return clip_loss(z_a, z_b, self.logit_scale.clamp(max=self.max_log_scale))

    def extra_repr(self) -> str:
        kind = "learnable" if isinstance(self.logit_scale, nn.Parameter) else "fixed"
        return f"temperature={self.temperature:.4g} ({kind}), gather={self.gather}"
