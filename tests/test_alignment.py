"""Tests for mmlearn.alignment: CLIP loss (survey Eq. 2), distributed negatives, metrics, model, CCA."""

from __future__ import annotations

import math
import os
import socket
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmlearn.alignment import (
    AlignmentModel,
    CCABaseline,
    ContrastiveLoss,
    alignment,
    class_prototypes,
    clip_loss,
    evaluate_alignment,
    gather_features,
    info_nce,
    median_rank,
    recall_at_k,
    retrieval_metrics,
    retrieval_ranks,
    train_alignment,
    uniformity,
    zero_shot_accuracy,
    zero_shot_classify,
)

T_INIT = math.log(1 / 0.07)  # CLIP's initial logit scale t = log(1 / tau)


def direct_clip_loss(a: torch.Tensor, b: torch.Tensor, t: float) -> float:
    """Eq. (2) written out with loops in float64: mean over i of -log softmax, both directions, averaged."""
    a, b = a.double(), b.double()
    n = len(a)
    s = math.exp(t)

    def cos(u, v):
        return float(u @ v) / (float(u.norm()) * float(v.norm()))

    def one_direction(q, k):
        total = 0.0
        for i in range(n):
            logits = [s * cos(q[i], k[j]) for j in range(n)]
            m = max(logits)
            log_denominator = m + math.log(sum(math.exp(x - m) for x in logits))
            total += -(logits[i] - log_denominator)
        return total / n

    return (one_direction(a, b) + one_direction(b, a)) / 2


# ----------------------------------------------------------------------------- the loss


@pytest.mark.parametrize("t", [0.0, T_INIT, math.log(50.0)])
def test_clip_loss_equals_direct_formula(t):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    got = clip_loss(a, b, t)
    assert got.dim() == 0
    assert float(got) == pytest.approx(direct_clip_loss(a, b, t), rel=1e-5)
    # the module at the same (fixed) temperature gives the same number
    module = ContrastiveLoss(temperature=math.exp(-t), learnable=False)
    assert float(module(a, b)) == pytest.approx(float(got), rel=1e-6)


def test_clip_loss_is_the_mean_of_both_info_nce_directions():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    both = float(clip_loss(a, b, T_INIT))
    a_to_b, b_to_a = float(info_nce(a, b, T_INIT)), float(info_nce(b, a, T_INIT))
    assert both == pytest.approx((a_to_b + b_to_a) / 2, rel=1e-6)
    assert a_to_b != pytest.approx(b_to_a, rel=1e-3)  # the two directions differ in general


def test_clip_loss_invariant_to_rescaling_embeddings():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    row_scales = torch.rand(8, 1, generator=g) * 10 + 0.1  # a different positive scale per row
    base = clip_loss(a, b, T_INIT)
    torch.testing.assert_close(clip_loss(a * row_scales, b * 7.0, T_INIT), base)
    torch.testing.assert_close(clip_loss(a * 1e-3, b * 1e3, T_INIT), base)


def test_clip_loss_is_log_n_when_one_side_is_constant():
    n = 4
    g = torch.Generator().manual_seed(4)
    a = torch.randn(n, 5, generator=g)
    b = torch.randn(1, 5, generator=g).repeat(n, 1)  # every b_j identical
    # a -> b: each query sees N identical keys, so the softmax is uniform: loss log N exactly
    assert float(info_nce(a, b, T_INIT)) == pytest.approx(math.log(n), rel=1e-6)
    # b -> a is >= log N (Jensen), so the symmetric loss is >= log N ...
    assert float(clip_loss(a, b, T_INIT)) >= math.log(n) - 1e-6
    # ... with equality when every a_i has the same similarity to b (here: all orthogonal to it)
    b_dir = F.normalize(b[0], dim=0)
    a_perp = a - (a @ b_dir)[:, None] * b_dir[None, :]
    assert float(clip_loss(a_perp, b, T_INIT)) == pytest.approx(math.log(n), rel=1e-5)
    # b -> a in closed form: every query is the same b, so with c_i = s cos(b, a_i) the loss is
    # log sum_i exp(c_i) - mean_i c_i (float64, written out here)
    c = [math.exp(T_INIT) * float(F.cosine_similarity(b[0].double(), a[i].double(), dim=0)) for i in range(n)]
    closed = math.log(sum(math.exp(x) for x in c)) - sum(c) / n
    assert closed > math.log(n) + 0.1  # the case is not the trivial equality
    assert float(info_nce(b, a, T_INIT)) == pytest.approx(closed, rel=1e-5)
    assert float(clip_loss(a, b, T_INIT)) == pytest.approx((math.log(n) + closed) / 2, rel=1e-5)


