"""Small helpers over ``torch.distributed``, used by :func:`mmlearn.train.fit` and ``train_alignment``.

Not a framework: each function is a few lines of plain ``torch.distributed``,
and each one is the identity (or rank 0 of 1) when no process group is
initialised, so single-process code calls them unconditionally. See
``docs/DISTRIBUTED.md`` for running a training script under ``torchrun``.

- :func:`is_distributed`, :func:`rank`, :func:`world_size`, :func:`local_rank`;
- :func:`shard`: this rank's contiguous part of a global minibatch's indices;
- :func:`all_reduce_sum` and :func:`any_rank`: sums and "did any rank see this?"
  over every rank (metrics, non-finite flags that every rank must agree on);
- :func:`check_finite_loss_all_ranks`: :func:`~mmlearn._checks.check_finite_loss`
  where a NaN/inf loss on one rank makes every rank raise (or skip) together;
- :func:`local_device`: the device of this process (``cuda:LOCAL_RANK`` under NCCL).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from ._checks import NonFiniteLossError, check_finite_loss


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` default process group is initialised (any world size)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the default group; 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes in the default group; 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's index on its machine: ``LOCAL_RANK`` (set by ``torchrun``), else 0."""
    return int(os.environ.get("LOCAL_RANK", 0))


def local_device() -> torch.device:
    """``cuda:LOCAL_RANK`` when the default group uses NCCL (one GPU per process), else CPU."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def _comm_device() -> torch.device:
    # NCCL only reduces CUDA tensors (on the current device); gloo and others take CPU tensors
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: Tensor | Sequence[float]) -> Tensor:
    """Element-wise sum over all ranks, returned as a new float64 CPU tensor.

    ``values``: a tensor or a sequence of numbers (e.g. ``[loss_sum, correct, seen]``).
    Without a process group it returns the values themselves (as float64).
    """
    t = values.detach().to("cpu", torch.float64).clone() if isinstance(values, Tensor) else (
        torch.tensor([float(v) for v in values], dtype=torch.float64))
    if not is_distributed() or world_size() == 1:
        return t
    t = t.to(_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu()


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on at least one rank (a collective: every rank must call it)."""
    if not is_distributed() or world_size() == 1:
        return bool(flag)
    return bool(all_reduce_sum([1.0 if flag else 0.0])[0] > 0)


def shard(indices: Tensor) -> Tensor:
    """This rank's contiguous part of ``indices`` (1-D), as :func:`torch.tensor_split` cuts it.

    Rank ``r`` of ``W`` takes part ``r`` of ``W`` near-equal parts in order, so
    concatenating the parts in rank order gives ``indices`` back (which is the
    order in which :func:`mmlearn.alignment.gather_features` concatenates the
    ranks' features). When ``len(indices)`` is not a multiple of ``W`` the first
    ``len % W`` ranks get one more element; when it is smaller than ``W`` the
    last ranks get an empty part. Without a process group: ``indices`` itself.

    Note the difference with ``torch.utils.data.DistributedSampler``, which
    interleaves (``indices[r::W]``) a whole epoch's permutation: ``fit`` shards
    each *global minibatch* instead, so that the union of the ranks' batches at
    each step is exactly the minibatch a single process would take.
    """
    if indices.dim() != 1:
        raise ValueError(f"shard: expected 1-D indices, got shape {tuple(indices.shape)}")
    w = world_size()
    if w == 1:
        return indices
    return torch.tensor_split(indices, w)[rank()]


def check_finite_loss_all_ranks(loss: Tensor, *, epoch: int, step: int, where: str = "fit",
                                on_nonfinite: str = "raise") -> bool:
    """:func:`~mmlearn._checks.check_finite_loss`, agreed on by every rank.

    Returns ``True`` when the loss is finite on every rank. A NaN/inf loss on
    any rank makes *every* rank raise :class:`~mmlearn._checks.NonFiniteLossError`
    (``on_nonfinite="raise"``) or warn and return ``False`` (``"warn"``: every
    rank skips the update together). Without this agreement the rank that
    stopped would leave the others waiting forever in the next collective
    (DDP's gradient all-reduce). A collective: every rank must call it at the same step.
    Without a process group it is exactly ``check_finite_loss``.
    """
    if not is_distributed() or world_size() == 1:
        return check_finite_loss(loss, epoch=epoch, step=step, where=where, on_nonfinite=on_nonfinite)
    local_bad = not bool(torch.isfinite(loss.detach()).all())
    if not any_rank(local_bad):
        return True
    if local_bad:  # this rank's own loss: the usual message (raises, or warns and returns False)
        return check_finite_loss(loss, epoch=epoch, step=step, where=where, on_nonfinite=on_nonfinite)
    msg = (f"{where}: the loss became NaN or inf on another rank at epoch {epoch}, step {step} "
           f"(this is rank {rank()} of {world_size()}, whose loss was finite); training diverged")
    if on_nonfinite == "raise":
        raise NonFiniteLossError(msg)
    import warnings

    warnings.warn(msg + "; this step's update was skipped on every rank", RuntimeWarning, stacklevel=2)
    return False
