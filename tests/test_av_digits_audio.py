"""The committed spoken-digit file, the log-mel DSP, and the generating script."""

from __future__ import annotations

import importlib.util
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmlearn.data.audio_features import log_mel, mel_filter_response, mel_filterbank

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "make_av_digits_audio.py"
DATA = REPO / "mmlearn" / "data" / "files" / "av_digits_audio.npz"
N = 2000


def _script():
    spec = importlib.util.spec_from_file_location("make_av_digits_audio", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _htk_mel(f):  # written out here on purpose: the truth the module is checked against
    return 2595.0 * math.log10(1.0 + f / 700.0)


def _htk_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def _htk_centres(n_mels, f_min, f_max):
    lo, hi = _htk_mel(f_min), _htk_mel(f_max)
    return [_htk_hz(lo + (hi - lo) * (i + 1) / (n_mels + 1)) for i in range(n_mels)]


# ---------------------------------------------------------------- committed file


@pytest.fixture(scope="module")
def audio():
    with np.load(DATA, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_file_is_small_and_loads_without_pickle(audio):
    assert DATA.stat().st_size < 4 * 2**20
    for key in ("mel", "digit", "voice", "voices", "speed", "pitch", "snr_db", "sample_rate", "n_fft",
                "hop_length", "n_mels", "seed"):  # fmt: skip
        assert key in audio, key


def test_shapes_dtypes_and_balance(audio):
    assert audio["mel"].shape == (N, 20, 20) and audio["mel"].dtype == np.float16
    assert audio["digit"].shape == (N,) and audio["digit"].dtype == np.int64
    assert np.array_equal(np.bincount(audio["digit"], minlength=10), np.full(10, 200))
    for key in ("voice", "speed", "pitch", "snr_db"):
        assert audio[key].shape == (N,), key
    assert audio["snr_db"].dtype == np.float32
    assert np.all(np.isfinite(audio["mel"].astype(np.float32)))
    assert np.all(np.isfinite(audio["snr_db"]))
    assert audio["voices"].dtype.kind == "U"
    assert audio["voice"].min() >= 0 and audio["voice"].max() < len(audio["voices"])
    assert all(v.startswith("en") for v in audio["voices"])


def test_metadata_is_consistent(audio):
    assert int(audio["n_mels"]) == audio["mel"].shape[1] == 20
    sr, n_fft, hop, n = (int(audio[k]) for k in ("sample_rate", "n_fft", "hop_length", "n_samples"))
    assert 1 + (n - n_fft) // hop == audio["mel"].shape[2] == 20
    assert sr in (8000, 16000)
    lo, hi = audio["snr_range_db"]
    assert lo <= audio["snr_db"].min() and audio["snr_db"].max() <= hi
    assert np.all((audio["onset"] >= 0) & (audio["onset"] < n))


def test_clips_are_not_duplicated(audio):
    flat = audio["mel"].reshape(N, -1)
    assert len(np.unique(flat, axis=0)) == N


# ---------------------------------------------------------------- mel filterbank


@pytest.mark.parametrize("n_mels,n_fft,sr,f_min,f_max", [(20, 512, 8000, 0.0, 4000.0), (40, 1024, 16000, 50.0, 7600.0)])
def test_filters_peak_at_one_at_htk_centres(n_mels, n_fft, sr, f_min, f_max):
    centres = _htk_centres(n_mels, f_min, f_max)
    resp = mel_filter_response(np.array(centres), n_mels, f_min, f_max).numpy()
    np.testing.assert_allclose(resp, np.eye(n_mels), atol=1e-9)
    fb = mel_filterbank(n_mels, n_fft, sr, f_min, f_max)
    assert fb.shape == (n_mels, n_fft // 2 + 1) and fb.dtype == torch.float32
    assert torch.all(fb >= 0) and torch.all(fb <= 1)
    bin_hz = np.arange(n_fft // 2 + 1) * sr / n_fft
    for i, c in enumerate(centres):
        row = fb[i].numpy()
        assert row.max() > 0.5, f"filter {i} is nearly empty"
        # the strongest bin is one of the two bins around the centre frequency
        assert abs(bin_hz[row.argmax()] - c) < sr / n_fft


def test_filterbank_matches_a_direct_evaluation_of_the_triangles():
    n_mels, n_fft, sr = 20, 512, 8000
    edges = [_htk_hz(_htk_mel(0.0) + (_htk_mel(4000.0) - _htk_mel(0.0)) * j / (n_mels + 1)) for j in range(n_mels + 2)]
    expected = np.zeros((n_mels, n_fft // 2 + 1))
    for i in range(n_mels):
        lo, c, hi = edges[i], edges[i + 1], edges[i + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if lo <= f <= c:
                expected[i, k] = (f - lo) / (c - lo)
            elif c < f <= hi:
                expected[i, k] = (hi - f) / (hi - c)
    np.testing.assert_allclose(mel_filterbank(n_mels, n_fft, sr, 0.0, 4000.0).numpy(), expected, atol=1e-6)


def test_adjacent_triangles_sum_to_one_between_first_and_last_centre():
    centres = _htk_centres(20, 0.0, 4000.0)
    f = np.linspace(centres[0], centres[-1], 997)
    total = mel_filter_response(f, 20, 0.0, 4000.0).sum(dim=0).numpy()
    np.testing.assert_allclose(total, 1.0, atol=1e-9)


def test_pure_sine_lands_in_the_band_with_the_nearest_centre():
    sr, n_fft, n_mels = 8000, 512, 20
    centres = _htk_centres(n_mels, 0.0, sr / 2)
    t = np.arange(6400) / sr
    for i in range(1, n_mels - 1):
        for f in (centres[i] + 0.3 * (centres[i + 1] - centres[i]), centres[i] - 0.3 * (centres[i] - centres[i - 1])):
            spec = log_mel(np.sin(2 * np.pi * f * t), sr, n_fft=n_fft, hop_length=300, n_mels=n_mels)
            assert spec.shape == (n_mels, 20)
            band = int(spec.mean(dim=1).argmax())
            nearest = int(np.argmin([abs(c - f) for c in centres]))
            assert band == nearest == i, (f, band, nearest)


def test_log_mel_keeps_batch_dims_and_is_float32():
    x = torch.randn(3, 2, 6400, generator=torch.Generator().manual_seed(0))
    out = log_mel(x, 8000, n_fft=512, hop_length=300, n_mels=20)
    assert out.shape == (3, 2, 20, 20) and out.dtype == torch.float32
    torch.testing.assert_close(out[1, 0], log_mel(x[1, 0], 8000, n_fft=512, hop_length=300, n_mels=20))
    silence = log_mel(torch.zeros(6400), 8000, eps=1e-6)
    torch.testing.assert_close(silence, torch.full_like(silence, math.log(1e-6)))


def test_bad_filterbank_arguments_raise():
    with pytest.raises(ValueError):
        mel_filterbank(20, 512, 8000, 0.0, 5000.0)  # above Nyquist
    with pytest.raises(ValueError):
        mel_filterbank(0, 512, 8000)
    with pytest.raises(ValueError):
        mel_filterbank(20, 512, 8000, 3000.0, 2000.0)


# ---------------------------------------------------------------- script helpers (no espeak-ng needed)


def test_fft_resampler_keeps_a_tone_and_its_level():
    mk = _script()
    sr_in, sr_out, f0 = 22050, 8000, 1000.0
    x = np.sin(2 * np.pi * f0 * np.arange(4410) / sr_in)  # 0.2 s, whole number of periods
    y = mk.resample_fft(x, sr_in, sr_out)
    assert y.size == 1600
    np.testing.assert_allclose(y, np.sin(2 * np.pi * f0 * np.arange(1600) / sr_out), atol=1e-9)


def test_npz_writer_is_byte_reproducible_and_loadable(tmp_path):
    mk = _script()
    arrays = {
        "a": np.arange(12, dtype=np.float16).reshape(3, 4),
        "names": np.array(["en", "en-us"]),
        "s": np.array(8000),
    }
    mk.write_npz_deterministic(tmp_path / "one.npz", arrays)
    mk.write_npz_deterministic(tmp_path / "two.npz", arrays)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    with np.load(tmp_path / "one.npz", allow_pickle=False) as z:
        assert z.files == ["a", "names", "s"]
        for k, v in arrays.items():
            assert z[k].dtype == v.dtype and np.array_equal(z[k], v)


# ---------------------------------------------------------------- the --check comparison (no espeak-ng needed)


def _committed():
    with np.load(DATA, allow_pickle=False) as z:
        return {k: z[k].copy() for k in z.files}


def _step_away(mel, idx, steps):
    """``mel`` with the values at flat indices ``idx`` moved ``steps`` float16 steps up."""
    out = mel.copy().reshape(-1)
    for _ in range(steps):
        out[idx] = np.nextafter(out[idx], np.float16(np.inf))
    return out.reshape(mel.shape)


def test_check_accepts_an_identical_rebuild():
    mk = _script()
    ok, lines = mk.compare_arrays(_committed(), _committed())
    assert ok and "0 of 800000 values differ" in lines[-1]


def test_check_accepts_one_float16_step_on_a_few_values():
    # what another CPU's float kernels do (421 of 800,000 values, one step, on an AMD EPYC)
    mk = _script()
    new = _committed()
    idx = np.random.default_rng(0).choice(new["mel"].size, 421, replace=False)
    new["mel"] = _step_away(new["mel"], idx, 1)
    ok, lines = mk.compare_arrays(new, _committed())
    assert ok, lines
    assert "421 of 800000 values differ" in lines[-1]


def test_check_rejects_two_steps_or_too_many_values():
    mk = _script()
    two = _committed()
    two["mel"] = _step_away(two["mel"], np.array([5]), 2)
    assert not mk.compare_arrays(two, _committed())[0]
    many = _committed()
    idx = np.random.default_rng(1).choice(many["mel"].size, int(0.02 * many["mel"].size), replace=False)
    many["mel"] = _step_away(many["mel"], idx, 1)
    assert not mk.compare_arrays(many, _committed())[0]


@pytest.mark.parametrize("name", ["digit", "onset", "voice", "snr_db", "voices"])
def test_check_requires_every_other_array_to_be_exact(name):
    mk = _script()
    new = _committed()
    arr = new[name].copy()
    if arr.dtype.kind == "U":
        arr[0] = arr[0] + "x"
    elif arr.dtype.kind == "f":
        arr[0] = np.nextafter(arr[0], np.inf)
    else:
        arr[0] = arr[0] + 1
    new[name] = arr
    ok, lines = mk.compare_arrays(new, _committed())
    assert not ok and any(line.startswith(name) for line in lines)


def test_pcm_digest_is_of_the_16_bit_samples():
    mk = _script()
    pcm = np.array([0, 1, -1, 32767, -32768], dtype="<i2")
    x = pcm.astype(np.float64) / 32768.0  # what parse_wav returns
    import hashlib

    assert mk.pcm_digest(x) == hashlib.sha256(pcm.tobytes()).hexdigest()


# ---------------------------------------------------------------- full regeneration


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_script_regenerates_the_committed_file():
    """Audio and integer arrays exact, log-mels within one float16 step (see the script's docstring)."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(matches PCM_SHA256)" in proc.stdout
    assert "OK: audio and every non-mel array identical" in proc.stdout
