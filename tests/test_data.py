"""mmlearn.data: batches, corruptions, synthetic generators (AV-Digits has its own file)."""

import numpy as np
import pytest
import torch

from mmlearn.data import (
    Batch,
    add_noise,
    as_batch,
    concat_batches,
    drop_modalities,
    make_bitwise,
    make_latent_views,
    modality_columns,
    to_batch,
)


def _inputs(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(n, 8, 8, generator=g), "audio": torch.randn(n, 20, 20, generator=g) * 3 + 1}


# ---------------------------------------------------------------- batches


def test_to_batch_reads_columns_in_order_and_skips_metadata():
    ds = make_latent_views(30, dim={"x1": 5, "x2": 7}, seed=3)
    assert modality_columns(ds) == ["x1", "x2"]
    b = to_batch(ds)
    assert b.modalities == ["x1", "x2"]
    assert b.inputs["x1"].shape == (30, 5) and b.inputs["x2"].shape == (30, 7)
    assert b.inputs["x1"].dtype == torch.float32 and b.y.dtype == torch.int64
    np.testing.assert_allclose(b.inputs["x2"].numpy(), np.asarray(ds["x2"], dtype=np.float32))
    assert b.y.tolist() == ds["label"]


def test_to_batch_rows_and_unknown_modality():
    ds = make_bitwise("xor", 20, seed=1)
    b = to_batch(ds, rows=slice(5, 9))
    assert b.size == 4
    assert b.y.tolist() == ds["label"][5:9]
    with pytest.raises(ValueError, match="'video'"):
        to_batch(ds, modalities=["x1", "video"])


def test_batch_index_select_and_concat_roundtrip():
    b = Batch(_inputs(10), torch.arange(10))
    parts = [b.index(slice(0, 4)), b.index(slice(4, 10))]
    whole = concat_batches(parts)
    for m in b.inputs:
        assert torch.equal(whole.inputs[m], b.inputs[m])
    assert b.select(["audio"]).modalities == ["audio"]
    with pytest.raises(ValueError, match="'text'"):
        b.select(["text"])


