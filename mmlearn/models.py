"""Small encoders for the built-in modalities and the multimodal classifier.

An encoder maps one modality ``(B, *in_shape)`` to a feature vector
``(B, out_dim)``. A :class:`MultimodalClassifier` is encoders + fusion + head
(DESIGN.md) and can also return per-modality (unimodal) logits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ._checks import check_finite, check_float_input, check_modality_dict, check_present, fill_absent
from .fusion import FUSIONS, Fusion, make_fusion


class Encoder(nn.Module):
    """Base: ``in_shape`` (trailing input shape) and ``out_dim`` (feature width)."""

    in_shape: tuple[int, ...]
    out_dim: int


class MLPEncoder(Encoder):
    """Flatten, then ``Linear -> ReLU`` per hidden width, then ``Linear -> ReLU`` to ``out_dim``.

    With ``hidden=()`` and ``activation=False`` it is a single linear map; with
    ``out_dim=None`` it only flattens (the identity encoder of early fusion).
    """

    def __init__(
        self,
        in_shape: int | Sequence[int],
        out_dim: int | None = 32,
        hidden: Sequence[int] = (64,),
        activation: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
        flat = int(torch.tensor(self.in_shape).prod())
        layers: list[nn.Module] = [nn.Flatten()]
        if out_dim is None:
            self.out_dim = flat
        else:
            widths = [flat, *hidden, out_dim]
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
                layers.append(nn.Linear(a, b))
                last = i == len(widths) - 2
                if not last or activation:
                    layers.append(nn.ReLU())
                if dropout > 0 and not last:
                    layers.append(nn.Dropout(dropout))
            self.out_dim = out_dim
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ImageCNN(Encoder):
    """A small CNN for 8x8 grey images: (B, 8, 8) or (B, 1, 8, 8) -> (B, out_dim).

    conv3x3(1->c) ReLU, conv3x3(c->2c) ReLU, maxpool 2 -> (B, 2c, 4, 4), Linear -> ReLU.
    """

    def __init__(self, out_dim: int = 32, channels: int = 16, size: int = 8):
        super().__init__()
        self.in_shape = (size, size)
        self.out_dim = out_dim
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(2 * channels * (size // 2) ** 2, out_dim), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)  # (B, 8, 8) -> (B, 1, 8, 8)
        return self.fc(self.conv(x))


class SpectrogramCNN(Encoder):
    """A small conv net for log-mel spectrograms: (B, n_mels, n_frames) -> (B, out_dim).

    Mel bands are channels of a 1-D convolution over time (a common choice for
    short speech clips): conv1d(n_mels->c, 3) ReLU, conv1d(c->c, 3) ReLU,
    global average and max pooling over time -> (B, 2c), Linear -> ReLU.
    """

    def __init__(self, out_dim: int = 32, n_mels: int = 20, n_frames: int = 20, channels: int = 32):
        super().__init__()
        self.in_shape = (n_mels, n_frames)
        self.out_dim = out_dim
        self.conv = nn.Sequential(
            nn.Conv1d(n_mels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1),
            nn.ReLU(),
        )
        self.fc = nn.Sequential(nn.Linear(2 * channels, out_dim), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)  # (B, c, T)
        pooled = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)  # (B, 2c)
        return self.fc(pooled)


def default_encoders(modalities: Mapping[str, Sequence[int]], out_dim: int = 32) -> nn.ModuleDict:
    """Pick a built-in encoder per modality: ImageCNN for ``image`` (8x8),
    SpectrogramCNN for ``audio`` (mels x frames), an MLP otherwise."""
    encoders = {}
    for m, shape in modalities.items():
        shape = tuple(shape)
        if m == "image" and len(shape) == 2 and shape[0] == shape[1]:
            encoders[m] = ImageCNN(out_dim, size=shape[0])
        elif m == "audio" and len(shape) == 2:
            encoders[m] = SpectrogramCNN(out_dim, n_mels=shape[0], n_frames=shape[1])
        else:
            encoders[m] = MLPEncoder(shape, out_dim)
    return nn.ModuleDict(encoders)


@dataclass
class MultimodalOutput:
    """Everything one forward pass computed, for loss terms and hooks.

    ``logits`` (B, C); ``features[m]`` (B, d_m) per encoder; ``fused`` (B, d)
    the fusion output (equal to ``logits`` for late fusion); ``unimodal[m]``
    (B, C) per-modality logits when the model has them; ``present`` the
    presence mask used (``None`` if all present).
    """

    logits: Tensor
    features: dict[str, Tensor]
    fused: Tensor
    unimodal: dict[str, Tensor] = field(default_factory=dict)
    present: dict[str, Tensor] | None = None


class MultimodalClassifier(nn.Module):
    """Encoders + fusion + head (DESIGN.md).

    ``encoders``: ``{modality: Encoder}``; ``fusion``: a :class:`Fusion` or a
    registered name (built with ``in_dims`` from the encoders and
    ``fusion_dim`` as width, or ``n_classes`` for late fusion);
    ``unimodal_heads``: also learn a linear classifier on each encoder's
    features, returned as per-modality logits (late fusion has them built in).

    Inputs pass :meth:`prepare_inputs` first: float64 is converted, integer and
    bool inputs are a ``TypeError``, NaN/inf in a present row a ``ValueError``
    (both name the modality), and absent rows are zero-filled before encoding.

    ``model(inputs, present=None)`` returns fused logits (B, C);
    ``model(inputs, present, return_unimodal=True)`` returns
    ``(logits, {modality: logits})``; :meth:`forward_all` returns a
    :class:`MultimodalOutput`.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        fusion: Fusion | str,
        n_classes: int,
        *,
        fusion_dim: int = 64,
        unimodal_heads: bool = False,
        **fusion_options,
    ):
        super().__init__()
        if not encoders:
            raise ValueError("a MultimodalClassifier needs at least one encoder")
        self.encoders = nn.ModuleDict(dict(encoders))
        in_dims = {m: int(e.out_dim) for m, e in self.encoders.items()}
        if isinstance(fusion, str):
            if fusion not in FUSIONS:
                raise ValueError(f"unknown fusion {fusion!r}; available: {sorted(FUSIONS)}")
            late = FUSIONS[fusion].outputs_predictions
            fusion = make_fusion(fusion, in_dims, n_classes if late else fusion_dim, **fusion_options)
        elif fusion_options:
            raise ValueError(f"fusion options {sorted(fusion_options)} given with an already built fusion module")
        if not isinstance(fusion, Fusion):
            raise TypeError(f"fusion must be a mmlearn.fusion.Fusion or a registered name, got {type(fusion).__name__}")
        if set(fusion.in_dims) != set(in_dims) or any(fusion.in_dims[m] != d for m, d in in_dims.items()):
            raise ValueError(f"fusion expects inputs {fusion.in_dims} but the encoders give {in_dims}")
        self.fusion = fusion
        self.n_classes = n_classes
        if fusion.outputs_predictions:
            if fusion.out_dim != n_classes:
                raise ValueError(f"{type(fusion).__name__} predicts {fusion.out_dim} classes, expected {n_classes}")
            self.head = nn.Identity()
        else:
            self.head = nn.Linear(fusion.out_dim, n_classes)
        self.unimodal_heads = (
            nn.ModuleDict({m: nn.Linear(d, n_classes) for m, d in in_dims.items()}) if unimodal_heads else None
        )

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    def expected_shapes(self) -> dict[str, tuple]:
        return {m: tuple(getattr(e, "in_shape", (None,))) for m, e in self.encoders.items()}

    def _param_dtype(self) -> torch.dtype:
        p = next(self.parameters(), None)
        return p.dtype if p is not None else torch.float32

    def prepare_inputs(
        self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
        """The boundary rules, applied before any encoder sees the data.

        Shapes and names are checked; floating inputs are converted to the
        parameters' dtype and integer/bool ones rejected (``TypeError`` naming the
        modality); NaN/inf in a *present* row is a ``ValueError`` naming the
        modality; every absent row is replaced by zeros (``torch.where``), so
        whatever it held (NaN included) reaches neither the encoders, nor
        BatchNorm statistics, nor the outputs. Returns ``(inputs, present)``
        with ``present`` a full boolean mask, or ``None`` when none was given.
        """
        n = check_modality_dict(inputs, self.expected_shapes(), what="model inputs")
        dtype = self._param_dtype()
        xs = {m: check_float_input(inputs[m], m, dtype, what="model inputs") for m in self.modalities}
        if present is None:
            mask = None
        else:
            device = next(iter(xs.values())).device
            mask = check_present(present, self.modalities, n, device)
        if n > 0:
            check_finite(xs, mask, what="model inputs")
        if mask is not None:
            xs = {m: fill_absent(x, mask[m]) for m, x in xs.items()}
        return xs, mask

    def encode(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Features per modality, each (B, d_m), after :meth:`prepare_inputs` (absent rows zero-filled)."""
        xs, _ = self.prepare_inputs(inputs, present)
        return {m: self.encoders[m](xs[m]) for m in self.modalities}

    def forward_all(
        self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None
    ) -> MultimodalOutput:
        xs, present = self.prepare_inputs(inputs, present)
        features = {m: self.encoders[m](xs[m]) for m in self.modalities}
        fused = self.fusion(features, present)
        logits = self.head(fused)
        unimodal: dict[str, Tensor] = {}
        if self.unimodal_heads is not None:
            unimodal = {m: self.unimodal_heads[m](features[m]) for m in self.modalities}
        elif hasattr(self.fusion, "predictions"):
            unimodal = self.fusion.predictions(features, present)
        return MultimodalOutput(logits, features, fused, unimodal, present)

    def forward(self, inputs, present=None, return_unimodal: bool = False):
        out = self.forward_all(inputs, present)
        if return_unimodal:
            if not out.unimodal:
                raise ValueError(
                    "this model has no per-modality logits: build it with unimodal_heads=True "
                    "or use late fusion"
                )
            return out.logits, out.unimodal
        return out.logits


def build_classifier(
    shapes: Mapping[str, Sequence[int]],
    n_classes: int,
    fusion: str | Fusion = "concat",
    *,
    feature_dim: int = 32,
    seed: int | None = 0,
    **kwargs,
) -> MultimodalClassifier:
    """A classifier with the default encoder for each modality, seeded.

    ``shapes``: ``{modality: trailing input shape}``, e.g. ``{"image": (8, 8)}``.
    Fusion ``"early"`` gets flattening (identity) encoders, as Eq. (4) fuses raw inputs.
    """
    if seed is not None:
        torch.manual_seed(seed)
    if fusion == "early":
        encoders = nn.ModuleDict({m: MLPEncoder(s, out_dim=None) for m, s in shapes.items()})
    else:
        encoders = default_encoders(shapes, feature_dim)
    return MultimodalClassifier(encoders, fusion, n_classes, **kwargs)
