"""AV-Digits: written and spoken digits, a small real bimodal dataset (like AV-MNIST).

- ``image``: the 1,797 handwritten 8x8 digits that ship with scikit-learn,
  scaled to [0, 1], then degraded on purpose (below).
- ``audio``: 20 mel bands x 20 frames log-mel spectrograms of the words
  "zero" ... "nine" spoken by Debian's espeak-ng over many voices, speeds and
  pitches, with background noise; 200 clips per digit, made and committed by
  ``scripts/make_av_digits_audio.py`` (which regenerates the file byte for byte).

Each image is paired with an unused clip of the same digit, fixed by ``seed``.
The split is a fixed stratified 80/20 train/test split.

Why degrade: clean 8x8 digits and clean synthesized speech are each nearly
solved by a small model, so fusing them would teach nothing. The images get
seeded Gaussian pixel noise of standard deviation ``image_noise`` (default 0.4,
on pixels in [0, 1]); optionally, as AV-MNIST does, they also lose energy: with
``image_energy_removed`` > 0 their projection on the top principal components
that carry that share of the variance (fitted on the training images) is
subtracted. The audio carries background noise at a random SNR per clip and a
random word onset (see the generating script). Measured with the default
encoders (README): image alone about 0.76, audio alone about 0.83, both fused
about 0.92 test accuracy.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import zipfile
import zlib
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # datasets (with pyarrow and pandas) is imported where a dataset is built
    from datasets import Dataset, DatasetDict

from .._checks import check_number
from .batch import _whole

AUDIO_FILE = "av_digits_audio.npz"
#: sha256 of the committed ``files/av_digits_audio.npz`` (checked at every load)
AUDIO_SHA256 = "47709aef3e84f560313bd680b73e4daca02f23856a365a4f2a30fbc04f98fc91"
#: where :func:`load_audio_clips` reads by default; ``None``: the file shipped in the package
AUDIO_PATH: str | Path | None = None
REGENERATE = "python scripts/make_av_digits_audio.py"
N_MELS, N_FRAMES = 20, 20
IMAGE_SHAPE = (8, 8)
AUDIO_SHAPE = (N_MELS, N_FRAMES)
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class DataFileError(ValueError):
    """A shipped data file is missing, corrupted, truncated or not the expected file."""


def _file_error(path, problem: str) -> DataFileError:
    return DataFileError(
        f"AV-Digits audio file {str(path)!r}: {problem}. Reinstall mmlearn to get the shipped file back "
        f"(pip install --force-reinstall, or git checkout the file in a clone), or regenerate it with "
        f"`{REGENERATE}`."
    )


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_clips(path, clips: dict[str, np.ndarray]) -> None:
    """The content rules, also for a regenerated file whose checksum is not checked."""
    for key in ("mel", "digit"):
        if key not in clips:
            raise _file_error(path, f"it has no {key!r} array (arrays: {sorted(clips)}), so it is not the AV-Digits audio file")
    mel, digit = clips["mel"], clips["digit"]
    if mel.ndim != 3 or mel.shape[1:] != (N_MELS, N_FRAMES) or digit.shape != (mel.shape[0],):
        raise _file_error(path, f"'mel' has shape {mel.shape} and 'digit' {digit.shape}; expected "
                                f"(N, {N_MELS}, {N_FRAMES}) and (N,)")
    if not np.issubdtype(mel.dtype, np.floating) or not np.isfinite(mel).all():
        raise _file_error(path, "'mel' holds NaN/inf or is not floating point")
    if not np.issubdtype(digit.dtype, np.integer) or digit.min() < 0 or digit.max() > 9:
        raise _file_error(path, "'digit' must hold whole numbers 0..9")


def load_audio_clips(path: str | Path | None = None, *, verify: bool = True) -> dict[str, np.ndarray]:
    """The committed spoken-digit file as a dict of numpy arrays.

    ``path`` defaults to :data:`AUDIO_PATH`, itself defaulting to the file
    shipped in the package. With ``verify`` (default) the file's sha256 must be
    :data:`AUDIO_SHA256`; pass ``verify=False`` for a file you regenerated
    yourself. Either way the file is read without pickle and its content is
    checked (shapes, finite values, digits 0..9). Any problem raises
    :class:`DataFileError` naming the file, what is wrong and what to do.
    """
    path = path if path is not None else AUDIO_PATH
    if path is None:
        with resources.as_file(resources.files("mmlearn.data") / "files" / AUDIO_FILE) as p:
            return load_audio_clips(p, verify=verify)
    path = Path(path)
    if not path.is_file():
        raise _file_error(path, "the file does not exist")
    if verify:
        got = _sha256(path)
        if got != AUDIO_SHA256:
            raise _file_error(
                path, f"its sha256 is {got}, expected {AUDIO_SHA256}: the file is corrupted, truncated or altered "
                      f"({path.stat().st_size} bytes)"
            )
    try:
        with np.load(path, allow_pickle=False) as f:
            if not isinstance(f, np.lib.npyio.NpzFile):
                raise _file_error(path, "it is a single .npy array, not an .npz archive")
            clips = {k: f[k] for k in f.files}
    except DataFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        # numpy says "allow_pickle=False" for any file it cannot parse as .npy/.npz
        raise _file_error(path, f"it is not a readable .npz archive (truncated or another kind of file; numpy "
                                f"said: {type(err).__name__}: {err})") from None
    _check_clips(path, clips)
    return clips


# ---------------------------------------------------------------- the digits, without importing scikit-learn


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as ``(images (1797, 8, 8) float64 in 0..16, labels int64)``.

    Read straight from the data file scikit-learn ships (``digits.csv.gz``),
    exactly as ``sklearn.datasets.load_digits`` reads it, but without importing
    scikit-learn and SciPy (most of the first load's time); falls back to
    ``load_digits`` if the file is not where it is expected.
    """
    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in locations:
        csv = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            with gzip.open(csv, "rt", encoding="utf-8") as f:
                data = np.loadtxt(f, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


#: The stratified split ``train_test_split(arange(1797), test_size=0.2, stratify=labels, random_state=0)``
#: of the default loader, as a bitmask of its test rows, so the default load needs no scikit-learn.
#: Used only when the labels' CRC32 matches (it is the split of exactly these labels).
_DEFAULT_SPLIT = {
    "seed": 0,
    "test_size": 0.2,
    "labels_crc32": 999348598,
    "test_mask_hex": (
        "000004883524104000064100934205001a00080100240028062c12001000940a009019120420f8a0028110a000080a8820441524"
        "494240a00a0000004004d80000818020004805c400104008a0100005404800301000020ec409000224840083a8013c20a6980a00"
        "00000b08400804a0184802024041c1008004404684376a810216004480004042a0a4180a5000840b8561c608108008004c80c020"
        "04068e00010882008100380803c008190000100e01008410a0210033282904c044c080680e0102830082008822a6402c2404210"
        "8a860809081a00c02820242120138a41500"
    ),
}


def _split(labels: np.ndarray, seed: int, test_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test rows of scikit-learn's stratified ``train_test_split`` (cached for the default)."""
    d = _DEFAULT_SPLIT
    if seed == d["seed"] and test_size == d["test_size"] and zlib.crc32(labels.astype(np.int64).tobytes()) == d["labels_crc32"]:
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(d["test_mask_hex"]), dtype=np.uint8))[: len(labels)]
        test = bits.astype(bool)
        return np.flatnonzero(~test), np.flatnonzero(test)
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train_rows, test_rows = train_test_split(index, test_size=test_size, stratify=labels, random_state=seed)
    return np.sort(train_rows), np.sort(test_rows)


