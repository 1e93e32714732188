"""Seeded corruptions per modality, in the spirit of MultiBench's robustness suite.

Every corruption is a function ``f(x, level, *, generator, name, **options)``
on one modality's tensor ``x`` of shape ``(B, ...)`` (without ``generator`` it
draws from the stream of seed 0 and ``name``, so it is seeded too): ``level`` in [0, 1],
``level = 0`` returns an unchanged copy, larger levels corrupt more. None works
in place. :func:`corrupt` applies one corruption, by name, to chosen modalities
of an inputs dict, with one independent random stream per modality and absent
rows left exactly as they were.

=================  ======================  =====================================================
name               modality shape          what ``level`` sets
=================  ======================  =====================================================
salt_and_pepper    (B, H, W), (B, C, H, W)  share of pixels set to the min or max value
occlusion          (B, H, W), (B, C, H, W)  side of a random rectangle, as a share of H and W
blur               (B, H, W), (B, C, H, W)  Gaussian sigma = level * max_sigma (pixels)
background_noise   (B, n_mels, frames)     noise mixed in power at SNR = 10 log10((1-level)/level)
time_mask          (B, n_mels, frames)     width of a masked block of frames, as a share
frequency_mask     (B, n_mels, frames)     height of a masked block of mel bands, as a share
gaussian_noise     (B, ...)                blend with Gaussian noise (:func:`mmlearn.data.add_noise`)
feature_dropout    (B, ...)                probability that each element is set to 0
=================  ======================  =====================================================
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import (
    check_level,
    check_modality_dict,
    check_present,
    chosen_modalities,
    fill_absent,
    per_modality,
    row_mask,
)
from ..data.corruption import add_noise

#: name -> corruption function; each carries ``applies_to`` ("image", "spectrogram" or "any").
CORRUPTIONS: dict[str, Callable[..., Tensor]] = {}

_SHAPES = {
    "image": "(B, H, W) or (B, C, H, W) images",
    "spectrogram": "(B, n_mels, frames) spectrograms",
    "any": "(B, ...) tensors",
}


def register_corruption(name: str, applies_to: str = "any"):
    """Function decorator: make a corruption available to :func:`corrupt` under ``name``."""
    if applies_to not in _SHAPES:
        raise ValueError(f"applies_to must be one of {sorted(_SHAPES)}, got {applies_to!r}")

    def deco(fn):
        if name in CORRUPTIONS and CORRUPTIONS[name] is not fn:
            raise ValueError(f"corruption name {name!r} is already registered")
        fn.applies_to = applies_to
        fn.corruption_name = name
        CORRUPTIONS[name] = fn
        return fn

    return deco


def stream_seed(seed: int, name: str) -> int:
    """The seed of modality ``name``'s stream: independent of which other modalities are corrupted."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1)