def test_clip_loss_near_zero_for_aligned_orthonormal_pairs():
    n = 4
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    z = q[:, :n].T  # (4, 6), orthonormal rows
    # closed form at the initial scale s = 1/0.07: -log(e^s / (e^s + 3 e^0)) = log(1 + 3 e^-s)
    closed = math.log1p(3 * math.exp(-1 / 0.07))
    assert float(clip_loss(z, z.clone(), T_INIT)) == pytest.approx(closed, rel=1e-6)
    # the same closed form at other scales s: log(1 + (N - 1) e^{-s}), from large losses to tiny ones
    for scale in (1.0, 5.0, 20.0):
        want = math.log1p((n - 1) * math.exp(-scale))
        assert float(clip_loss(z, z.clone(), math.log(scale))) == pytest.approx(want, rel=1e-6)
    # at the largest allowed scale, 100, the loss is ~ 3e-44
    assert float(clip_loss(z, z.clone(), math.log(100.0))) < 1e-40


def test_clip_loss_rejects_bad_shapes():
    a = torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"\(5, 4\).*\(5, 3\)"):
        clip_loss(a, torch.randn(5, 3), T_INIT)
    with pytest.raises(ValueError, match=r"\(5, 4\).*\(6, 4\)"):
        clip_loss(a, torch.randn(6, 4), T_INIT)
    with pytest.raises(ValueError, match=r"z_a has shape \(5, 2, 2\); expected \(N, d\)"):
        clip_loss(torch.randn(5, 2, 2), a, T_INIT)
    with pytest.raises(ValueError, match="logit_scale must be a scalar"):
        clip_loss(a, a, torch.ones(2))
    with pytest.raises(TypeError, match="torch.Tensor"):
        clip_loss(a.numpy(), a, T_INIT)


def test_contrastive_loss_temperature_parameter_and_clamp():
    loss = ContrastiveLoss()
    params = dict(loss.named_parameters())
    assert list(params) == ["logit_scale"]
    assert float(params["logit_scale"].detach()) == pytest.approx(T_INIT)
    assert loss.scale == pytest.approx(1 / 0.07, rel=1e-6) and loss.temperature == pytest.approx(0.07, rel=1e-6)
    a, b = torch.randn(6, 3), torch.randn(6, 3)
    loss(a, b).backward()
    assert loss.logit_scale.grad is not None and float(loss.logit_scale.grad) != 0.0
    # beyond the clamp the scale used is 100 and t gets no gradient from the loss
    with torch.no_grad():
        loss.logit_scale.fill_(10.0)
    assert loss.scale == pytest.approx(100.0)
    assert float(loss(a, b).detach()) == pytest.approx(float(clip_loss(a, b, math.log(100.0))), rel=1e-6)
    loss.clamp_()
    assert float(loss.logit_scale.detach()) == pytest.approx(math.log(100.0))
    fixed = ContrastiveLoss(temperature=0.5, learnable=False)
    assert list(fixed.named_parameters()) == [] and "logit_scale" in dict(fixed.named_buffers())
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ContrastiveLoss(temperature=0.0)


