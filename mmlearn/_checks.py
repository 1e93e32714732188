"""Boundary checks shared by every module.

DESIGN: inputs are ``dict[str, Tensor]`` keyed by modality name, each ``(B, ...)``,
with an optional presence mask ``present: dict[str, BoolTensor (B,)]``. These
helpers turn a wrong shape, an unknown modality or a disagreeing batch size into
a ``ValueError`` / ``TypeError`` that names the modality, the shape received and
the shape expected. Nothing is broadcast silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_modality_dict(
    inputs: Mapping[str, Tensor],
    expected: Mapping[str, Sequence[int | None]] | Iterable[str] | None = None,
    *,
    what: str = "inputs",
    require_all: bool = True,
) -> int:
    """Validate a modality dict and return its batch size ``B``.

    ``expected`` is either a mapping from modality name to the expected trailing
    shape (``None`` entries match any size), or an iterable of allowed names.
    With ``require_all`` every expected modality must be given.
    """
    if not isinstance(inputs, Mapping):
        raise TypeError(f"{what} must be a dict[str, Tensor] keyed by modality, got {type(inputs).__name__}")
    if len(inputs) == 0:
        raise ValueError(f"{what} is empty: at least one modality is needed")
    shapes = dict(expected) if isinstance(expected, Mapping) else None
    names = set(shapes) if shapes is not None else (set(expected) if expected is not None else None)
    batch: int | None = None
    first: str | None = None
    for name, x in inputs.items():
        if not isinstance(name, str):
            raise TypeError(f"{what}: modality names must be strings, got {name!r}")
        if names is not None and name not in names:
            raise ValueError(f"{what}: unknown modality {name!r}; expected one of {sorted(names)}")
        if not isinstance(x, Tensor):
            raise TypeError(f"{what}[{name!r}] must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0:
            raise ValueError(f"{what}[{name!r}] has shape (); expected (B, ...)")
        if shapes is not None and shapes[name] is not None:
            want = tuple(shapes[name])
            got = _shape(x)[1:]
            if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
                pretty = ", ".join("*" if w is None else str(w) for w in want)
                raise ValueError(f"{what}[{name!r}] has shape {_shape(x)}; expected (B, {pretty})")
        if batch is None:
            batch, first = x.shape[0], name
        elif x.shape[0] != batch:
            raise ValueError(
                f"{what}: modalities disagree on batch size: {first!r} has {batch} rows "
                f"(shape {_shape(inputs[first])}) but {name!r} has {x.shape[0]} (shape {_shape(x)})"
            )
    if require_all and names is not None:
        missing = sorted(names - set(inputs))
        if missing:
            raise ValueError(
                f"{what}: missing modality {missing[0]!r} (got {sorted(inputs)}, expected {sorted(names)}); "
                "pass a zero-filled tensor and present[name] = False for absent inputs"
            )
    assert batch is not None
    return batch


def check_present(
    present: Mapping[str, Tensor] | None, names: Iterable[str], batch: int, device: torch.device | None = None
) -> dict[str, Tensor]:
    """Return a full presence mask ``{name: BoolTensor (B,)}``; ``None`` means all present."""
    names = list(names)
    if present is None:
        return {n: torch.ones(batch, dtype=torch.bool, device=device) for n in names}
    if not isinstance(present, Mapping):
        raise TypeError(f"present must be a dict[str, BoolTensor], got {type(present).__name__}")
    out = {}
    for n in present:
        if n not in names:
            raise ValueError(f"present: unknown modality {n!r}; expected one of {sorted(names)}")
    for n in names:
        if n not in present:
            out[n] = torch.ones(batch, dtype=torch.bool, device=device)
            continue
        m = present[n]
        if not isinstance(m, Tensor):
            raise TypeError(f"present[{n!r}] must be a BoolTensor of shape ({batch},), got {type(m).__name__}")
        if tuple(m.shape) != (batch,):
            raise ValueError(f"present[{n!r}] has shape {tuple(m.shape)}; expected ({batch},)")
        out[n] = m.to(dtype=torch.bool, device=device if device is not None else m.device)
    return out


def check_level(level: float, name: str) -> float:
    """A corruption level must lie in [0, 1]."""
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise TypeError(f"level for modality {name!r} must be a number in [0, 1], got {level!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"level for modality {name!r} must lie in [0, 1], got {value}")
    return value


def per_modality(value, names: Iterable[str], what: str) -> dict:
    """Expand a scalar or a dict into ``{name: value}``, rejecting unknown names."""
    names = list(names)
    if isinstance(value, Mapping):
        for k in value:
            if k not in names:
                raise ValueError(f"{what}: unknown modality {k!r}; expected one of {sorted(names)}")
        return {n: value.get(n, 0.0) for n in names}
    return {n: value for n in names}