def test_as_batch_rejects_disagreeing_batch_sizes_naming_shapes():
    x = {"image": torch.zeros(4, 8, 8), "audio": torch.zeros(5, 20, 20)}
    with pytest.raises(ValueError, match=r"'image' has 4 rows.*'audio' has 5"):
        as_batch((x, torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"labels y have shape \(3,\); expected \(4,\)"):
        as_batch(({"image": torch.zeros(4, 8, 8)}, torch.zeros(3, dtype=torch.long)))
    with pytest.raises(TypeError):
        as_batch([1, 2, 3])


# ---------------------------------------------------------------- add_noise


def test_add_noise_level_zero_is_identity_and_level_one_forgets_the_input():
    x = _inputs()
    same = add_noise(x, 0.0)
    for m in x:
        assert torch.equal(same[m], x[m]) and same[m] is not x[m]
    # level 1: the output does not depend on the input, only on its scalar stats
    stats = {"image": (0.0, 1.0), "audio": (1.0, 3.0)}
    a = add_noise(x, 1.0, seed=5, stats=stats)
    b = add_noise({m: v * 0 + 7 for m, v in x.items()}, 1.0, seed=5, stats=stats)
    for m in x:
        assert torch.equal(a[m], b[m])


def test_add_noise_matches_its_formula_and_scale():
    x = _inputs(4000)
    lv = 0.3
    out = add_noise(x, {"audio": lv}, seed=2, stats={"audio": (1.0, 3.0)})
    assert torch.equal(out["image"], x["image"])  # not named: level 0
    eps = (out["audio"] - (1 - lv) * x["audio"] - lv * 1.0) / (lv * 3.0)
    # the residual is standard normal noise
    assert abs(float(eps.mean())) < 0.02 and abs(float(eps.std()) - 1) < 0.02


def test_add_noise_is_seeded_and_never_in_place():
    x = _inputs()
    copy = {m: v.clone() for m, v in x.items()}
    a, b, c = add_noise(x, 0.5, seed=1), add_noise(x, 0.5, seed=1), add_noise(x, 0.5, seed=2)
    for m in x:
        assert torch.equal(x[m], copy[m])
        assert torch.equal(a[m], b[m]) and not torch.equal(a[m], c[m])


@pytest.mark.parametrize("level", [-0.1, 1.5])
def test_add_noise_rejects_levels_outside_unit_interval(level):
    with pytest.raises(ValueError, match=r"'audio'.*\[0, 1\]"):
        add_noise(_inputs(), {"audio": level})


def test_add_noise_rejects_unknown_modality_and_empty_input():
    with pytest.raises(ValueError, match="'text'"):
        add_noise(_inputs(), {"text": 0.5})
    with pytest.raises(ValueError, match="empty"):
        add_noise({}, 0.5)


# ---------------------------------------------------------------- drop_modalities


def test_drop_modalities_zero_fills_and_marks_absent():
    x = _inputs(2000)
    out, present = drop_modalities(x, {"image": 0.5}, seed=0, keep_one=False)
    assert present["audio"].all()
    kept = present["image"]
    assert 0.45 < kept.float().mean() < 0.55
    assert torch.equal(out["image"][~kept], torch.zeros_like(out["image"][~kept]))
    assert torch.equal(out["image"][kept], x["image"][kept])
    assert torch.equal(out["audio"], x["audio"])


def test_drop_modalities_keep_one_leaves_every_sample_something():
    x = _inputs(500)
    _, present = drop_modalities(x, 0.9, seed=3)
    assert (present["image"] | present["audio"]).all()
    _, loose = drop_modalities(x, 0.9, seed=3, keep_one=False)
    assert not (loose["image"] | loose["audio"]).all()


def test_drop_modalities_respects_existing_mask_and_is_seeded():
    x = _inputs(100)
    before = {"image": torch.arange(100) % 2 == 0}
    _, p1 = drop_modalities(x, 0.3, seed=7, present=before)
    _, p2 = drop_modalities(x, 0.3, seed=7, present=before)
    assert torch.equal(p1["image"], p2["image"]) and torch.equal(p1["audio"], p2["audio"])
    assert not p1["image"][1::2].any()  # missing before stays missing
    copy = {m: v.clone() for m, v in x.items()}
    drop_modalities(x, 0.5, seed=0)
    assert all(torch.equal(x[m], copy[m]) for m in x)


def test_drop_modalities_bad_mask_shape():
    with pytest.raises(ValueError, match=r"present\['image'\] has shape \(3,\); expected \(100,\)"):
        drop_modalities(_inputs(100), 0.1, present={"image": torch.ones(3, dtype=torch.bool)})


# ---------------------------------------------------------------- synthetic


@pytest.mark.parametrize(
    "kind, rule",
    [
        ("and", lambda a, b: a & b),
        ("or", lambda a, b: a | b),
        ("xor", lambda a, b: a ^ b),
        ("unique", lambda a, b: a),
        ("redundant", lambda a, b: a),
    ],
)
def test_make_bitwise_truth_tables(kind, rule):
    ds = make_bitwise(kind, 400, seed=0)
    b = to_batch(ds)
    x1, x2 = b.inputs["x1"][:, 0].long(), b.inputs["x2"][:, 0].long()
    assert torch.equal(b.y, rule(x1, x2))
    if kind == "redundant":
        assert torch.equal(x1, x2)
    else:  # independent fair bits: all four input pairs occur
        assert len(set(zip(x1.tolist(), x2.tolist()))) == 4


def test_make_bitwise_bad_kind():
    with pytest.raises(ValueError, match="nand"):
        make_bitwise("nand")


def _logistic_accuracy(x, y):
    from sklearn.linear_model import LogisticRegression

    n = len(y) // 2
    return LogisticRegression(max_iter=2000).fit(x[:n], y[:n]).score(x[n:], y[n:])


def test_make_latent_views_label_follows_its_definition():
    ds = make_latent_views(500, redundancy=1.0, uniqueness=0.5, synergy=2.0, seed=4)
    s = np.asarray(ds["latent_shared"])
    u1, u2 = np.asarray(ds["latent_unique_x1"]), np.asarray(ds["latent_unique_x2"])
    score = s[:, 0] + 0.5 * u1[:, 0] + 2.0 * u1[:, 1] * u2[:, 1]
    assert np.array_equal(np.asarray(ds["label"]), (score > 0).astype(int))


def test_make_latent_views_controls_which_modality_knows_the_label():
    # uniqueness only: x1 sees the label, x2 does not
    b = to_batch(make_latent_views(4000, redundancy=0, uniqueness=1, noise=0.05, seed=0))
    y = b.y.numpy()
    assert _logistic_accuracy(b.inputs["x1"].numpy(), y) > 0.9
    assert _logistic_accuracy(b.inputs["x2"].numpy(), y) < 0.6
    # redundancy: both do; more noise makes a modality weaker
    b = to_batch(make_latent_views(4000, redundancy=1, noise={"x1": 0.05, "x2": 1.5}, seed=0))
    y = b.y.numpy()
    a1, a2 = _logistic_accuracy(b.inputs["x1"].numpy(), y), _logistic_accuracy(b.inputs["x2"].numpy(), y)
    assert a1 > 0.9 and a2 < a1 - 0.1


def test_make_latent_views_synergy_is_invisible_to_each_modality_alone():
    b = to_batch(make_latent_views(4000, redundancy=0, synergy=1, noise=0.05, seed=0))
    y = b.y.numpy()
    both = np.concatenate([b.inputs["x1"].numpy(), b.inputs["x2"].numpy()], axis=1)
    for x in (b.inputs["x1"].numpy(), b.inputs["x2"].numpy(), both):
        assert _logistic_accuracy(x, y) < 0.6  # linear, even on both: XOR-like


def test_make_latent_views_bad_arguments():
    with pytest.raises(ValueError, match="'x3'"):
        make_latent_views(10, noise={"x3": 1.0})
    with pytest.raises(ValueError, match="unique_dim"):
        make_latent_views(10, synergy=1.0, unique_dim=1)