def _generator(seed: int | None, name: str, device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(stream_seed(0 if seed is None else seed, name))
    return g


def _default(generator: torch.Generator | None, name: str, x: Tensor) -> torch.Generator:
    """The generator given, or modality ``name``'s stream for seed 0: a call without one is still seeded."""
    return generator if generator is not None else _generator(0, name, x.device)


def _check_shape(x: Tensor, applies_to: str, kind: str, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{kind}: modality {name!r} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{kind}: modality {name!r} has dtype {x.dtype}; expected a floating-point tensor")
    ok = {"image": x.dim() in (3, 4), "spectrogram": x.dim() == 3, "any": x.dim() >= 1}[applies_to]
    if not ok:
        raise ValueError(f"{kind} expects modality {name!r} as {_SHAPES[applies_to]}; got shape {tuple(x.shape)}")


def _finite_range(x: Tensor) -> tuple[float, float]:
    v = x[torch.isfinite(x)]
    return (float(v.min()), float(v.max())) if v.numel() else (0.0, 1.0)


def _spatial(x: Tensor) -> Tensor:
    """(B, H, W) -> (B, 1, H, W); (B, C, H, W) unchanged."""
    return x.unsqueeze(1) if x.dim() == 3 else x


# ------------------------------------------------------------------ images


@register_corruption("salt_and_pepper", "image")
def salt_and_pepper(x: Tensor, level: float, *, generator: torch.Generator | None = None, name: str = "image",
                    value_range: tuple[float, float] | None = None) -> Tensor:
    """Set a share ``level`` of the pixels (all channels of a pixel together) to the low or high value.

    Each pixel is hit with probability ``level``; a hit pixel becomes ``low`` or
    ``high`` with probability 1/2 each. ``value_range = (low, high)``: by
    default the smallest and largest finite value of ``x`` (the AV-Digits
    images are not confined to [0, 1]: they carry Gaussian pixel noise).
    """
    _check_shape(x, "image", "salt_and_pepper", name)
    level = check_level(level, name)
    if level == 0.0:
        return x.clone()
    low, high = value_range if value_range is not None else _finite_range(x)
    generator = _default(generator, name, x)
    xs = _spatial(x)  # (B, C, H, W)
    b, _, h, w = xs.shape
    hit = torch.rand((b, 1, h, w), generator=generator, device=x.device) < level  # (B, 1, H, W)
    salt = torch.rand((b, 1, h, w), generator=generator, device=x.device) < 0.5
    value = torch.where(salt, torch.tensor(high, dtype=x.dtype, device=x.device),
                        torch.tensor(low, dtype=x.dtype, device=x.device))
    out = torch.where(hit, value, xs)
    return out.reshape(x.shape)


@register_corruption("occlusion", "image")
def occlusion(x: Tensor, level: float, *, generator: torch.Generator | None = None, name: str = "image",
              fill: float = 0.0) -> Tensor:
    """Cover one random rectangle per image with ``fill``.

    The rectangle is ``round(level * H)`` by ``round(level * W)`` pixels (so
    ``level = 1`` covers the whole image), at a uniformly random position that
    keeps it inside the image, drawn independently for each sample.
    """
    _check_shape(x, "image", "occlusion", name)
    level = check_level(level, name)
    xs = _spatial(x)
    b, _, h, w = xs.shape
    ph, pw = round(level * h), round(level * w)
    if level == 0.0 or ph == 0 or pw == 0:
        return x.clone()
    generator = _default(generator, name, x)
    top = torch.randint(0, h - ph + 1, (b,), generator=generator, device=x.device)  # (B,)
    left = torch.randint(0, w - pw + 1, (b,), generator=generator, device=x.device)
    rows = torch.arange(h, device=x.device)[None, :]  # (1, H)
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + ph)  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + pw)  # (B, W)
    patch = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (B, 1, H, W)
    out = torch.where(patch, torch.tensor(fill, dtype=x.dtype, device=x.device), xs)
    return out.reshape(x.shape)


def gaussian_kernel(sigma: float, radius: int | None = None) -> Tensor:
    """Normalised 1-D Gaussian kernel (float64) of half-width ``radius`` (default ``ceil(3 sigma)``)."""
    radius = max(1, math.ceil(3 * sigma)) if radius is None else radius
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


@register_corruption("blur", "image")
def blur(x: Tensor, level: float, *, generator: torch.Generator | None = None, name: str = "image",
         max_sigma: float | None = None) -> Tensor:
    """Gaussian blur with ``sigma = level * max_sigma`` pixels (separable, edges replicated).

    ``max_sigma`` defaults to ``min(H, W) / 4`` (2 pixels on an 8x8 digit).
    Deterministic: ``generator`` is accepted for the common signature and not used.
    """
    _check_shape(x, "image", "blur", name)
    level = check_level(level, name)
    xs = _spatial(x)
    b, c, h, w = xs.shape
    max_sigma = min(h, w) / 4.0 if max_sigma is None else float(max_sigma)
    if max_sigma <= 0 or max_sigma != max_sigma:
        raise ValueError(f"blur: max_sigma must be positive, got {max_sigma}")
    sigma = level * max_sigma
    if sigma == 0.0:
        return x.clone()
    k = gaussian_kernel(sigma).to(x.dtype).to(x.device)
    r = (len(k) - 1) // 2
    flat = xs.reshape(b * c, 1, h, w)
    # rows then columns; replicate padding works for any radius
    flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode="replicate"), k.reshape(1, 1, -1, 1))
    flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode="replicate"), k.reshape(1, 1, 1, -1))
    return flat.reshape(x.shape)


