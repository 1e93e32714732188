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


# ---------------------------------------------------------------- no silent NaN (add_noise, drop_modalities)


def test_add_noise_takes_stats_over_present_rows_and_leaves_absent_rows_alone():
    x = _inputs(40)
    present = {"image": torch.arange(40) % 3 != 0, "audio": torch.ones(40, dtype=torch.bool)}
    poisoned = {m: v.clone() for m, v in x.items()}
    poisoned["image"][~present["image"]] = float("nan")
    out = add_noise(poisoned, 0.5, seed=3, present=present)
    kept = present["image"]
    assert torch.isfinite(out["image"][kept]).all() and torch.isfinite(out["audio"]).all()
    assert out["image"][~kept].isnan().all()  # absent rows come back unchanged
    # the same as computing the statistics on the present rows by hand
    rows = x["image"][kept]
    stats = {"image": (float(rows.mean()), float(rows.std())), "audio": (float(x["audio"].mean()), float(x["audio"].std()))}
    ref = add_noise(x, 0.5, seed=3, stats=stats)
    torch.testing.assert_close(out["image"][kept], ref["image"][kept])
    torch.testing.assert_close(out["audio"], ref["audio"])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_add_noise_rejects_non_finite_present_rows(bad):
    x = _inputs(10)
    x["audio"][7, 1, 1] = bad
    with pytest.raises(ValueError, match=r"\['audio'\] holds NaN or inf in 1 present row\(s\) \(first: \[7\]\)"):
        add_noise(x, 0.5)
    with pytest.raises(ValueError, match=r"'audio'"):
        add_noise(x, 0.5, stats={"image": (0.0, 1.0), "audio": (1.0, 3.0)})
    ok = add_noise(x, 0.5, present={"audio": torch.arange(10) != 7})
    assert torch.isfinite(ok["image"]).all()


def test_add_noise_rejects_bad_stats_dtypes_and_seeds():
    x = _inputs(10)
    with pytest.raises(ValueError, match="std must be >= 0"):
        add_noise(x, 0.5, stats={"audio": (0.0, -1.0)})
    with pytest.raises(ValueError, match="mean must be finite"):
        add_noise(x, 0.5, stats={"audio": (float("nan"), 1.0)})
    with pytest.raises(TypeError, match=r"\['image'\] has dtype torch.int64"):
        add_noise({"image": torch.ones(3, 2, dtype=torch.long)}, 0.5)
    with pytest.raises(TypeError, match="seed"):
        add_noise(x, 0.5, seed=1.5)


def test_add_noise_seed_none_is_random_and_modalities_have_their_own_streams():
    same = {"a": torch.zeros(200, 5), "b": torch.zeros(200, 5)}
    stats = {"a": (0.0, 1.0), "b": (0.0, 1.0)}
    r1, r2 = add_noise(same, 1.0, seed=None, stats=stats), add_noise(same, 1.0, seed=None, stats=stats)
    assert not torch.equal(r1["a"], r2["a"])  # fresh randomness each call
    for out in (r1, add_noise(same, 1.0, seed=4, stats=stats)):
        assert not torch.equal(out["a"], out["b"])  # one stream per modality
        assert abs(float(torch.corrcoef(torch.stack([out["a"].flatten(), out["b"].flatten()]))[0, 1])) < 0.1
    # an int seed stays deterministic (and the stream of modality i is seed * 1009 + i, as before)
    g = torch.Generator().manual_seed(4 * 1009 + 1)
    torch.testing.assert_close(add_noise(same, 1.0, seed=4, stats=stats)["b"], torch.randn(200, 5, generator=g))


def test_drop_modalities_never_leaks_absent_rows_and_seed_none_is_random():
    x = _inputs(300)
    x["image"][::2] = float("nan")
    before = {"image": torch.arange(300) % 2 == 1}  # the NaN rows are already absent
    out, present = drop_modalities(x, 0.4, seed=1, present=before, keep_one=False)
    assert not present["image"][::2].any()
    absent = ~present["image"]
    assert torch.equal(out["image"][absent], torch.zeros_like(out["image"][absent]))  # zeros, not NaN * 0 = NaN
    assert torch.isfinite(out["image"]).all()
    assert torch.equal(out["image"][~absent], x["image"][~absent])
    _, p1 = drop_modalities(x, 0.5, seed=None)
    _, p2 = drop_modalities(x, 0.5, seed=None)
    assert not torch.equal(p1["audio"], p2["audio"])


# ---------------------------------------------------------------- labels, concat, reserved names


def _labelled(labels, **kwargs):
    from datasets import Dataset

    return Dataset.from_dict({"x1": np.zeros((len(labels), 2), np.float32), "label": labels}, **kwargs)


