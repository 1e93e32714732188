"""The batch of DESIGN.md, and the one helper that builds it from a dataset.

A batch is ``inputs: dict[str, Tensor]`` (one ``(B, ...)`` tensor per modality),
labels ``y`` of shape ``(B,)`` and an optional presence mask
``present: dict[str, BoolTensor (B,)]`` (``None`` means every input is present).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_modality_dict, check_present

#: Columns of a dataset that are not modalities: the label and metadata.
NON_MODALITY_PREFIXES = ("latent_", "meta_")
NON_MODALITY_COLUMNS = ("label", "id")


class Batch(NamedTuple):
    """``inputs`` per modality, labels ``y`` (B,) and an optional presence mask."""

    inputs: dict[str, Tensor]
    y: Tensor
    present: dict[str, Tensor] | None = None

    @property
    def size(self) -> int:
        return int(self.y.shape[0])

    @property
    def modalities(self) -> list[str]:
        return list(self.inputs)

    def to(self, device) -> Batch:
        present = None if self.present is None else {k: v.to(device) for k, v in self.present.items()}
        return Batch({k: v.to(device) for k, v in self.inputs.items()}, self.y.to(device), present)

    def index(self, idx) -> Batch:
        """Rows ``idx`` (a slice, an index tensor or a boolean mask) of every tensor."""
        present = None if self.present is None else {k: v[idx] for k, v in self.present.items()}
        return Batch({k: v[idx] for k, v in self.inputs.items()}, self.y[idx], present)

    def select(self, modalities: Sequence[str]) -> Batch:
        """The same rows restricted to ``modalities`` (for unimodal models)."""
        for m in modalities:
            if m not in self.inputs:
                raise ValueError(f"unknown modality {m!r}; this batch has {sorted(self.inputs)}")
        present = None if self.present is None else {m: self.present[m] for m in modalities}
        return Batch({m: self.inputs[m] for m in modalities}, self.y, present)


def modality_columns(dataset) -> list[str]:
    """Modality columns of a dataset: every column but ``label``, ``id`` and ``latent_*``/``meta_*``."""
    return [
        c
        for c in dataset.column_names
        if c not in NON_MODALITY_COLUMNS and not c.startswith(NON_MODALITY_PREFIXES)
    ]


def to_batch(dataset, modalities: Sequence[str] | None = None, rows=None) -> Batch:
    """Turn a Hugging Face ``datasets.Dataset`` (or a slice of it) into a :class:`Batch`.

    Columns are read whole through the Arrow-backed torch format, so there is no
    per-row Python loop. ``rows`` is an optional slice or list of row indices.
    """
    names = list(modalities) if modalities is not None else modality_columns(dataset)
    if not names:
        raise ValueError(f"dataset has no modality columns (columns: {dataset.column_names})")
    for m in names:
        if m not in dataset.column_names:
            raise ValueError(f"unknown modality {m!r}; the dataset has columns {dataset.column_names}")
    if "label" not in dataset.column_names:
        raise ValueError(f"dataset has no 'label' column (columns: {dataset.column_names})")
    view = dataset.with_format("torch", columns=[*names, "label"])
    if rows is not None:
        view = view.select(range(len(dataset))[rows] if isinstance(rows, slice) else rows)
    table = view[:]
    inputs = {m: table[m].float() for m in names}
    y = table["label"].long()
    check_modality_dict(inputs, names, what="to_batch")
    return Batch(inputs, y)


def as_batch(data, modalities: Sequence[str] | None = None) -> Batch:
    """Accept a :class:`Batch`, an ``(inputs, y)`` pair, ``(inputs, y, present)`` or a dataset."""
    if isinstance(data, Batch):
        batch = data
    elif isinstance(data, tuple) and len(data) in (2, 3) and isinstance(data[0], Mapping):
        batch = Batch(dict(data[0]), data[1], data[2] if len(data) == 3 else None)
    elif hasattr(data, "column_names"):
        return to_batch(data, modalities)
    else:
        raise TypeError(
            "expected a Batch, an (inputs, y[, present]) tuple or a datasets.Dataset, "
            f"got {type(data).__name__}"
        )
    if modalities is not None:
        batch = batch.select(modalities)
    n = check_modality_dict(batch.inputs, what="batch")
    if not isinstance(batch.y, Tensor) or batch.y.shape[:1] != (n,):
        shape = tuple(batch.y.shape) if isinstance(batch.y, Tensor) else type(batch.y).__name__
        raise ValueError(f"labels y have shape {shape}; expected ({n},) to match the inputs")
    if batch.present is not None:
        batch = Batch(batch.inputs, batch.y, check_present(batch.present, batch.inputs, n))
    return batch


def concat_batches(batches: Sequence[Batch]) -> Batch:
    """Stack batches with the same modalities along the batch dimension."""
    names = batches[0].modalities
    inputs = {m: torch.cat([b.inputs[m] for b in batches]) for m in names}
    y = torch.cat([b.y for b in batches])
    if all(b.present is None for b in batches):
        return Batch(inputs, y)
    present = {
        m: torch.cat([check_present(b.present, names, b.size)[m] for b in batches]) for m in names
    }
    return Batch(inputs, y, present)
