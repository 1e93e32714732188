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

from .._checks import check_modality_dict, check_present

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
            if not isinstance(d, int) or d <= 0:
                raise ValueError(f"in_dims[{m!r}] must be a positive int, got {d!r}")
        if not isinstance(out_dim, int) or out_dim <= 0:
            raise ValueError(f"out_dim must be a positive int, got {out_dim!r}")
        self.in_dims = dict(in_dims)
        self.out_dim = out_dim

    @property
    def modalities(self) -> list[str]:
        return list(self.in_dims)

    def expected_shapes(self) -> dict[str, tuple]:
        """Trailing shape of each input (after the batch dimension)."""
        return {m: (d,) for m, d in self.in_dims.items()}

    def check(
        self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Validate ``features`` and return ``(features, present)`` in ``in_dims`` order.

        Absent rows are zeroed so that no module ever sees a stale value where
        ``present`` says ``False``.
        """
        batch = check_modality_dict(features, self.expected_shapes(), what=f"{type(self).__name__} features")
        first = next(iter(features.values()))
        mask = check_present(present, self.modalities, batch, first.device)
        out = {}
        for m in self.modalities:
            x = features[m]
            if present is not None and not bool(mask[m].all()):
                x = x * mask[m].reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
            out[m] = x
        return out, mask

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> Tensor:
        raise NotImplementedError


def stack_present(present: Mapping[str, Tensor], names: list[str], dtype=torch.float32) -> Tensor:
    """``(B, M)`` float mask in the order of ``names``."""
    return torch.stack([present[m] for m in names], dim=1).to(dtype)