def _remove_energy(images: np.ndarray, train_rows: np.ndarray, fraction: float) -> np.ndarray:
    """Subtract the projection on the top principal components holding ``fraction`` of the variance."""
    if fraction <= 0:
        return images
    flat = images.reshape(len(images), -1).astype(np.float64)
    mean = flat[train_rows].mean(axis=0)
    # principal axes of the training images (rows of vt), by SVD: deterministic
    _, sv, vt = np.linalg.svd(flat[train_rows] - mean, full_matrices=False)
    explained = np.cumsum(sv**2) / np.sum(sv**2)
    k = int(np.searchsorted(explained, fraction) + 1)
    top = vt[:k]  # (k, 64)
    # x - P_top (x - mean): keep the mean image, drop the high-energy directions
    flat = flat - (flat - mean) @ top.T @ top
    return flat.reshape(images.shape).astype(np.float32)


@lru_cache(maxsize=8)
def _build(seed: int, image_energy_removed: float, image_noise: float, test_size: float) -> DatasetDict:
    raw_images, labels = _digits()
    images = (raw_images / 16.0).astype(np.float32)  # (1797, 8, 8) in [0, 1]
    clips = load_audio_clips()
    mel, clip_digit = clips["mel"].astype(np.float32), clips["digit"].astype(np.int64)

    rng = np.random.default_rng(seed)
    # pair every image with a distinct clip of the same digit
    clip_of = np.empty(len(labels), dtype=np.int64)
    for d in range(10):
        imgs = np.flatnonzero(labels == d)
        pool = rng.permutation(np.flatnonzero(clip_digit == d))
        if len(pool) < len(imgs):
            raise RuntimeError(f"digit {d}: {len(imgs)} images but only {len(pool)} clips")
        clip_of[imgs] = pool[: len(imgs)]

    train_rows, test_rows = _split(labels, seed, test_size)

    images = _remove_energy(images, train_rows, image_energy_removed)
    if image_noise > 0:
        images = images + image_noise * rng.standard_normal(images.shape).astype(np.float32)

    from datasets import Dataset, DatasetDict

    def part(rows: np.ndarray) -> Dataset:
        return Dataset.from_dict(
            {
                "image": images[rows],
                "audio": mel[clip_of[rows]],
                "label": labels[rows],
                "meta_image_index": rows,
                "meta_clip_index": clip_of[rows],
            }
        )

    return DatasetDict(train=part(train_rows), test=part(test_rows))


def load_av_digits(
    split: str | None = None,
    *,
    seed: int = 0,
    image_energy_removed: float = 0.0,
    image_noise: float = 0.4,
    test_size: float = 0.2,
) -> DatasetDict | Dataset:
    """Load AV-Digits as a ``DatasetDict`` with ``train`` and ``test`` (or one split).

    Columns: ``image`` (8, 8) float32, ``audio`` (20, 20) float32 log-mel,
    ``label`` int64 digit, and ``meta_image_index`` / ``meta_clip_index`` (which
    sklearn image and which committed clip each row uses). Offline; built in
    about a second and cached per argument set. Pass ``image_energy_removed=0``
    and ``image_noise=0`` for the clean images. Every numeric option must be a
    finite number in its range (NaN is a ``ValueError``, not clean images).
    The audio file is checked against its sha256 (:func:`load_audio_clips`).
    """
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
    seed = check_number(_whole(seed), "seed", low=0, integer=True)
    image_energy_removed = check_number(image_energy_removed, "image_energy_removed", low=0.0, high=1.0, high_open=True)
    image_noise = check_number(image_noise, "image_noise", low=0.0)
    test_size = check_number(test_size, "test_size", low=0.0, high=1.0, low_open=True, high_open=True)
    data = _build(seed, image_energy_removed, image_noise, test_size)
    return data if split is None else data[split]