# ------------------------------------------------------------------ spectrograms


@register_corruption("background_noise", "spectrogram")
def background_noise(x: Tensor, level: float, *, generator: torch.Generator | None = None, name: str = "audio",
                     log: bool = True) -> Tensor:
    """Mix broadband background noise into a spectrogram at an SNR set by ``level``.

    In power ``P = exp(x)`` (``log=True``: ``x`` is a natural-log spectrogram,
    as :func:`mmlearn.data.audio_features.log_mel` makes) or ``P = x``
    (``log=False``, a power spectrogram)::

        P' = (1 - level) P + level * S * E,     E ~ Exponential(1) per bin

    ``S`` is the sample's mean power, so the noise has the sample's mean power
    and fluctuates per bin like the periodogram of white noise. The
    signal-to-noise ratio is ``SNR = 10 log10((1 - level) / level)`` dB: +inf at
    level 0 (identity), 0 dB at 0.5, and no signal left at 1.
    """
    _check_shape(x, "spectrogram", "background_noise", name)
    level = check_level(level, name)
    if level == 0.0:
        return x.clone()
    xd = x.double()
    power = torch.exp(xd.clamp(max=700.0)) if log else xd  # (B, n_mels, frames)
    if not log and bool((power[torch.isfinite(power)] < 0).any()):
        raise ValueError(f"background_noise with log=False needs non-negative power in modality {name!r}")
    s = power.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    generator = _default(generator, name, x)
    e = torch.empty(x.shape, dtype=torch.float64, device=x.device).exponential_(1.0, generator=generator)
    mixed = (1.0 - level) * power + level * s * e
    out = torch.log(mixed.clamp(min=1e-300)) if log else mixed
    return out.to(x.dtype)


def _band_mask(x: Tensor, level: float, axis: int, generator, fill, name) -> Tensor:
    generator = _default(generator, name, x)
    b, size = x.shape[0], x.shape[axis]
    width = round(level * size)
    if level == 0.0 or width == 0:
        return x.clone()
    start = torch.randint(0, size - width + 1, (b,), generator=generator, device=x.device)  # (B,)
    idx = torch.arange(size, device=x.device)[None, :]
    band = (idx >= start[:, None]) & (idx < start[:, None] + width)  # (B, size)
    band = band[:, None, :] if axis == 2 else band[:, :, None]  # (B, 1, frames) or (B, n_mels, 1)
    if fill == "mean":
        value = x.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1): each sample's mean
    else:
        value = torch.tensor(float(fill), dtype=x.dtype, device=x.device)
    return torch.where(band, value, x)


@register_corruption("time_mask", "spectrogram")
def time_mask(x: Tensor, level: float, *, generator: torch.Generator | None = None, name: str = "audio",
              fill: float | str = "mean") -> Tensor:
    """SpecAugment-style time masking: ``round(level * frames)`` consecutive frames set to ``fill``.

    The block starts at a uniformly random frame per sample. ``fill="mean"``
    (default) uses each sample's mean value (for a log spectrogram, 0 would be
    a loud value); or pass a number.
    """
    _check_shape(x, "spectrogram", "time_mask", name)
    return _band_mask(x, check_level(level, name), 2, generator, fill, name)


@register_corruption("frequency_mask", "spectrogram")
def frequency_mask(x: Tensor, level: float, *, generator: torch.Generator | None = None, name: str = "audio",
                   fill: float | str = "mean") -> Tensor:
    """SpecAugment-style frequency masking: ``round(level * n_mels)`` consecutive mel bands set to ``fill``."""
    _check_shape(x, "spectrogram", "frequency_mask", name)
    return _band_mask(x, check_level(level, name), 1, generator, fill, name)


# ------------------------------------------------------------------ any modality


