"""What a model costs: parameters, FLOPs, latency and memory per sample, next to its accuracy.

``efficiency_profile`` measures one model; ``pareto_front`` keeps the models
that no other model beats on both accuracy and cost.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .._checks import check_number


@dataclass
class EfficiencyProfile:
    """One model's costs (per sample where it says so) and accuracy.

    - ``parameters`` / ``trainable_parameters``: ``sum(p.numel())`` over all / ``requires_grad`` parameters
      (plus frozen weights held as buffers, see :func:`count_parameters`);
    - ``flops_per_sample``: floating-point operations of one forward pass, as
      ``torch.utils.flop_counter.FlopCounterMode`` counts them (a multiply-add is
      2 FLOPs; only the ops it knows, chiefly matmuls and convolutions, are counted:
      additions of biases, activations and normalisations are not), divided by the batch size;
    - ``latency_per_sample_s``: median wall time of one forward pass over ``repeats``
      runs (after ``warmup``) divided by the batch size; machine-dependent;
    - ``peak_activation_bytes``: the peak of the bytes held by tensors allocated
      *during* the forward pass (the CPU allocator's allocation and free events
      recorded by ``torch.profiler`` with ``profile_memory=True``), for the whole
      batch: activations and temporaries, not the weights nor the inputs, which
      exist before; ``None`` when the profiler recorded nothing;
    - ``accuracy``: on the data's labels (``None`` when not computed).
    """

    parameters: int
    trainable_parameters: int
    flops_per_sample: float
    latency_per_sample_s: float
    peak_activation_bytes: int | None
    accuracy: float | None
    batch_size: int

    def as_dict(self) -> dict:
        return asdict(self)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)``: ``sum(p.numel())`` over all parameters and over those with ``requires_grad``.

    Frozen weights kept as buffers (e.g. the backbone of
    :class:`~mmlearn.fusion.prompt.PromptFusion`) are weights too: a submodule
    that has a ``frozen_parameter_count()`` method adds its count to ``total``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total += sum(int(m.frozen_parameter_count()) for m in model.modules() if hasattr(m, "frozen_parameter_count"))
    return int(total), int(trainable)


def _call(model: nn.Module, inputs, present=None):
    if isinstance(inputs, Mapping):
        if hasattr(model, "forward_all"):
            return model.forward_all(inputs, present)
        return model(inputs) if present is None else model(inputs, present)
    return model(inputs)


def count_flops(model: nn.Module, inputs, present=None) -> int:
    """Total FLOPs of one forward pass on ``inputs`` (a tensor or a dict of tensors), by ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        _call(model, inputs, present)
    return int(counter.get_total_flops())


def peak_activation_bytes(model: nn.Module, inputs, present=None) -> int | None:
    """Peak bytes held by tensors allocated during one forward pass (see :class:`EfficiencyProfile`)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _call(model, inputs, present)
    events = sorted(
        (e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage != 0
    )
    if not events:
        return None
    running, peak = 0, 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return int(peak)


def efficiency_profile(
    model: nn.Module,
    data,
    *,
    batch_size: int = 256,
    repeats: int = 20,
    warmup: int = 3,
    accuracy: bool = True,
    memory: bool = True,
) -> EfficiencyProfile:
    """Measure ``model`` on ``data`` (a Batch, ``(inputs, y[, present])`` or a dataset).

    FLOPs, latency and memory are measured on the first ``batch_size`` rows and
    reported per sample (memory: for that batch); accuracy (``accuracy=True``)
    on all rows with :func:`mmlearn.train.evaluate`. The model is put in eval
    mode for the measurement and restored after. Single-threaded timings are
    steadier: set ``torch.set_num_threads(1)`` to compare models.
    """
    from ..data import as_batch
    from ..train import evaluate

    total, trainable = count_parameters(model)
    batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
    repeats = check_number(repeats, "repeats", low=1, integer=True)
    warmup = check_number(warmup, "warmup", low=0, integer=True)
    batch = as_batch(data)
    if batch.size == 0:
        raise ValueError("efficiency_profile: the data has no rows")
    part = batch.index(slice(0, min(batch_size, batch.size)))
    b = part.size
    was_training = model.training
    model.eval()
    try:
        flops = count_flops(model, part.inputs, part.present)
        times = []
        with torch.no_grad():
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                _call(model, part.inputs, part.present)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
        peak = peak_activation_bytes(model, part.inputs, part.present) if memory else None
    finally:
        model.train(was_training)
    acc = evaluate(model, batch)["accuracy"] if accuracy else None
    return EfficiencyProfile(total, trainable, flops / b, statistics.median(times) / b, peak, acc, b)


def pareto_front(
    points: Sequence, *, accuracy: str = "accuracy", cost: str = "flops_per_sample"
) -> list:
    """The points not dominated on (higher accuracy, lower cost), sorted by cost.

    ``points``: dicts (or :class:`EfficiencyProfile` / objects with attributes)
    holding ``accuracy`` and ``cost`` under the given names, or ``(accuracy, cost)``
    pairs. A point is dominated when another is at least as accurate and at most
    as costly, and strictly better in one of the two; identical points are all kept.
    Returns the kept points themselves (the same objects), cheapest first.
    """
    if isinstance(points, (str, bytes)) or not isinstance(points, Sequence):
        raise TypeError(f"points must be a list, got {type(points).__name__}")

    def read(p, i):
        if isinstance(p, Mapping):
            if accuracy not in p or cost not in p:
                raise ValueError(f"points[{i}] lacks {accuracy!r} or {cost!r}: {p!r}")
            a, c = p[accuracy], p[cost]
        elif isinstance(p, (tuple, list)) and len(p) == 2:
            a, c = p
        elif hasattr(p, accuracy) and hasattr(p, cost):
            a, c = getattr(p, accuracy), getattr(p, cost)
        else:
            raise TypeError(f"points[{i}] must be a dict, an (accuracy, cost) pair or an object, got {p!r}")
        return (check_number(a, f"points[{i}] accuracy"), check_number(c, f"points[{i}] cost"))

    values = [read(p, i) for i, p in enumerate(points)]
    keep = []
    for i, (a, c) in enumerate(values):
        dominated = any(
            a2 >= a and c2 <= c and (a2 > a or c2 < c) for j, (a2, c2) in enumerate(values) if j != i
        )
        if not dominated:
            keep.append(i)
    keep.sort(key=lambda i: (values[i][1], -values[i][0], i))
    return [points[i] for i in keep]
