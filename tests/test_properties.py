"""Property-based tests of the boundaries: random shapes, dtypes, NaN/inf placement, presence patterns, sizes.

Every call either raises a clear ``ValueError``/``TypeError`` from mmlearn (naming the modality where there
is one) or returns a finite result that does not depend on absent rows, nor (eval mode) on the other rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmlearn.alignment import recall_at_k, retrieval_metrics, retrieval_ranks
from mmlearn.data import Batch, add_noise, concat_batches, drop_modalities, to_batch
from mmlearn.models import build_classifier

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHAPES = {"x1": (3,), "x2": (2, 2)}


@pytest.fixture(scope="module")
def models():
    return {f: build_classifier(SHAPES, 3, f, feature_dim=4, seed=0).eval() for f in ("concat", "late")}


def _values(seed: int, shape, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


# row mask, and for each row whether (and where) it gets a NaN/inf
rows_and_poison = st.integers(1, 6).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.booleans(), min_size=n, max_size=n),  # present
        st.lists(st.sampled_from([None, float("nan"), float("inf"), -float("inf")]), min_size=n, max_size=n),
    )
)


# ---------------------------------------------------------------- the classifier


@SETTINGS
@given(
    case=rows_and_poison,
    other_present=st.lists(st.booleans(), min_size=6, max_size=6),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.bool]),
    fusion=st.sampled_from(["concat", "late"]),
    seed=st.integers(0, 1000),
)
def test_classifier_boundary(models, case, other_present, dtype, fusion, seed):
    n, present_x1, poison = case
    model = models[fusion]
    x1 = _values(seed, (n, 3))
    for i, p in enumerate(poison):
        if p is not None:
            x1[i, i % 3] = p
    inputs = {"x1": x1.to(dtype) if dtype not in (torch.int64, torch.bool) else x1.nan_to_num().to(dtype),
              "x2": _values(seed + 1, (n, 2, 2))}
    present = {"x1": torch.tensor(present_x1), "x2": torch.tensor(other_present[:n])}
    if dtype in (torch.int64, torch.bool):
        with pytest.raises(TypeError, match="'x1'"):
            model(inputs, present)
        return
    poisoned_present = any(p is not None and keep for p, keep in zip(poison, present_x1))
    if poisoned_present:
        with pytest.raises(ValueError, match=r"\['x1'\] holds NaN or inf"):
            model(inputs, present)
        return
    with torch.no_grad():
        logits = model(inputs, present)
        assert logits.shape == (n, 3) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
        # absent rows do not matter: replace them with anything else
        other = {m: torch.where(present[m].reshape(-1, *[1] * (x.dim() - 1)), x.float(), _values(seed + 7, x.shape))
                 for m, x in inputs.items()}
        torch.testing.assert_close(model(other, present), logits, rtol=1e-5, atol=1e-5)
        # eval mode: each row alone gives the same logits (no dependence on the other rows)
        for i in range(n):
            alone = model({m: x[i : i + 1] for m, x in inputs.items()}, {m: p[i : i + 1] for m, p in present.items()})
            torch.testing.assert_close(alone, logits[i : i + 1], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- add_noise, drop_modalities


@SETTINGS
@given(case=rows_and_poison, level=st.floats(0.0, 1.0), seed=st.integers(0, 10_000),
       trailing=st.sampled_from([(), (2,), (2, 3)]), use_mask=st.booleans())
def test_add_noise_properties(case, level, seed, trailing, use_mask):
    n, present_rows, poison = case
    x = _values(seed, (n, *trailing) if trailing else (n, 1))
    for i, p in enumerate(poison):
        if p is not None:
            x.view(n, -1)[i, 0] = p
    keep = torch.tensor(present_rows) if use_mask else torch.ones(n, dtype=torch.bool)
    present = {"a": keep} if use_mask else None
    if any(p is not None and k for p, k in zip(poison, keep.tolist())):
        with pytest.raises(ValueError, match=r"\['a'\] holds NaN or inf"):
            add_noise({"a": x}, level, seed=seed, present=present)
        return
    out = add_noise({"a": x}, level, seed=seed, present=present)["a"]
    assert out.shape == x.shape and torch.isfinite(out[keep]).all()
    # absent rows come back unchanged (NaN stays NaN), present rows do not depend on them
    assert torch.equal(out[~keep].nan_to_num(7.0), x[~keep].nan_to_num(7.0))
    other = torch.where(keep.reshape(-1, *[1] * (x.dim() - 1)), x, torch.full_like(x, 123.0))
    again = add_noise({"a": other}, level, seed=seed, present=present)["a"]
    torch.testing.assert_close(again[keep], out[keep])
    if level == 0.0:
        assert torch.equal(out[keep], x[keep])


@SETTINGS
@given(case=rows_and_poison, rate=st.floats(0.0, 1.0), seed=st.integers(0, 10_000), keep_one=st.booleans())
def test_drop_modalities_properties(case, rate, seed, keep_one):
    n, present_rows, poison = case
    x = {"a": _values(seed, (n, 2)), "b": _values(seed + 1, (n, 3))}
    for i, p in enumerate(poison):
        if p is not None:
            x["a"][i, 1] = p
    before = {"a": torch.tensor(present_rows)}
    out, present = drop_modalities(x, rate, seed=seed, present=before, keep_one=keep_one)
    assert not (present["a"] & ~before["a"]).any()  # missing stays missing
    for m in x:
        kept = present[m]
        assert torch.equal(out[m][~kept], torch.zeros_like(out[m][~kept]))  # exactly zero, even where NaN was
        assert torch.equal(out[m][kept].nan_to_num(7.0), x[m][kept].nan_to_num(7.0))
    if keep_one:  # every row had "b" (no mask given for it), so every row keeps something
        assert (present["a"] | present["b"]).all()


# ---------------------------------------------------------------- to_batch and concat_batches


@SETTINGS
@given(n=st.integers(1, 12), shape=st.sampled_from([(1,), (3,), (2, 2), (2, 1, 3)]), seed=st.integers(0, 1000),
       cuts=st.lists(st.integers(0, 12), max_size=3), label_kind=st.sampled_from(["int", "whole float", "float", "negative"]))
def test_to_batch_and_concat_properties(n, shape, seed, cuts, label_kind):
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    if label_kind == "whole float":
        labels = labels.astype(np.float64)
    elif label_kind == "float":
        labels = labels + 0.5
    elif label_kind == "negative":
        labels = labels - 5
    ds = Dataset.from_dict({"a": rng.standard_normal((n, *shape)).astype(np.float32),
                            "b": rng.integers(0, 9, (n, 2)), "label": labels})
    if label_kind in ("float", "negative"):
        with pytest.raises(ValueError, match="non-integer|>= 0"):
            to_batch(ds)
        return
    b = to_batch(ds)
    assert b.inputs["a"].shape == (n, *shape) and b.inputs["a"].dtype == torch.float32
    assert b.inputs["b"].dtype == torch.float32 and b.y.dtype == torch.int64
    np.testing.assert_array_equal(b.inputs["a"].numpy(), np.asarray(ds["a"], dtype=np.float32))
    np.testing.assert_array_equal(b.y.numpy(), np.asarray(labels, dtype=np.int64))
    # split anywhere and concatenate again: the same batch
    edges = sorted({0, n, *[min(c, n) for c in cuts]})
    parts = [to_batch(ds, rows=slice(lo, hi)) for lo, hi in zip(edges[:-1], edges[1:])]
    whole = concat_batches(parts)
    assert whole.present is None and torch.equal(whole.y, b.y)
    for m in b.inputs:
        assert torch.equal(whole.inputs[m], b.inputs[m])
    # a part without "b": zero-filled and marked absent there, present elsewhere
    if len(parts) > 1:
        mixed = concat_batches([parts[0].select(["a"]), *parts[1:]])
        k = parts[0].size
        assert mixed.present["b"].tolist() == [False] * k + [True] * (n - k)
        assert torch.equal(mixed.inputs["b"][:k], torch.zeros(k, 2)) and torch.equal(mixed.inputs["b"][k:], b.inputs["b"][k:])
        assert isinstance(mixed, Batch) and mixed.present["a"].all()


# ---------------------------------------------------------------- retrieval metrics


def _brute_ranks(sim: np.ndarray, labels=None) -> np.ndarray:
    n = len(sim)
    correct = np.eye(n, dtype=bool) if labels is None else labels[:, None] == labels[None, :]
    best = np.where(correct, sim, -np.inf).max(axis=1)
    return 1 + ((sim >= best[:, None]) & ~correct).sum(axis=1)


@SETTINGS
@given(n=st.integers(1, 10), d=st.integers(1, 5), seed=st.integers(0, 10_000), with_labels=st.booleans(),
       poison=st.one_of(st.none(), st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 49),
                                             st.sampled_from([float("nan"), float("inf"), -float("inf")]))))
def test_retrieval_metric_properties(n, d, seed, with_labels, poison):
    a, b = _values(seed, (n, d)), _values(seed + 1, (n, d))
    labels = torch.arange(n) % 3 if with_labels else None
    if poison is not None:
        side, flat, value = poison
        (a if side == "a" else b).view(-1)[flat % (n * d)] = value
        with pytest.raises(ValueError, match="NaN or inf"):
            retrieval_metrics(a, b, labels)
        with pytest.raises(ValueError, match="NaN or inf"):
            recall_at_k(a, b, 1, labels)
        return
    m = retrieval_metrics(a, b, labels, ks=(1, 3))
    an, bn = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    sim = (an @ bn.T).numpy()
    lab = None if labels is None else labels.numpy()
    for key, s in (("a->b", sim), ("b->a", sim.T)):
        brute = _brute_ranks(s, lab)
        assert m[f"{key} R@1"] == pytest.approx(np.mean(brute <= 1))
        assert m[f"{key} R@3"] == pytest.approx(np.mean(brute <= 3))
        assert 0.0 <= m[f"{key} R@1"] <= m[f"{key} R@3"] <= 1.0
    # permuting the pairs jointly changes nothing
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    mp = retrieval_metrics(a[perm], b[perm], None if labels is None else labels[perm], ks=(1, 3))
    assert mp == pytest.approx(m)
    ranks = retrieval_ranks(torch.from_numpy(sim), labels)
    assert ranks.min() >= 1 and ranks.max() <= n