@register_corruption("gaussian_noise", "any")
def gaussian_noise(x: Tensor, level: float, *, generator: torch.Generator | None = None, name: str = "x",
                   seed: int = 0, stats: tuple[float, float] | None = None) -> Tensor:
    """Blend with Gaussian noise of the modality's scale: :func:`mmlearn.data.add_noise` on one modality.

    ``x' = (1 - level) x + level (mu + sigma eps)``; ``stats = (mu, sigma)``
    (e.g. the training set's) or computed from ``x``. Seeded by ``seed``
    (``add_noise`` makes its own generator; ``generator`` is not used).
    """
    _check_shape(x, "any", "gaussian_noise", name)
    level = check_level(level, name)
    return add_noise({name: x}, level, seed=seed, stats=None if stats is None else {name: stats})[name]


@register_corruption("feature_dropout", "any")
def feature_dropout(x: Tensor, level: float, *, generator: torch.Generator | None = None, name: str = "x",
                    fill: float = 0.0) -> Tensor:
    """Set each element to ``fill`` (0) independently with probability ``level``; no rescaling of the rest."""
    _check_shape(x, "any", "feature_dropout", name)
    level = check_level(level, name)
    if level == 0.0:
        return x.clone()
    generator = _default(generator, name, x)
    drop = torch.rand(x.shape, generator=generator, device=x.device) < level
    return torch.where(drop, torch.tensor(fill, dtype=x.dtype, device=x.device), x)


# ------------------------------------------------------------------ one entry point


def corrupt(
    inputs: Mapping[str, Tensor],
    kind: str,
    level: float | Mapping[str, float],
    modalities: Sequence[str] | None = None,
    present: Mapping[str, Tensor] | None = None,
    seed: int = 0,
    **options,
) -> dict[str, Tensor]:
    """Apply the corruption ``kind`` (a name in :data:`CORRUPTIONS`) to ``modalities`` of ``inputs``.

    ``level``: one number in [0, 1] for every corrupted modality, or a dict
    ``{modality: level}`` (a dict also chooses the modalities when
    ``modalities`` is ``None``). ``modalities``: default every modality of
    ``inputs`` (or the dict's keys). Returns a new dict: corrupted modalities
    are new tensors, the others are copies. Rows where ``present[m]`` is
    ``False`` keep their exact values (``torch.where``). Each modality draws
    from its own stream seeded by ``(seed, modality name)``, so corrupting
    ``image`` gives the same image whether or not ``audio`` is corrupted too.
    ``options`` go to the corruption function (e.g. ``max_sigma`` for blur).
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption kind {kind!r}; available: {sorted(CORRUPTIONS)}")
    batch = check_modality_dict(inputs, what=f"corrupt({kind!r}) inputs")
    names = list(inputs)
    modalities = chosen_modalities(modalities, level, names, "corrupt")
    levels = per_modality(level, names, f"corrupt({kind!r}) level")
    levels = {m: check_level(levels[m], m) for m in modalities}
    first = next(iter(inputs.values()))
    mask = check_present(present, names, batch, first.device)
    fn = CORRUPTIONS[kind]
    out = {}
    for m, x in inputs.items():
        if m not in levels:
            out[m] = x.clone()
            continue
        _check_shape(x, fn.applies_to, kind, m)
        g = _generator(seed, m, x.device)
        opts = dict(options)
        if kind == "gaussian_noise":
            opts["seed"] = stream_seed(seed, m)
            stats = opts.pop("stats", None)
            if isinstance(stats, Mapping):  # {modality: (mu, sigma)}
                for k in stats:
                    if k not in inputs:
                        raise ValueError(f"corrupt stats: unknown modality {k!r}; inputs have {sorted(inputs)}")
                stats = stats.get(m)
            if stats is None:  # the scale of the present rows, so an absent NaN row cannot spread
                v = x[mask[m]].double()
                v = v[torch.isfinite(v)]
                stats = (float(v.mean()), float(v.std())) if v.numel() > 1 else (0.0, 0.0)
            opts["stats"] = stats
            x_in = fill_absent(x, mask[m])  # add_noise rejects NaN anywhere; absent rows are restored below
        else:
            x_in = x
        y = fn(x_in, levels[m], generator=g, name=m, **opts)
        # absent rows keep their values, whatever they hold
        out[m] = torch.where(row_mask(mask[m], x), y, x)
    return out