def test_gather_features_is_identity_without_a_process_group():
    z = torch.randn(3, 2)
    assert gather_features(z) is z


# ----------------------------------------------------------------------------- distributed negatives

WORLD, LOCAL_B, D_A, D_B = 2, 6, 8, 5


def _full_batch():
    g = torch.Generator().manual_seed(11)
    return torch.randn(WORLD * LOCAL_B, D_A, generator=g), torch.randn(WORLD * LOCAL_B, D_B, generator=g)


def _small_model():
    return AlignmentModel({"x1": (D_A,), "x2": (D_B,)}, embed_dim=4, feature_dim=7, seed=0)


def _dist_worker(rank: int, port: int, out_dir: str):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    try:
        xa, xb = _full_batch()
        rows = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)  # this rank's part of the global batch
        # 1. features straight into the loss
        za = xa[rows, :4].clone().requires_grad_(True)
        zb = xb[rows, :4].clone().requires_grad_(True)
        loss_fn = ContrastiveLoss()
        feat_loss = loss_fn(za, zb)
        feat_loss.backward()
        # 2. a model under DistributedDataParallel (gradients averaged over ranks)
        model = _small_model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        z = ddp({"x1": xa[rows], "x2": xb[rows]})
        model_loss = model.loss(z["x1"], z["x2"])
        model_loss.backward()
        # 3. unequal local batches are refused with a clear message
        try:
            gather_features(torch.zeros(3 + rank, 2))
            unequal = ""
        except ValueError as err:
            unequal = str(err)
        torch.save(
            {
                "feat_loss": feat_loss.detach(),
                "za_grad": za.grad,
                "zb_grad": zb.grad,
                "t_grad": loss_fn.logit_scale.grad,
                "model_loss": model_loss.detach(),
                "param_grads": {n: p.grad.clone() for n, p in model.named_parameters()},
                "unequal": unequal,
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two fresh Python processes import torch: about 10-15 s on 2 busy cores
@pytest.mark.timeout(180)
def test_distributed_loss_and_gradients_equal_single_process_full_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_dist_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    # single process on the concatenated batch (2B rows)
    xa, xb = _full_batch()
    za, zb = xa[:, :4].clone().requires_grad_(True), xb[:, :4].clone().requires_grad_(True)
    loss_fn = ContrastiveLoss()
    single = loss_fn(za, zb)
    single.backward()
    model = _small_model()
    z = model({"x1": xa, "x2": xb})
    single_model = model.loss(z["x1"], z["x2"])
    single_model.backward()

    for r, got in enumerate(ranks):
        rows = slice(r * LOCAL_B, (r + 1) * LOCAL_B)
        # every rank computes the loss of the whole global batch
        torch.testing.assert_close(got["feat_loss"], single.detach())
        torch.testing.assert_close(got["model_loss"], single_model.detach())
        # each of the W copies of the loss sends its gradient back: W x the single-process gradient
        torch.testing.assert_close(got["za_grad"], WORLD * za.grad[rows])
        torch.testing.assert_close(got["zb_grad"], WORLD * zb.grad[rows])
        torch.testing.assert_close(got["t_grad"], loss_fn.logit_scale.grad)
        # after DDP's averaging the parameter gradients are exactly those of the full batch
        assert set(got["param_grads"]) == {n for n, _ in model.named_parameters()}
        for name, p in model.named_parameters():
            torch.testing.assert_close(got["param_grads"][name], p.grad, msg=f"gradient of {name} on rank {r}")
        assert "(3, 2)" in got["unequal"] and "(4, 2)" in got["unequal"] and "same (B, d)" in got["unequal"]


# ----------------------------------------------------------------------------- metrics


def _brute_ranks(sim: np.ndarray, labels=None) -> np.ndarray:
    ranks = []
    for i, row in enumerate(sim):
        order = sorted(range(len(row)), key=lambda j: -row[j])  # most similar first
        for position, j in enumerate(order, start=1):
            if (j == i) if labels is None else (labels[j] == labels[i]):
                ranks.append(position)
                break
    return np.array(ranks)


def test_retrieval_ranks_recall_and_median_rank_equal_brute_force():
    g = torch.Generator().manual_seed(6)
    a, b = torch.randn(30, 4, generator=g), torch.randn(30, 4, generator=g)
    b = b + 1.5 * a  # partly aligned, so ranks spread over 1..30
    labels = torch.randint(0, 4, (30,), generator=g)
    sim = (F.normalize(a, dim=1) @ F.normalize(b, dim=1).T).numpy()
    for lab in (None, labels.numpy()):
        for s, name in ((sim, "a->b"), (sim.T, "b->a")):
            brute = _brute_ranks(s, lab)
            np.testing.assert_array_equal(retrieval_ranks(torch.tensor(s), None if lab is None else labels), brute)
        metrics = retrieval_metrics(a, b, None if lab is None else labels, ks=(1, 3, 10))
        for s, name in ((sim, "a->b"), (sim.T, "b->a")):
            brute = _brute_ranks(s, lab)
            for k in (1, 3, 10):
                assert metrics[f"{name} R@{k}"] == pytest.approx(np.mean(brute <= k))
            assert metrics[f"{name} median rank"] == np.sort(brute)[(len(brute) - 1) // 2]  # lower median
    brute = _brute_ranks(sim)
    assert 0 < np.mean(brute <= 1) < 1 and brute.max() > 3  # the case is not trivial
    assert recall_at_k(a, b, k=3) == pytest.approx(np.mean(brute <= 3))
    assert median_rank(b, a) == np.sort(_brute_ranks(sim.T))[(30 - 1) // 2]


def test_collapsed_embeddings_do_not_score_a_perfect_recall():
    # every embedding the same point (a collapsed run): ties count against the query
    z = torch.ones(8, 3)
    m = retrieval_metrics(z, z, ks=(1, 8))
    assert m["a->b R@1"] == 0.0 and m["a->b R@8"] == 1.0 and m["a->b median rank"] == 8
    labels = torch.arange(8) % 2  # 4 per class: the 4 items of the other class tie with the best correct one
    m = retrieval_metrics(z, z, labels, ks=(1, 5))
    assert m["b->a R@1"] == 0.0 and m["b->a R@5"] == 1.0 and m["b->a median rank"] == 5
    # one exact tie between the partner and another item: rank 2, not 1
    sim = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    assert retrieval_ranks(sim).tolist() == [2, 1]


def test_retrieval_rejects_bad_shapes_and_labels():
    a = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"labels have shape \(4,\); expected \(5,\)"):
        retrieval_metrics(a, a, torch.zeros(4))
    with pytest.raises(ValueError, match=r"\(5, 3\).*\(5, 2\)"):
        recall_at_k(a, torch.randn(5, 2))
    with pytest.raises(ValueError, match="k must be >= 1"):
        recall_at_k(a, a, k=0)
    with pytest.raises(ValueError, match=r"\(3, 4\); expected \(N, N\)"):
        retrieval_ranks(torch.randn(3, 4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_metrics_reject_non_finite_embeddings(bad):
    # all-NaN embeddings used to score R@1 = 1.0 (NaN > x is False, so nothing outranks the partner)
    g = torch.Generator().manual_seed(12)
    z = torch.randn(6, 3, generator=g)
    broken = z.clone()
    broken[2, 1] = bad
    nan_all = torch.full((6, 3), float("nan"))
    labels = torch.arange(6) % 2
    calls = {
        "retrieval_metrics": lambda a, b: retrieval_metrics(a, b),
        "retrieval_metrics labels": lambda a, b: retrieval_metrics(a, b, labels),
        "recall_at_k": lambda a, b: recall_at_k(a, b, k=1),
        "median_rank": lambda a, b: median_rank(a, b),
        "alignment": lambda a, b: alignment(a, b),
        "uniformity": lambda a, b: uniformity(a),
        "class_prototypes": lambda a, b: class_prototypes(a, labels, 2),
        "zero_shot_classify": lambda a, b: zero_shot_classify(a, F.normalize(z[:2], dim=1)),
        "zero_shot_accuracy": lambda a, b: zero_shot_accuracy(a, labels, F.normalize(z[:2], dim=1)),
        "retrieval_ranks": lambda a, b: retrieval_ranks(a @ b.T),
    }
    for name, call in calls.items():
        call(z, z)  # finite: fine
        for a in (broken, nan_all):
            with pytest.raises(ValueError, match="NaN or inf"):
                call(a, z)
        if name not in ("uniformity", "class_prototypes", "zero_shot_classify", "zero_shot_accuracy",
                        "retrieval_ranks"):
            with pytest.raises(ValueError, match=r"NaN or inf in 1 row\(s\) \(first: \[2\]\)"):
                call(z, broken)
    with pytest.raises(ValueError, match="prototypes holds NaN"):
        zero_shot_classify(z, broken[:3])


def test_alignment_and_uniformity_equal_their_formulas():
    g = torch.Generator().manual_seed(7)
    a, b = torch.randn(12, 3, generator=g), torch.randn(12, 3, generator=g)
    ua, ub = F.normalize(a, dim=1).double(), F.normalize(b, dim=1).double()
    want_align = np.mean([float((ua[i] - ub[i]).norm()) ** 2 for i in range(12)])
    assert alignment(a, b) == pytest.approx(want_align, rel=1e-5)
    assert alignment(a, b, alpha=1) == pytest.approx(np.mean([float((ua[i] - ub[i]).norm()) for i in range(12)]),
                                                     rel=1e-5)
    pairs = [math.exp(-2 * float((ua[i] - ua[j]).norm()) ** 2) for i in range(12) for j in range(i + 1, 12)]
    assert uniformity(a) == pytest.approx(math.log(np.mean(pairs)), rel=1e-5)
    # extremes: identical pairs are perfectly aligned; one point repeated is not uniform at all (log 1 = 0)
    assert alignment(a, 3 * a) == pytest.approx(0.0, abs=1e-6)
    assert uniformity(a[:1].repeat(5, 1)) == pytest.approx(0.0, abs=1e-6)
    # antipodal points +-e1: the only pair distance is 2, so log exp(-2 * 4) = -8
    assert uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-8.0)
    with pytest.raises(ValueError, match="N >= 2"):
        uniformity(torch.randn(1, 3))


def test_zero_shot_classification_by_nearest_prototype():
    g = torch.Generator().manual_seed(8)
    centers = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    labels = torch.arange(5).repeat(6)  # 30 items, 6 per class
    z = centers[labels] * torch.rand(30, 1, generator=g).add(0.5) + 0.1 * torch.randn(30, 8, generator=g)
    protos = class_prototypes(z, labels, 5)
    for c in range(5):  # the mean of the unit vectors of class c, re-normalised
        unit = F.normalize(z[labels == c], dim=1).mean(0)
        torch.testing.assert_close(protos[c], unit / unit.norm())
    pred = zero_shot_classify(z, protos)
    brute = torch.tensor([max(range(5), key=lambda c: float(F.cosine_similarity(z[i], protos[c], dim=0)))
                          for i in range(30)])
    torch.testing.assert_close(pred, brute)
    assert zero_shot_accuracy(z, labels, protos) == pytest.approx(float((brute == labels).float().mean()))
    assert zero_shot_accuracy(z, labels, protos) > 0.9
    with pytest.raises(ValueError, match=r"classes \[5\] have no example"):
        class_prototypes(z, labels, 6)


# ----------------------------------------------------------------------------- model and training

SHAPES = {"image": (8, 8), "audio": (20, 20)}


def test_alignment_model_parameters_registered_and_all_trained():
    model = AlignmentModel(SHAPES, embed_dim=16, feature_dim=24)
    names = {n for n, _ in model.named_parameters()}
    assert "loss.logit_scale" in names
    for prefix in ("encoders.image.", "encoders.audio.", "heads.image.", "heads.audio."):
        assert any(n.startswith(prefix) for n in names), prefix
    g = torch.Generator().manual_seed(9)
    x = {"image": torch.randn(10, 8, 8, generator=g), "audio": torch.randn(10, 20, 20, generator=g)}
    z = model(x)
    assert z["image"].shape == (10, 16) and z["audio"].shape == (10, 16)
    model.compute_loss(x).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    emb = model.embed(x)
    torch.testing.assert_close(emb["image"].norm(dim=1), torch.ones(10))
    torch.testing.assert_close(emb["image"], F.normalize(model(x)["image"].detach(), dim=1))


def test_alignment_model_rejects_bad_inputs():
    model = AlignmentModel(SHAPES)
    good = {"image": torch.randn(4, 8, 8), "audio": torch.randn(4, 20, 20)}
    with pytest.raises(ValueError, match=r"'audio'.*\(4, 20, 19\); expected \(B, 20, 20\)"):
        model({**good, "audio": torch.randn(4, 20, 19)})
    with pytest.raises(ValueError, match="unknown modality 'text'"):
        model({**good, "text": torch.randn(4, 3)})
    with pytest.raises(ValueError, match="missing modality 'audio'"):
        model({"image": good["image"]})
    with pytest.raises(ValueError, match="exactly two modalities"):
        AlignmentModel({"image": (8, 8)})
    with pytest.raises(ValueError, match="batch_size 64 is larger than the training set"):
        train_alignment(model, (good, torch.zeros(4, dtype=torch.long)), batch_size=64)


def _synthetic_pairs(n: int, seed: int, noise: float = 0.3):
    """Two views of a shared latent s (8-d): x1 = A s + e1, x2 = B s + e2 (linear, known pairing)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.Generator().manual_seed(123)
    A, B = torch.randn(8, 12, generator=mix), torch.randn(8, 10, generator=mix)
    s = torch.randn(n, 8, generator=g)
    x1 = s @ A + noise * torch.randn(n, 12, generator=g)
    x2 = s @ B + noise * torch.randn(n, 10, generator=g)
    return {"x1": x1, "x2": x2}, torch.zeros(n, dtype=torch.long), s


def test_train_alignment_is_seeded_and_learns_instance_retrieval():
    train, y, _ = _synthetic_pairs(512, seed=0)
    test, yt, _ = _synthetic_pairs(200, seed=1)

    def run():
        model = AlignmentModel({"x1": (12,), "x2": (10,)}, embed_dim=8, feature_dim=32, seed=0)
        before = evaluate_alignment(model, (test, yt))["x1->x2 R@1"]
        history = train_alignment(model, (train, y), (test, yt), epochs=8, batch_size=64, lr=3e-3, seed=0)
        return model, history, before

    m1, h1, before = run()
    m2, h2, _ = run()
    for (n, p), (_, q) in zip(m1.named_parameters(), m2.named_parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)
    assert h1["train_loss"] == h2["train_loss"]
    assert h1["train_loss"][-1] < h1["train_loss"][0] - 0.5
    after = h1["eval x1->x2 R@1"][-1]
    # instance retrieval among 200 pairs: chance 0.5%
    assert before < 0.05 and after > 0.5, (before, after)
    assert set(h1) >= {"epoch", "train_loss", "temperature", "eval x2->x1 R@1", "eval class x1->x2 R@1"}


def test_train_alignment_stops_on_a_non_finite_loss():
    import warnings

    from mmlearn._checks import NonFiniteLossError

    train, y, _ = _synthetic_pairs(256, seed=0)

    def model():
        return AlignmentModel({"x1": (12,), "x2": (10,)}, embed_dim=4, feature_dim=8, seed=0)

    with pytest.raises(NonFiniteLossError, match=r"train_alignment: the loss became (nan|inf) at epoch 1, step \d"):
        train_alignment(model(), (train, y), epochs=2, batch_size=64, lr=1e20)
    m = model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = train_alignment(m, (train, y), (train, y), epochs=2, batch_size=64, lr=1e20, on_nonfinite="warn")
    assert any("skipped" in str(w.message) for w in caught)
    assert all(torch.isfinite(p).all() for p in m.parameters())
    # a diverged run reports no recall rather than a perfect one
    assert all(math.isnan(v) or v < 0.5 for v in h["eval x1->x2 R@1"])
    with pytest.raises(ValueError, match="on_nonfinite"):
        train_alignment(model(), (train, y), epochs=1, batch_size=64, on_nonfinite="skip")


def test_cca_recovers_the_shared_correlation():
    # x1 = [s, n1], x2 = [s + e, n2] with s, e ~ N(0, 1) per coordinate: corr(s, s + e) = 1 / sqrt(2)
    g = torch.Generator().manual_seed(10)

    def draw(n):
        s = torch.randn(n, 2, generator=g)
        x1 = torch.cat([s, torch.randn(n, 3, generator=g)], 1)
        x2 = torch.cat([s + torch.randn(n, 2, generator=g), torch.randn(n, 4, generator=g)], 1)
        return {"x1": x1, "x2": x2}

    cca = CCABaseline(n_components=2, pca_dim=None).fit(draw(4000))
    test = draw(4000)
    corr = cca.canonical_correlations(test)
    np.testing.assert_allclose(corr, [1 / math.sqrt(2)] * 2, atol=0.04)
    emb = cca.embed(test)
    assert emb["x1"].shape == (4000, 2)
    torch.testing.assert_close(emb["x2"].norm(dim=1), torch.ones(4000))
    with pytest.raises(ValueError, match="exactly two modalities"):
        CCABaseline().fit({"x1": test["x1"]})
    with pytest.raises(ValueError, match=r"'x2'.*\(4000, 5\); expected \(B, 6\)"):
        cca.embed({"x1": test["x1"], "x2": test["x1"]})


# ----------------------------------------------------------------------------- AV-Digits


@pytest.fixture(scope="module")
def av_digits_clean():
    from mmlearn.data import load_av_digits, to_batch

    data = load_av_digits(image_energy_removed=0.0, image_noise=0.0)
    return to_batch(data["train"], ["image", "audio"]), to_batch(data["test"], ["image", "audio"])


@pytest.mark.slow
def test_av_digits_alignment_beats_chance_and_cca(av_digits_clean):
    train, test = av_digits_clean
    model = AlignmentModel(SHAPES, seed=0)
    # about 4 s on one thread (benchmarks/alignment.py prints the timing)
    train_alignment(model, train, epochs=10, batch_size=64, lr=3e-3, seed=0)
    scores = evaluate_alignment(model, test)
    # class level (any image of the spoken digit is a hit): chance about 10%; measured 0.88 / 0.77
    assert scores["class image->audio R@1"] > 0.6 and scores["class audio->image R@1"] > 0.5, scores
    # instance level (the paired clip itself): chance 1/360; images and clips share only the digit,
    # so even perfect digit retrieval gives about 1/36 at R@1; R@10 measured 0.23 against chance 0.03
    assert scores["image->audio R@10"] > 0.1 and scores["audio->image R@10"] > 0.1, scores
    cca = evaluate_alignment(CCABaseline(n_components=8, pca_dim=32).fit(train.inputs), test)
    assert cca["class image->audio R@1"] > 0.3  # linear CCA also aligns, less well (measured 0.64 / 0.43)
    assert scores["class audio->image R@1"] > cca["class audio->image R@1"] + 0.1
