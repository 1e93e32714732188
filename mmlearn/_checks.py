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
        if m.dtype != torch.bool and m.numel() and not bool(((m == 0) | (m == 1)).all()):
            raise ValueError(
                f"present[{n!r}] must hold only True/False (or 0/1), got values such as "
                f"{m[(m != 0) & (m != 1)][:3].tolist()}"
            )
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


def chosen_modalities(modalities, value, names: Iterable[str], what: str) -> list[str]:
    """The modalities an operation applies to: ``modalities`` (one name or several), else the keys of ``value``
    when it is a dict ``{modality: amount}``, else every one of ``names``. An unknown name is a ``ValueError``."""
    names = list(names)
    if modalities is None:
        modalities = list(value) if isinstance(value, Mapping) else names
    elif isinstance(modalities, str):
        modalities = [modalities]
    for m in modalities:
        if m not in names:
            raise ValueError(f"{what}: unknown modality {m!r}; inputs have {sorted(names)}")
    return list(modalities)


def per_modality(value, names: Iterable[str], what: str) -> dict:
    """Expand a scalar or a dict into ``{name: value}``, rejecting unknown names."""
    names = list(names)
    if isinstance(value, Mapping):
        for k in value:
            if k not in names:
                raise ValueError(f"{what}: unknown modality {k!r}; expected one of {sorted(names)}")
        return {n: value.get(n, 0.0) for n in names}
    return {n: value for n in names}


# --------------------------------------------------------------------------------------
# Shared rules for dtypes, non-finite values, absent rows, numeric options and losses.
# Every module uses these, so that one rule holds everywhere (docs/ARCHITECTURE.md).
# --------------------------------------------------------------------------------------


def check_float_input(x: Tensor, name: str, dtype: torch.dtype = torch.float32, *, what: str = "inputs") -> Tensor:
    """The dtype rule at a model's boundary.

    Floating-point inputs of any precision are converted to ``dtype`` (the
    model's parameter dtype, float32 by default); integer, bool and complex
    tensors are rejected with a ``TypeError``: they are almost always labels or
    masks passed by mistake, and a silent cast would hide that.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}[{name!r}] must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(
            f"{what}[{name!r}] has dtype {x.dtype}; expected a floating-point tensor "
            f"(it is converted to {dtype}); call .float() if the values really are features"
        )
    return x if x.dtype == dtype else x.to(dtype)


def row_mask(mask: Tensor, x: Tensor) -> Tensor:
    """Reshape a ``(B,)`` mask to broadcast over ``x`` of shape ``(B, ...)``."""
    return mask.reshape(-1, *([1] * (x.dim() - 1)))


def fill_absent(x: Tensor, present: Tensor, value: float | Tensor = 0.0) -> Tensor:
    """``x`` with every absent row replaced by ``value``, whatever that row held.

    Selection with ``torch.where``, never multiplication by the mask: ``NaN * 0``
    is ``NaN``, so a multiplied mask lets an absent NaN row reach the output.
    ``value`` may be a scalar or a tensor broadcastable to one row (e.g. a
    learned missing-modality embedding).
    """
    if bool(present.all()):
        return x
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    return torch.where(row_mask(present.to(torch.bool), x), x, value)


def check_finite(
    inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None, *, what: str = "inputs"
) -> None:
    """Reject NaN/inf in *present* rows with a ``ValueError`` naming the modality.

    Absent rows may hold anything (they are ignored, see :func:`fill_absent`).
    """
    for name, x in inputs.items():
        if not torch.is_floating_point(x) and not torch.is_complex(x) or x.numel() == 0:
            continue
        bad = ~torch.isfinite(x).reshape(x.shape[0], -1).all(dim=1) if x.dim() > 1 else ~torch.isfinite(x)
        if present is not None and name in present:
            bad = bad & present[name].to(device=bad.device, dtype=torch.bool)
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten()[:5].tolist()
            raise ValueError(
                f"{what}[{name!r}] holds NaN or inf in {int(bad.sum())} present row(s) (first: {rows}); "
                "clean the data, or mark those rows absent with present[name] = False"
            )


def check_number(
    value,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float | int:
    """A numeric option: a finite real (or an int with ``integer``) inside the given bounds.

    ``x < 0`` is False for NaN, so a plain comparison lets NaN through; this does not.
    Returns the value as ``float`` (or ``int``).
    """
    kind = "whole number" if integer else "real number"
    if isinstance(value, (bool, str, bytes)) or (isinstance(value, Tensor) and value.numel() != 1):
        raise TypeError(f"{name} must be a {kind}, got {value!r}")
    if hasattr(value, "item") and not isinstance(value, (int, float)):  # numpy / torch scalars
        if getattr(value, "dtype", None) is not None and str(value.dtype).endswith("bool"):
            raise TypeError(f"{name} must be a {kind}, got {value!r}")
        value = value.item()
    if integer:
        if not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
            raise TypeError(f"{name} must be a whole number, got {value!r}")
        out: float | int = int(value)
    else:
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a real number, got {value!r}") from None
        if out != out or out in (float("inf"), float("-inf")):
            raise ValueError(f"{name} must be finite, got {out}")
    if low is not None and (out < low or (low_open and out == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {out}")
    if high is not None and (out > high or (high_open and out == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {out}")
    return out


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss (the run diverged)."""


def check_finite_loss(loss: Tensor, *, epoch: int, step: int, where: str = "fit", on_nonfinite: str = "raise") -> bool:
    """Stop a training loop on a non-finite loss.

    Returns ``True`` when the loss is finite. Otherwise raises
    :class:`NonFiniteLossError` naming the loop, the epoch and the step
    (``on_nonfinite="raise"``, the default), or warns and returns ``False``
    (``on_nonfinite="warn"``), in which case the caller skips the update so the
    parameters stay finite.
    """
    if on_nonfinite not in ("raise", "warn"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}")
    value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
    if value == value and value not in (float("inf"), float("-inf")):
        return True
    msg = (
        f"{where}: the loss became {value} at epoch {epoch}, step {step}; training diverged "
        "(lower the learning rate, check the inputs for NaN/inf, or pass on_nonfinite='warn' to skip such steps)"
    )
    if on_nonfinite == "raise":
        raise NonFiniteLossError(msg)
    import warnings

    warnings.warn(msg + "; this step's update was skipped", RuntimeWarning, stacklevel=3)
    return False
