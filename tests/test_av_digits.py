"""AV-Digits loader: pairing, split, degradation, batch conversion."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mmlearn.data import load_av_digits, to_batch
from mmlearn.data.av_digits import load_audio_clips


@pytest.fixture(scope="module")
def av():
    return load_av_digits()


def test_columns_shapes_and_sizes(av):
    assert set(av) == {"train", "test"}
    assert len(av["train"]) + len(av["test"]) == 1797
    assert len(av["test"]) == 360
    b = to_batch(av["train"])
    assert b.modalities == ["image", "audio"]
    assert b.inputs["image"].shape[1:] == (8, 8) and b.inputs["audio"].shape[1:] == (20, 20)


def test_every_image_is_paired_with_a_distinct_clip_of_the_same_digit(av):
    clips = load_audio_clips()
    rows = {k: np.concatenate([np.asarray(av[s][k]) for s in ("train", "test")])
            for k in ("label", "meta_image_index", "meta_clip_index")}
    digits = load_digits()
    assert np.array_equal(digits.target[rows["meta_image_index"]], rows["label"])
    assert np.array_equal(clips["digit"][rows["meta_clip_index"]], rows["label"])
    assert len(np.unique(rows["meta_clip_index"])) == 1797
    assert sorted(rows["meta_image_index"]) == list(range(1797))
    # the audio column is the committed clip
    first = av["test"][0]
    np.testing.assert_allclose(np.asarray(first["audio"]), clips["mel"][first["meta_clip_index"]].astype(np.float32))


def test_split_is_stratified_and_fixed(av):
    counts = np.bincount(np.asarray(av["test"]["label"]), minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38
    again = load_av_digits(seed=0)
    assert again["test"]["meta_image_index"] == av["test"]["meta_image_index"]
    other = load_av_digits(seed=1)
    assert other["test"]["meta_image_index"] != av["test"]["meta_image_index"]


def test_clean_images_are_the_sklearn_digits_and_noise_is_seeded(av):
    clean = load_av_digits("test", image_noise=0.0)
    idx = np.asarray(clean["meta_image_index"])
    np.testing.assert_allclose(np.asarray(clean["image"]), load_digits().images[idx] / 16.0, atol=1e-6)
    noisy = np.asarray(av["test"]["image"])
    residual = noisy - np.asarray(clean["image"])
    assert abs(residual.std() - 0.4) < 0.01  # the documented noise level


def test_energy_removal_takes_out_the_top_principal_directions():
    clean = np.asarray(load_av_digits("train", image_noise=0.0)["image"]).reshape(-1, 64)
    reduced = np.asarray(load_av_digits("train", image_noise=0.0, image_energy_removed=0.5)["image"]).reshape(-1, 64)
    kept = ((reduced - reduced.mean(0)) ** 2).sum() / ((clean - clean.mean(0)) ** 2).sum()
    assert 0.3 < kept <= 0.5 + 1e-6  # at least half the variance is gone, not all of it


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_av_digits("validation")
    with pytest.raises(ValueError, match="image_noise"):
        load_av_digits(image_noise=-1)


@pytest.mark.parametrize(
    "option, value, error",
    [
        ("image_noise", float("nan"), ValueError),  # used to return clean images
        ("image_noise", float("inf"), ValueError),
        ("image_energy_removed", float("nan"), ValueError),
        ("image_energy_removed", 1.0, ValueError),
        ("test_size", 0.0, ValueError),
        ("test_size", float("nan"), ValueError),
        ("seed", -1, ValueError),
        ("seed", 1.5, TypeError),
    ],
)
def test_every_numeric_option_is_checked(option, value, error):
    with pytest.raises(error, match=option):
        load_av_digits(**{option: value})


# ---------------------------------------------------------------- the shipped audio file is what we committed


def _copy_of_audio(tmp_path):
    import shutil

    from mmlearn.data import av_digits

    with av_digits.resources.as_file(av_digits.resources.files("mmlearn.data") / "files" / av_digits.AUDIO_FILE) as p:
        dst = tmp_path / "av_digits_audio.npz"
        shutil.copyfile(p, dst)
    return dst


def test_audio_file_checksum_is_verified(tmp_path):
    import hashlib

    from mmlearn.data.av_digits import AUDIO_SHA256

    good = _copy_of_audio(tmp_path)
    assert hashlib.sha256(good.read_bytes()).hexdigest() == AUDIO_SHA256
    clips = load_audio_clips(good)
    assert clips["mel"].shape == (2000, 20, 20)


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays.update(changes)
    np.savez_compressed(path, **arrays)


def test_altered_or_nan_audio_file_is_refused_naming_file_and_remedy(tmp_path):
    from mmlearn.data.av_digits import DataFileError

    path = _copy_of_audio(tmp_path)
    with np.load(path) as f:
        mel = f["mel"].copy()
    mel[5, 3, 3] = np.nan
    _rewrite(path, mel=mel)
    with pytest.raises(DataFileError, match=r"av_digits_audio\.npz.*sha256.*expected.*make_av_digits_audio\.py"):
        load_audio_clips(path)
    # a regenerated file can skip the checksum, but its content is still checked
    with pytest.raises(DataFileError, match="NaN/inf"):
        load_audio_clips(path, verify=False)
    mel[5, 3, 3] = mel[5, 3, 2] + 1  # a silently altered value
    _rewrite(path, mel=mel)
    with pytest.raises(DataFileError, match="corrupted, truncated or altered"):
        load_audio_clips(path)
    assert load_audio_clips(path, verify=False)["mel"][5, 3, 3] == mel[5, 3, 3]


def test_truncated_foreign_and_missing_files_get_a_clear_message(tmp_path, monkeypatch):
    from mmlearn.data import av_digits
    from mmlearn.data.av_digits import DataFileError

    good = _copy_of_audio(tmp_path)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:10_000])
    foreign = tmp_path / "foreign.npz"
    foreign.write_text("not numpy at all\n")
    for path in (truncated, foreign):
        for verify in (True, False):
            with pytest.raises(DataFileError, match=rf"{path.name}.*(sha256|not a readable \.npz).*Reinstall"):
                load_audio_clips(path, verify=verify)
    with pytest.raises(DataFileError, match="not a readable .npz"):
        load_audio_clips(foreign, verify=False)  # not numpy's misleading "allow_pickle" message
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(DataFileError, match="no 'mel' array"):
        load_audio_clips(other, verify=False)
    with pytest.raises(DataFileError, match="does not exist"):
        load_audio_clips(tmp_path / "nope.npz")
    # the module-level default path is the one used when none is given
    monkeypatch.setattr(av_digits, "AUDIO_PATH", foreign)
    with pytest.raises(DataFileError, match="foreign.npz"):
        load_audio_clips()


# ---------------------------------------------------------------- the fast first load keeps the same rows


def test_digits_and_default_split_equal_scikit_learn():
    from sklearn.model_selection import train_test_split

    from mmlearn.data.av_digits import _digits, _split

    images, labels = _digits()
    digits = load_digits()
    assert images.dtype == digits.images.dtype and np.array_equal(images, digits.images)
    assert labels.dtype == np.int64 and np.array_equal(labels, digits.target)
    for seed, test_size in ((0, 0.2), (1, 0.2), (0, 0.25)):  # the cached default and two computed ones
        train, test = _split(labels, seed, test_size)
        a, b = train_test_split(np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=seed)
        assert np.array_equal(train, np.sort(a)) and np.array_equal(test, np.sort(b))


def test_default_load_needs_neither_scikit_learn_nor_scipy():
    import subprocess
    import sys

    code = ("import sys; from mmlearn.data import load_av_digits; d = load_av_digits(); "
            "print(len(d['test']), 'sklearn' in sys.modules, 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["360", "False", "False"], out.stderr[-2000:]