def test_to_batch_rejects_non_integer_negative_and_out_of_range_labels():
    with pytest.raises(ValueError, match=r"non-integer values such as \[0\.7"):
        to_batch(_labelled([0.7, 1.2]))
    with pytest.raises(ValueError, match="non-integer"):
        to_batch(_labelled([0.0, float("nan")]))
    assert to_batch(_labelled([0.0, 2.0])).y.tolist() == [0, 2]  # whole floats are fine
    with pytest.raises(ValueError, match=r"class ids >= 0, got -1"):
        to_batch(_labelled([0, -1]))
    with pytest.raises(ValueError, match=r"0\.\.2 \(3 classes\), got 3"):
        to_batch(_labelled([0, 3]), n_classes=3)
    from datasets import ClassLabel, Features, Sequence, Value

    features = Features({"x1": Sequence(Value("float32"), length=2), "label": ClassLabel(num_classes=2)})
    assert to_batch(_labelled([0, 1], features=features)).y.tolist() == [0, 1]


def test_concat_batches_zero_fills_a_modality_missing_from_some_batches():
    a = Batch({"image": torch.randn(3, 8, 8)}, torch.zeros(3, dtype=torch.long))
    b = Batch(_inputs(2), torch.ones(2, dtype=torch.long))
    b.inputs["image"][0] = float("nan")
    b = Batch(b.inputs, b.y, {"image": torch.tensor([False, True])})
    whole = concat_batches([a, b])
    assert whole.modalities == ["image", "audio"]
    assert whole.inputs["audio"].shape == (5, 20, 20)
    assert torch.equal(whole.inputs["audio"][:3], torch.zeros(3, 20, 20))
    assert whole.present["audio"].tolist() == [False, False, False, True, True]
    assert whole.present["image"].tolist() == [True, True, True, False, True]
    assert torch.equal(whole.inputs["audio"][3:], b.inputs["audio"])
    with pytest.raises(ValueError, match="at least one batch"):
        concat_batches([])
    with pytest.raises(ValueError, match=r"'image' has shape \(2, 7, 7\)"):
        concat_batches([a, Batch({"image": torch.zeros(2, 7, 7)}, torch.zeros(2, dtype=torch.long))])


@pytest.mark.parametrize("modalities", [("x1", "x1"), ("x1", "label"), ("latent_a", "x2"), ("x1", "meta_b"),
                                        ("id", "x2"), ("x1", "x2", "x1")])
def test_make_latent_views_rejects_names_that_would_lose_a_modality(modalities):
    with pytest.raises(ValueError, match="distinct|reserved"):
        make_latent_views(10, modalities=modalities)


def test_make_latent_views_rejects_non_finite_options():
    with pytest.raises(ValueError, match="redundancy must be finite"):
        make_latent_views(10, redundancy=float("nan"))
    with pytest.raises(ValueError, match=r"noise\['x2'\] must be >= 0"):
        make_latent_views(10, noise={"x2": -0.1})


# ---------------------------------------------------------------- to_batch reads Arrow columns in one go


def _to_batch_formatter(dataset, names, rows=None):
    """The former path: the datasets torch formatter (row by row for nested lists)."""
    view = dataset.with_format("torch", columns=[*names, "label"])
    if rows is not None:
        view = view.select(range(len(dataset))[rows] if isinstance(rows, slice) else rows)
    table = view[:]
    return {m: table[m].float() for m in names}, table["label"].long()


@pytest.mark.parametrize("rows", [None, slice(3, 40), [7, 2, 2, 0]])
def test_to_batch_fast_path_equals_the_formatter(rows):
    from datasets import Dataset

    g = np.random.default_rng(0)
    cases = [
        make_latent_views(60, dim={"x1": 3, "x2": 5}, seed=1),
        make_latent_views(60, seed=2).shuffle(seed=0).select(range(50)),  # an indices mapping
        Dataset.from_dict({"a": g.standard_normal((50, 2, 3, 4)), "b": g.integers(0, 5, (50, 6)).astype(np.int32),
                           "c": g.standard_normal(50).astype(np.float16), "label": g.integers(0, 3, 50)}),
    ]
    for ds in cases:
        b = to_batch(ds, rows=rows)
        inputs, y = _to_batch_formatter(ds, b.modalities, rows)
        for m in b.modalities:
            assert b.inputs[m].dtype == inputs[m].dtype and b.inputs[m].shape == inputs[m].shape, m
            assert torch.equal(b.inputs[m], inputs[m]), m
        assert b.y.dtype == y.dtype and torch.equal(b.y, y)
        b.inputs[b.modalities[0]].add_(1.0)  # writable memory of its own: the dataset is unchanged
        assert torch.equal(to_batch(ds, rows=rows).inputs[b.modalities[0]], inputs[b.modalities[0]])


def test_to_batch_ragged_columns_take_the_general_path():
    from datasets import Dataset

    ds = Dataset.from_dict({"x": [[1.0, 2.0], [3.0]], "label": [0, 1]})
    with pytest.raises(ValueError, match="'x' holds rows of different shapes"):
        to_batch(ds)  # ragged rows cannot form a (B, ...) tensor
