"""The one fusion contract, and the registry that lets a notebook swap methods.

Every fusion module is built as ``Fusion(in_dims, out_dim, **options)`` and
called as ``fusion(features, present=None) -> Tensor (B, out_dim)``, where
``features`` is ``dict[str, Tensor]`` with ``features[m]`` of shape
``(B, in_dims[m])`` and ``present`` an optional ``dict[str, BoolTensor (B,)]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .._checks import (
    check_finite,
    check_float_input,
    check_modality_dict,
    check_number,
    check_present,
    fill_absent,
)

#: name -> class, filled by :func:`register_fusion`; read by dropdowns.
FUSIONS: dict[str, type[Fusion]] = {}


def register_fusion(name: str):
    """Class decorator: make a fusion available as ``make_fusion(name, ...)``."""

    def deco(cls):
        if name in FUSIONS and FUSIONS[name] is not cls:
            raise ValueError(f"fusion name {name!r} is already registered to {FUSIONS[name].__name__}")
        FUSIONS[name] = cls
        cls.name = name
        return cls

    return deco


def make_fusion(name: str, in_dims: Mapping[str, int], out_dim: int, **options) -> Fusion:
    """Build the fusion registered under ``name``."""
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; available: {sorted(FUSIONS)}")
    return FUSIONS[name](in_dims, out_dim, **options)


class Fusion(nn.Module):
    """Base class: stores ``in_dims``/``out_dim`` and checks inputs at the boundary.

    Class attributes subclasses set:

    - ``handles_missing``: the module uses ``present`` itself (otherwise absent
      features are simply zero-filled before fusion);
    - ``outputs_predictions``: the output is already a prediction (late fusion),
      so a classifier puts no head after it and ``out_dim`` is the class count.
    """

    name = "fusion"
    handles_missing = False
    outputs_predictions = False

    def __init__(self, in_dims: Mapping[str, int], out_dim: int):
        super().__init__()
        if not isinstance(in_dims, Mapping) or not in_dims:
            raise ValueError(f"in_dims must be a non-empty dict {{modality: width}}, got {in_dims!r}")
        for m, d in in_dims.items():
            if not isinstance(m, str):
                raise TypeError(f"in_dims: modality names must be strings, got {m!r}")
            if isinstance(d, bool) or not isinstance(d, int) or d <= 0:
                raise ValueError(f"in_dims[{m!r}] must be a positive int, got {d!r}")
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim <= 0:
            raise ValueError(f"out_dim must be a positive int, got {out_dim!r}")
        self.in_dims = dict(in_dims)
        self.out_dim = out_dim

    @property
    def modalities(self) -> list[str]:
        return list(self.in_dims)

    def expected_shapes(self) -> dict[str, tuple]:
        """Trailing shape of each input (after the batch dimension)."""
        return {m: (d,) for m, d in self.in_dims.items()}

    @property
    def param_dtype(self) -> torch.dtype:
        """The dtype of the module's parameters (float32 unless converted, e.g. with ``.double()``)."""
        for t in self.parameters():
            return t.dtype
        for t in self.buffers():
            if torch.is_floating_point(t):
                return t.dtype
        return torch.get_default_dtype()

    def check(
        self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Validate ``features`` and return ``(features, present)`` in ``in_dims`` order.

        The shared boundary rules (``mmlearn._checks``): shapes and names are
        checked; floating-point inputs are converted to the parameters' dtype,
        integer/bool inputs are rejected with a ``TypeError``; NaN/inf in a
        *present* row is a ``ValueError`` naming the modality; absent rows are
        replaced by zeros with ``torch.where`` (never multiplied by the mask:
        ``NaN * 0`` is ``NaN``), so no module ever sees what an absent row held.
        """
        what = f"{type(self).__name__} features"
        batch = check_modality_dict(features, self.expected_shapes(), what=what)
        dtype = self.param_dtype
        x = {m: check_float_input(features[m], m, dtype, what=what) for m in self.modalities}
        first = x[self.modalities[0]]
        mask = check_present(present, self.modalities, batch, first.device)
        check_finite(x, mask, what=what)
        out = {m: fill_absent(x[m], mask[m]) for m in self.modalities}
        return out, mask

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> Tensor:
        raise NotImplementedError

    def regularizer(self) -> Tensor | None:
        """The method's own training-loss term from the last training forward pass, already weighted (what its
        paper adds to the task loss: the information bottleneck's ``beta * KL``, DEQ's Jacobian penalty), or
        ``None`` when it has none (or it is switched off). :func:`mmlearn.experiments.train_fusion` adds it."""
        return None


def check_weights(values: Mapping[str, float], names: list[str], what: str) -> Tensor:
    """Fixed per-modality weights ``{modality: w_m}`` -> ``(M,)`` in ``names`` order (missing names get 0).

    Each ``w_m`` must be a finite number >= 0 (``check_number``: NaN does not slip through ``w < 0``),
    and the sum must be positive. Unknown names are a ``ValueError``.
    """
    for m in values:
        if m not in names:
            raise ValueError(f"{what}: unknown modality {m!r}; expected one of {names}")
    w = [check_number(values.get(m, 0.0), f"{what}[{m!r}]", low=0.0) for m in names]
    if sum(w) <= 0:
        raise ValueError(f"{what} must be non-negative with a positive sum, got {dict(values)}")
    return torch.tensor(w, dtype=torch.float32)


def stack_present(present: Mapping[str, Tensor], names: list[str], dtype=torch.float32) -> Tensor:
    """``(B, M)`` float mask in the order of ``names``."""
    return torch.stack([present[m] for m in names], dim=1).to(dtype)
