"""Log-mel spectrograms from scratch (torch only; no torchaudio, no librosa).

The mel scale is the HTK one, ``mel(f) = 2595 * log10(1 + f / 700)``. The
filterbank has ``n_mels`` triangular filters whose ``n_mels + 2`` corner
frequencies are equally spaced on the mel scale between ``f_min`` and
``f_max``; filter ``i`` rises linearly (in Hz) from corner ``i`` to corner
``i + 1`` (its centre, where it equals exactly 1) and falls back to 0 at corner
``i + 2``. No area normalisation is applied (peaks are 1), which is the
``htk=True, norm=None`` convention of librosa and torchaudio.

``log_mel`` = ``log(mel_filterbank @ |STFT|^2 + eps)`` with a periodic Hann
window and, by default, no centre padding, so ``n_frames = 1 + (n_samples -
n_fft) // hop_length``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def hz_to_mel(f_hz: Tensor | np.ndarray | float) -> Tensor:
    """HTK mel scale: ``2595 * log10(1 + f / 700)`` (float64 tensor)."""
    f = torch.as_tensor(f_hz, dtype=torch.float64)
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: Tensor | np.ndarray | float) -> Tensor:
    """Inverse of :func:`hz_to_mel`: ``700 * (10 ** (m / 2595) - 1)`` (float64 tensor)."""
    m = torch.as_tensor(m, dtype=torch.float64)
    return 700.0 * (torch.pow(10.0, m / 2595.0) - 1.0)


def mel_corner_frequencies(n_mels: int, f_min: float, f_max: float) -> Tensor:
    """The ``n_mels + 2`` corner frequencies in Hz (float64); centres are ``[1:-1]``."""
    if n_mels < 1:
        raise ValueError(f"n_mels must be >= 1, got {n_mels}")
    if not 0.0 <= f_min < f_max:
        raise ValueError(f"need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
    m = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64)
    return mel_to_hz(m)


def mel_filter_response(freqs_hz: Tensor | np.ndarray, n_mels: int, f_min: float, f_max: float) -> Tensor:
    """Response of each triangular filter at arbitrary frequencies.

    Returns a float64 tensor ``(n_mels, len(freqs_hz))``. Evaluated at the
    filters' own centre frequencies it is the identity matrix.
    """
    f = torch.as_tensor(freqs_hz, dtype=torch.float64).reshape(1, -1)
    pts = mel_corner_frequencies(n_mels, f_min, f_max)
    lo, ctr, hi = pts[:-2, None], pts[1:-1, None], pts[2:, None]
    rising = (f - lo) / (ctr - lo)
    falling = (hi - f) / (hi - ctr)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def mel_filterbank(
    n_mels: int,
    n_fft: int,
    sample_rate: float,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> Tensor:
    """Triangular HTK mel filterbank ``(n_mels, n_fft // 2 + 1)``, float32.

    Row ``i`` weights the one-sided FFT bins (bin ``k`` is at
    ``k * sample_rate / n_fft`` Hz). ``f_max`` defaults to the Nyquist frequency.
    """
    if f_max is None:
        f_max = sample_rate / 2.0
    if f_max > sample_rate / 2.0:
        raise ValueError(f"f_max={f_max} is above the Nyquist frequency {sample_rate / 2.0}")
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (float(sample_rate) / n_fft)
    return mel_filter_response(bins, n_mels, f_min, f_max).to(torch.float32)


def log_mel(
    waveform: Tensor | np.ndarray,
    sample_rate: float,
    n_fft: int = 512,
    hop_length: int = 300,
    n_mels: int = 20,
    f_min: float = 0.0,
    f_max: float | None = None,
    eps: float = 1e-6,
    center: bool = False,
) -> Tensor:
    """Log-mel spectrogram of ``waveform`` ``(..., n_samples)`` -> ``(..., n_mels, n_frames)``.

    Computed in float32: power spectrum ``|torch.stft|^2`` with a periodic Hann
    window of length ``n_fft``, projected on :func:`mel_filterbank`, then
    ``log(mel + eps)``.
    """
    x = torch.as_tensor(waveform, dtype=torch.float32)
    if x.shape[-1] < n_fft and not center:
        raise ValueError(f"waveform has {x.shape[-1]} samples, fewer than n_fft={n_fft}")
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    spec = torch.stft(
        x,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=n_fft,
        window=torch.hann_window(n_fft, dtype=torch.float32),
        center=center,
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()  # (B, n_fft//2+1, frames)
    fb = mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max)
    mel = torch.matmul(fb, power)  # (B, n_mels, frames)
    out = torch.log(mel + eps)
    return out.reshape(*lead, n_mels, out.shape[-1])
