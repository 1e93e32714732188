"""The batch of DESIGN.md, and the one helper that builds it from a dataset.

A batch is ``inputs: dict[str, Tensor]`` (one ``(B, ...)`` tensor per modality),
labels ``y`` of shape ``(B,)`` and an optional presence mask
``present: dict[str, BoolTensor (B,)]`` (``None`` means every input is present).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._checks import check_modality_dict, check_number, check_present

def _whole(value):
    """numpy and other integer-like scalars as a Python int (``check_number`` takes int or float)."""
    return operator.index(value) if hasattr(type(value), "__index__") and not isinstance(value, (bool, Tensor)) else value


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


def _arrow_to_numpy(column) -> np.ndarray | None:
    """A fixed-shape Arrow column (nested lists of equal lengths) as one numpy array, without a Python loop.

    Returns ``None`` when the column is not of that kind (ragged lists, nulls,
    extension types, no rows): the caller then takes the general path.
    """
    import pyarrow as pa

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    shape = [len(arr)]
    if len(arr) == 0:
        return None
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        if arr.null_count:
            return None
        lengths = arr.value_lengths().to_numpy(zero_copy_only=False)
        if len(lengths) == 0 or (lengths != lengths[0]).any():
            return None
        shape.append(int(lengths[0]))
        arr = arr.flatten()  # respects slices and offsets
    if arr.null_count or not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)
                              or pa.types.is_boolean(arr.type)):
        return None
    return arr.to_numpy(zero_copy_only=False).reshape(shape)


def _read_columns(dataset, columns: list[str], rows) -> dict[str, Tensor]:
    """Columns as tensors: fixed-shape Arrow columns in one go, others through the torch formatter."""
    view = dataset.with_format("arrow", columns=columns)
    if rows is not None:
        view = view.select(range(len(dataset))[rows] if isinstance(rows, slice) else rows)
    table = view[:]
    out: dict[str, Tensor] = {}
    slow = []
    for c in columns:
        values = _arrow_to_numpy(table.column(c))
        if values is None:
            slow.append(c)
        else:
            out[c] = torch.from_numpy(np.array(values, copy=True))  # own, writable memory (Arrow buffers are read-only)
    if slow:  # ragged, empty or extension-typed columns: the general (row by row) formatter
        tview = dataset.with_format("torch", columns=slow)
        if rows is not None:
            tview = tview.select(range(len(dataset))[rows] if isinstance(rows, slice) else rows)
        tcols = tview[:]
        for c in slow:
            col = tcols[c]
            if not isinstance(col, Tensor):
                try:
                    col = torch.as_tensor(np.asarray(col))
                except (ValueError, TypeError):
                    raise ValueError(
                        f"column {c!r} holds rows of different shapes; a batch needs one (B, ...) tensor "
                        "per modality (pad or resize the rows first)"
                    ) from None
            out[c] = col
    return {c: out[c] for c in columns}


def check_labels(y: Tensor, n_classes: int | None = None, *, what: str = "labels") -> Tensor:
    """Class labels as int64: integer values (floats must be whole), >= 0 and, with ``n_classes``, < n_classes.

    ``to_batch`` used to truncate float labels ([0.7, 1.2] became [0, 1]); now
    any non-whole, NaN, negative or out-of-range label is a ``ValueError``.
    """
    if not isinstance(y, Tensor):
        y = torch.as_tensor(np.asarray(y))
    if torch.is_complex(y):
        raise TypeError(f"{what} have dtype {y.dtype}; expected integer class ids")
    if torch.is_floating_point(y):
        bad = ~torch.isfinite(y) | (y != torch.round(y))
        if bool(bad.any()):
            raise ValueError(
                f"{what} must be whole class ids 0, 1, ..., got non-integer values such as "
                f"{y[bad][:3].tolist()} (dtype {y.dtype}); labels are never rounded or truncated"
            )
    y = y.long()
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"{what} must be class ids >= 0, got {int(y.min())}")
    if n_classes is not None:
        n_classes = check_number(_whole(n_classes), "n_classes", low=1, integer=True)
        if y.numel() and int(y.max()) >= n_classes:
            raise ValueError(f"{what} must lie in 0..{n_classes - 1} ({n_classes} classes), got {int(y.max())}")
    return y


def to_batch(dataset, modalities: Sequence[str] | None = None, rows=None, *, n_classes: int | None = None) -> Batch:
    """Turn a Hugging Face ``datasets.Dataset`` (or a slice of it) into a :class:`Batch`.

    Fixed-shape columns (nested lists of equal lengths, the layout of every
    built-in dataset) are read straight from Arrow in one go, with no per-row
    Python loop; other columns go through the datasets torch formatter.
    ``rows`` is an optional slice or list of row indices. Modalities come back
    as float32, labels as int64: labels must be whole numbers >= 0 (and below
    ``n_classes``, given here or by a ``ClassLabel`` feature), else ``ValueError``.
    """
    names = list(modalities) if modalities is not None else modality_columns(dataset)
    if not names:
        raise ValueError(f"dataset has no modality columns (columns: {dataset.column_names})")
    for m in names:
        if m not in dataset.column_names:
            raise ValueError(f"unknown modality {m!r}; the dataset has columns {dataset.column_names}")
    if "label" not in dataset.column_names:
        raise ValueError(f"dataset has no 'label' column (columns: {dataset.column_names})")
    if n_classes is None:
        n_classes = getattr(getattr(dataset, "features", {}).get("label"), "num_classes", None)
    table = _read_columns(dataset, [*names, "label"], rows)
    inputs = {m: table[m].float() for m in names}
    y = check_labels(table["label"], n_classes, what="to_batch labels")
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
    """Stack batches along the batch dimension.

    Modalities are those of every batch, in order of first appearance. A batch
    that lacks a modality some other batch has contributes zero-filled rows
    marked absent (``present[m] = False``), as everywhere in the library; a
    modality whose trailing shape differs between batches is a ``ValueError``.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("concat_batches needs at least one batch")
    for i, b in enumerate(batches):
        if not isinstance(b, Batch):
            raise TypeError(f"concat_batches: item {i} is a {type(b).__name__}, not a Batch")
    names: list[str] = []
    like: dict[str, Tensor] = {}
    for i, b in enumerate(batches):
        for m, x in b.inputs.items():
            if m not in like:
                names.append(m)
                like[m] = x
            elif x.shape[1:] != like[m].shape[1:]:
                raise ValueError(
                    f"concat_batches: modality {m!r} has shape {tuple(x.shape)} in batch {i} but "
                    f"{tuple(like[m].shape)} in an earlier batch; trailing shapes must agree"
                )
    incomplete = any(set(b.inputs) != set(names) for b in batches)

    def rows(b: Batch, m: str) -> Tensor:
        if m in b.inputs:
            return b.inputs[m]
        ref = like[m]
        return torch.zeros((b.size, *ref.shape[1:]), dtype=ref.dtype, device=ref.device)

    inputs = {m: torch.cat([rows(b, m) for b in batches]) for m in names}
    y = torch.cat([b.y for b in batches])
    if all(b.present is None for b in batches) and not incomplete:
        return Batch(inputs, y)
    present = {}
    for m in names:
        parts = []
        for b in batches:
            if m in b.inputs:
                parts.append(check_present(b.present, list(b.inputs), b.size)[m].cpu())
            else:
                parts.append(torch.zeros(b.size, dtype=torch.bool))
        present[m] = torch.cat(parts).to(inputs[m].device)
    return Batch(inputs, y, present)
