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
