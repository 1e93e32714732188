"""What every latent-variable model of this package shares.

- the Gaussian pieces of survey Eq. (3): the reparameterised sample, the KL of a
  diagonal Gaussian to ``N(0, I)`` in closed form, and the unit-variance
  Gaussian log-likelihood used as the reconstruction term;
- :class:`MLPDecoder`, the default per-modality decoder ``z -> x_m``;
- :class:`LatentModel`, a small base class that checks a modality dict against
  the shapes the model was built for, turns the presence mask into a
  ``(B, M)`` tensor, and standardises each modality with fixed statistics so
  that one unit of reconstruction error means the same for an 8x8 image and a
  20x20 spectrogram.

Shapes: ``B`` batch, ``M`` modalities, ``d`` latent width.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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
from ..models import MLPEncoder

LOG_2PI = math.log(2 * math.pi)


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """``z = mu + sigma * eps``, ``eps ~ N(0, I)`` (Kingma & Welling 2014). (B, d) -> (B, d)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` per row, the KL term of Eq. (3).

    Closed form ``0.5 * sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1)``. (B, d) -> (B,).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=-1)


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """``log N(z; mu, diag(exp(logvar)))`` summed over the last dimension. (..., d) -> (...)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(dim=-1)


def squared_error(x_hat: Tensor, x: Tensor) -> Tensor:
    """``sum_j (x_hat_j - x_j)^2`` over every non-batch dimension. (B, ...) -> (B,)."""
    return (x_hat - x).pow(2).flatten(1).sum(dim=1)


class MLPDecoder(nn.Module):
    """``z (B, in_dim) -> Linear -> ReLU ... -> Linear -> x_hat (B, *out_shape)``."""

    def __init__(self, in_dim: int, out_shape: Sequence[int], hidden: Sequence[int] = (128,)):
        super().__init__()
        self.in_dim = int(in_dim)
        self.out_shape = tuple(int(s) for s in out_shape)
        widths = [self.in_dim, *hidden, math.prod(self.out_shape)]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(len(z), *self.out_shape)  # (B, in_dim) -> (B, *out_shape)


def _check_shapes(shapes: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
    if not isinstance(shapes, Mapping) or not shapes:
        raise ValueError(f"shapes must be a non-empty dict {{modality: trailing shape}}, got {shapes!r}")
    out = {}
    for m, s in shapes.items():
        if not isinstance(m, str):
            raise TypeError(f"shapes: modality names must be strings, got {m!r}")
        s = (s,) if isinstance(s, int) else tuple(s)
        if not s or any(not isinstance(k, int) or k <= 0 for k in s):
            raise ValueError(f"shapes[{m!r}] must be a tuple of positive ints, got {s!r}")
        out[m] = s
    return out


class LatentModel(nn.Module):
    """Base class: modality shapes, input checks, presence masks, standardisation.

    ``shapes``: ``{modality: trailing input shape}``, e.g. ``{"image": (8, 8),
    "audio": (20, 20)}``. ``stats``: ``{modality: (mean, std)}`` (scalars, e.g.
    :func:`mmlearn.data.modality_stats` of the training inputs); each input is
    standardised as ``(x - mean) / std`` before encoding and reconstruction
    errors are measured in those units (1.0 per element = predicting the mean).
    Without ``stats`` inputs are used as they are. The statistics are buffers:
    they move with ``.to(device)`` and are saved in ``state_dict``.
    """

    def __init__(self, shapes: Mapping[str, Sequence[int]], stats: Mapping[str, tuple[float, float]] | None = None):
        super().__init__()
        self.shapes = _check_shapes(shapes)
        stats = dict(stats) if stats is not None else {}
        for m in stats:
            if m not in self.shapes:
                raise ValueError(f"stats: unknown modality {m!r}; expected one of {sorted(self.shapes)}")
        for m, st in stats.items():
            if not isinstance(st, (tuple, list)) or len(st) != 2:
                raise TypeError(f"stats[{m!r}] must be a pair (mean, std), got {st!r}")
            check_number(st[0], f"stats[{m!r}] mean")
            check_number(st[1], f"stats[{m!r}] std", low=0.0, low_open=True)
        mean = torch.tensor([float(stats[m][0]) if m in stats else 0.0 for m in self.shapes])
        std = torch.tensor([float(stats[m][1]) if m in stats else 1.0 for m in self.shapes])
        self.register_buffer("input_mean", mean)
        self.register_buffer("input_std", std)

    @property
    def modalities(self) -> list[str]:
        return list(self.shapes)

    def _encoder_backbones(self, encoders, feature_dim: int, hidden: int) -> nn.ModuleDict:
        """Given encoders (each with ``out_dim``), or an MLP per modality: (B, *shape) -> (B, feature_dim)."""
        if encoders is None:
            return nn.ModuleDict({m: MLPEncoder(s, feature_dim, hidden=(hidden,)) for m, s in self.shapes.items()})
        encoders = nn.ModuleDict(dict(encoders))
        if set(encoders) != set(self.shapes):
            raise ValueError(f"encoders are given for {sorted(encoders)} but the model has modalities {self.modalities}")
        for m, e in encoders.items():
            if not isinstance(getattr(e, "out_dim", None), int):
                raise ValueError(f"encoders[{m!r}] must have an int attribute out_dim (its feature width)")
        return nn.ModuleDict({m: encoders[m] for m in self.shapes})

    def _decoders(self, decoders, in_dim: int, hidden: int) -> nn.ModuleDict:
        if decoders is None:
            return nn.ModuleDict({m: MLPDecoder(in_dim, s, hidden=(hidden,)) for m, s in self.shapes.items()})
        decoders = nn.ModuleDict(dict(decoders))
        if set(decoders) != set(self.shapes):
            raise ValueError(f"decoders are given for {sorted(decoders)} but the model has modalities {self.modalities}")
        return nn.ModuleDict({m: decoders[m] for m in self.shapes})

    # boundary ---------------------------------------------------------------------------
    def check_inputs(
        self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Validate and standardise ``inputs``; return ``(standardised inputs, mask (B, M) bool)``.

        A modality left out of ``inputs`` is absent in every row (zero-filled
        here); a modality given but marked ``False`` in ``present`` is absent
        in those rows. Absent rows are zeroed (by selection, so NaN/inf there
        leaks nowhere); NaN/inf in a present row raises a ``ValueError`` naming
        the modality. Floating-point inputs are cast to the model's dtype;
        integer, bool or complex inputs raise a ``TypeError``. Wrong shapes and
        unknown names raise a ``ValueError`` naming them.
        """
        batch = check_modality_dict(inputs, self.shapes, what=f"{type(self).__name__} inputs", require_all=False)
        first = next(iter(inputs.values()))
        device = first.device
        if present is not None:
            for m in present:
                if m not in self.shapes:
                    raise ValueError(f"present: unknown modality {m!r}; expected one of {self.modalities}")
                if m not in inputs and bool(torch.as_tensor(present[m]).any()):
                    raise ValueError(f"present[{m!r}] is True for some rows but inputs has no {m!r} tensor")
        given = {m: present[m] for m in inputs if present is not None and m in present}
        mask = check_present(given or None, list(inputs), batch, device)
        what = f"{type(self).__name__} inputs"
        dtype = self.input_mean.dtype
        # dtype rule: floating point of any precision -> the model's dtype; int/bool/complex -> TypeError
        cast = {m: check_float_input(inputs[m], m, dtype, what=what) for m in inputs}
        # NaN/inf in a present row is an error naming the modality; absent rows may hold anything
        if batch > 0:  # (nothing to check in an empty batch; objectives reject it, see require_rows)
            check_finite(cast, mask, what=what)
        out, columns = {}, []
        for j, m in enumerate(self.modalities):
            if m in inputs:
                x = (cast[m] - self.input_mean[j]) / self.input_std[j]
                keep = mask[m]
            else:
                x = torch.zeros(batch, *self.shapes[m], device=device, dtype=dtype)
                keep = torch.zeros(batch, dtype=torch.bool, device=device)
            # absent rows are *selected* away (torch.where), so a NaN there cannot reach any output
            out[m] = fill_absent(x, keep)
            columns.append(keep)
        return out, torch.stack(columns, dim=1)  # (B, M)

    @staticmethod
    def require_rows(mask: Tensor, what: str = "objective") -> None:
        """An objective is a mean over rows: an empty batch has none (it would be NaN)."""
        if mask.shape[0] == 0:
            raise ValueError(f"{what}: the batch is empty (0 rows); an objective needs at least one row")

    def destandardize(self, m: str, x: Tensor) -> Tensor:
        """Back from standardised units to the data's scale."""
        j = self.modalities.index(m)
        return x * self.input_std[j] + self.input_mean[j]

    def check_modality(self, m: str, what: str = "modality") -> int:
        if m not in self.shapes:
            raise ValueError(f"unknown {what} {m!r}; expected one of {self.modalities}")
        return self.modalities.index(m)

    @staticmethod
    def require_some(mask: Tensor, what: str = "inputs") -> None:
        """Every row needs at least one observed modality to infer a latent."""
        empty = ~mask.any(dim=1)
        if bool(empty.any()):
            rows = torch.nonzero(empty).flatten()[:5].tolist()
            raise ValueError(f"{what}: rows {rows} have no observed modality; at least one is needed to infer z")
