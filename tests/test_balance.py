"""mmlearn.balance: closed forms, exact identities, brute-force gradients, and the competition experiment."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmlearn.balance import (
    AGM,
    OGMGE,
    AttributionRegularizer,
    CompetitionRegularizer,
    MMPareto,
    UniModalEnsemble,
    UniModalTeacher,
    attribution_penalty,
    attribution_shares,
    competition_strength,
    competition_strength_from_features,
    input_gradient_penalty,
    jensen_shannon,
    linear_probe_accuracy,
    min_norm_2,
    ogm_coefficients,
    pareto_combine,
    pareto_weights,
    probe_accuracy_from_features,
    shapley_responses,
    share_penalty,
    split_logits,
    unimodal_classifier,
)
from mmlearn.experiments.balance import balance_model, make_imbalanced, train_balanced, train_unimodal
from mmlearn.data import Batch, to_batch
from mmlearn.fusion import EarlyFusion, LateFusion
from mmlearn.models import MLPEncoder, MultimodalClassifier, build_classifier
from mmlearn.train import evaluate, fit

DIMS = {"x1": 16, "x2": 32}


@pytest.fixture(scope="module")
def small():
    b = to_batch(make_imbalanced(400, seed=3))
    return b.index(slice(0, 256)), b.index(slice(256, None))


def _batch(n=8, seed=0, dims=DIMS, classes=2):
    g = torch.Generator().manual_seed(seed)
    inputs = {m: torch.randn(n, d, generator=g) for m, d in dims.items()}
    return Batch(inputs, torch.randint(0, classes, (n,), generator=g))


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# ---------------------------------------------------------------- responses / split


def test_split_logits_sum_to_logits_for_linear_classifiers():
    b = _batch()
    torch.manual_seed(0)
    late = MultimodalClassifier({m: MLPEncoder(d, 4) for m, d in DIMS.items()}, "late", 3)  # learned weights
    with torch.no_grad():
        late.fusion.logits.copy_(torch.tensor([0.3, -0.4]))
    early = MultimodalClassifier({m: MLPEncoder(d, 4) for m, d in DIMS.items()},
                                 EarlyFusion({"x1": 4, "x2": 4}, 5, activation="identity"), 3)
    with torch.no_grad():
        early.fusion.bias.normal_()
    for model in (late, early):
        out = model.forward_all(b.inputs)
        parts = split_logits(model, out.features)
        torch.testing.assert_close(parts["x1"] + parts["x2"], out.logits, rtol=0, atol=1e-6)
    # late fusion: the part of x1 is w_1 g_1(z_1), with w = softmax(a)
    out = late.forward_all(b.inputs)
    w = torch.softmax(torch.tensor([0.3, -0.4]), 0)
    torch.testing.assert_close(split_logits(late, out.features)["x1"], w[0] * late.fusion.heads["x1"](out.features["x1"]))


def test_split_logits_refuses_a_nonlinear_fusion():
    model = build_classifier({"x1": (16,), "x2": (32,)}, 2, "concat", feature_dim=4)
    out = model.forward_all(_batch().inputs)
    with pytest.raises(ValueError, match="ConcatFusion"):
        split_logits(model, out.features)


@pytest.mark.parametrize("fusion", ["concat", "late"])
def test_agm_responses_sum_exactly_to_the_fused_output(fusion):
    b = _batch(16)
    model = build_classifier({"x1": (16,), "x2": (32,)}, 3, fusion, feature_dim=4, seed=1).double()
    inputs = {m: x.double() for m, x in b.inputs.items()}
    r = shapley_responses(model, inputs)
    full = model(inputs)
    torch.testing.assert_close(r["x1"] + r["x2"], full, rtol=0, atol=1e-12)
    # and each is the 2-player Shapley value plus f(0,0)/2
    f_0b = model({"x1": torch.zeros_like(inputs["x1"]), "x2": inputs["x2"]})
    f_a0 = model({"x1": inputs["x1"], "x2": torch.zeros_like(inputs["x2"])})
    f_00 = model({m: torch.zeros_like(x) for m, x in inputs.items()})
    shapley_a = 0.5 * ((f_a0 - f_00) + (full - f_0b))
    torch.testing.assert_close(r["x1"], shapley_a + 0.5 * f_00, rtol=0, atol=1e-12)


def test_shapley_responses_need_two_modalities():
    model = build_classifier({"a": (3,), "b": (3,), "c": (3,)}, 2, "late", feature_dim=2)
    with pytest.raises(ValueError, match="exactly two modalities"):
        shapley_responses(model, {m: torch.zeros(2, 3) for m in "abc"})


# ---------------------------------------------------------------- OGM-GE


def test_ogm_coefficient_matches_its_closed_form():
    # k = 1 - tanh(alpha * rho) for the modality ahead (rho > 1), 1 for the other
    for s_a, s_b, alpha in [(30.0, 20.0, 0.8), (60.0, 20.0, 0.8), (10.0, 40.0, 0.3), (21.0, 20.0, 0.8)]:
        k = ogm_coefficients({"a": s_a, "b": s_b}, alpha)
        rho_a = s_a / s_b
        if rho_a > 1:
            assert k["a"] == pytest.approx(1 - math.tanh(alpha * rho_a))
            assert k["b"] == 1.0
        else:
            assert k["a"] == 1.0
            assert k["b"] == pytest.approx(1 - math.tanh(alpha / rho_a))
    # reference values of the method notes (alpha = 0.8)
    assert ogm_coefficients({"a": 1.5, "b": 1.0}, 0.8)["a"] == pytest.approx(0.166, abs=5e-4)
    assert ogm_coefficients({"a": 3.0, "b": 1.0}, 0.8)["a"] == pytest.approx(0.0163, abs=5e-5)
    assert ogm_coefficients({"a": 1.0 + 1e-9, "b": 1.0}, 0.8)["a"] == pytest.approx(0.336, abs=5e-4)  # the jump at 1
    assert ogm_coefficients({"a": 1.0, "b": 1.0}, 0.8) == {"a": 1.0, "b": 1.0}


def test_ogm_hook_slows_only_the_dominant_encoder_by_the_closed_form():
    b = _batch(32, seed=4)
    model = balance_model(DIMS, 2, seed=0)
    with torch.no_grad():  # make x1 clearly ahead: its head predicts the label
        model.fusion.heads["x1"].bias.zero_()
    out = model.forward_all(b.inputs)
    F.cross_entropy(out.logits, b.y).backward()
    plain = _grads(model)
    # brute force scores from the linear split: out_m = 1/2 (W_m z_m + b_m)
    with torch.no_grad():
        s = {m: float(torch.softmax(0.5 * model.fusion.heads[m](out.features[m]), 1)[torch.arange(32), b.y].sum())
             for m in DIMS}
    k = ogm_coefficients(s, 0.8)
    dominant = max(s, key=s.get)
    weak = min(s, key=s.get)
    assert k[dominant] < 1 and k[weak] == 1
    hook = OGMGE(0.8, ge=None)
    hook(model, out, b, 0)
    assert hook.history["coeff"][-1] == pytest.approx(k)
    for name, p in model.named_parameters():
        if name.startswith(f"encoders.{dominant}."):
            torch.testing.assert_close(p.grad, k[dominant] * plain[name])
        else:  # the weaker encoder, the heads: untouched, bit for bit
            assert torch.equal(p.grad, plain[name]), name


def test_ogm_restore_noise_only_on_the_slowed_encoder():
    b = _batch(32, seed=4)
    model = balance_model(DIMS, 2, seed=0)
    out = model.forward_all(b.inputs)
    F.cross_entropy(out.logits, b.y).backward()
    plain = _grads(model)
    hook = OGMGE(2.0, ge="restore", seed=1)
    hook(model, out, b, 0)
    k = hook.history["coeff"][-1]
    slowed = min(k, key=k.get)
    assert k[slowed] < 1
    for name, p in model.named_parameters():
        if name.startswith(f"encoders.{slowed}."):
            noise = p.grad - k[slowed] * plain[name]
            assert not torch.allclose(noise, torch.zeros_like(noise))  # noise added
            if p.numel() >= 500:  # h ~ N(0, (1 - k^2) std(g)^2)
                want = math.sqrt(1 - k[slowed] ** 2) * float(plain[name].std(correction=0))
                assert float(noise.std()) == pytest.approx(want, rel=0.1)
        else:
            assert torch.equal(p.grad, plain[name])


def _train_params(target, data, **kwargs):
    fit(target, data, epochs=2, batch_size=32, lr=0.05, optimizer="sgd", seed=0, progress=False, **kwargs)
    inner = target.model if isinstance(target, AGM) else target
    return [p.detach().clone() for p in inner.parameters()]


def test_alpha_zero_is_plain_training_for_ogm_ge_and_agm(small):
    train, _ = small
    plain = _train_params(balance_model(seed=0), train)
    ogm0 = _train_params(balance_model(seed=0), train, **OGMGE(0.0).fit_kwargs())
    agm0_model = AGM(balance_model(seed=0), alpha=0.0)
    agm0 = _train_params(agm0_model, train, **agm0_model.fit_kwargs())
    assert all(torch.equal(a, b) for a, b in zip(plain, ogm0))
    assert all(torch.equal(a, b) for a, b in zip(plain, agm0))
    # the comparison can fail: a positive alpha changes the trained weights
    ogm1 = _train_params(balance_model(seed=0), train, **OGMGE(1.0).fit_kwargs())
    agm1_model = AGM(balance_model(seed=0), alpha=1.0)
    agm1 = _train_params(agm1_model, train, **agm1_model.fit_kwargs())
    assert not all(torch.equal(a, b) for a, b in zip(plain, ogm1))
    assert not all(torch.equal(a, b) for a, b in zip(plain, agm1))
    # the official code's noise is added even at alpha = 0
    code0 = _train_params(balance_model(seed=0), train, **OGMGE(0.0, ge="code").fit_kwargs())
    assert not all(torch.equal(a, b) for a, b in zip(plain, code0))


def test_ogm_errors():
    with pytest.raises(ValueError, match="alpha"):
        OGMGE(-1.0)
    with pytest.raises(ValueError, match="ge"):
        OGMGE(1.0, ge="sometimes")
    with pytest.raises(ValueError, match="exactly two"):
        ogm_coefficients({"a": 1.0, "b": 2.0, "c": 3.0}, 1.0)
    model = build_classifier({"x1": (16,), "x2": (32,)}, 2, "concat", feature_dim=4)
    b = _batch()
    out = model.forward_all(b.inputs)
    F.cross_entropy(out.logits, b.y).backward()
    with pytest.raises(ValueError, match="ConcatFusion.*shapley"):
        OGMGE(1.0)(model, out, b, 0)
    OGMGE(1.0, scores="shapley")(model, out, b, 0)  # any fusion through AGM's responses


# ---------------------------------------------------------------- AGM


def test_agm_running_average_coefficients_by_hand():
    agm = AGM(balance_model(seed=0), alpha=2.0)
    k1 = agm.coefficients({"x1": 0.5, "x2": 1.0})
    # t = 1: the running means of the previous steps are 0, so rbar = 1; r_1 = e^{0.5}, r_2 = e^{-0.5}
    assert k1["x1"] == pytest.approx(math.exp(2.0 * (1.0 - math.exp(0.5))))
    assert k1["x2"] == pytest.approx(math.exp(2.0 * (1.0 - math.exp(-0.5))))
    assert k1["x1"] < 1 < k1["x2"]  # x1 has the lower loss: slowed; x2 boosted
    assert agm.score_mean.tolist() == pytest.approx([0.5, 1.0])  # updated after the coefficients
    k2 = agm.coefficients({"x1": 0.2, "x2": 1.0})
    # sbar of step 1 = (0.5, 1.0); r_1 = e^{0.8}, rbar_1 = e^{0.5}; r_2 = e^{-0.8}, rbar_2 = e^{-0.5}
    assert k2["x1"] == pytest.approx(math.exp(2.0 * (math.exp(0.5) - math.exp(0.8))))
    assert k2["x2"] == pytest.approx(math.exp(2.0 * (math.exp(-0.5) - math.exp(-0.8))))
    assert agm.score_mean.tolist() == pytest.approx([0.35, 1.0])
    # the exponent is capped at 10 (max_exponent): x1 was far ahead on average (rbar_1 = e^50), now far behind
    capped = AGM(balance_model(seed=0), alpha=2.0)
    capped.coefficients({"x1": 0.0, "x2": 50.0})
    k = capped.coefficients({"x1": 50.0, "x2": 0.0})
    assert k["x1"] == pytest.approx(math.exp(2.0 * 10)) and k["x2"] == pytest.approx(0.0, abs=1e-12)
    # a non-finite score gives kappa = 1 and leaves the running means alone
    before = agm.score_mean.clone()
    assert agm.coefficients({"x1": float("nan"), "x2": 1.0}) == {"x1": 1.0, "x2": 1.0}
    assert torch.equal(agm.score_mean, before)


def _official_agm_coefficients(score_a, score_v, alpha):
    """Transcription of the loop body of ``run/CREMAD_main.py`` (lihong2303/AGM_ICCV2023, ``train``),
    with ``train_score_a = train_score_v = 0`` before the first iteration."""
    train_score_a = train_score_v = 0.0
    out = []
    for i, (sa, sv) in enumerate(zip(score_a, score_v)):
        iteration = i + 1
        ratio_a = math.exp(sv - sa)
        ratio_v = math.exp(sa - sv)
        optimal_ratio_a = math.exp(train_score_v - train_score_a)
        optimal_ratio_v = math.exp(train_score_a - train_score_v)
        coeff_a = math.exp(alpha * (min(optimal_ratio_a - ratio_a, 10)))
        coeff_v = math.exp(alpha * (min(optimal_ratio_v - ratio_v, 10)))
        train_score_a = train_score_a * (iteration - 1) / iteration + sa / iteration
        train_score_v = train_score_v * (iteration - 1) / iteration + sv / iteration
        out.append((coeff_a, coeff_v))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agm_coefficients_follow_the_official_update_order(seed):
    gen = np.random.default_rng(seed)
    sa, sv = gen.uniform(0.05, 2.5, 8), gen.uniform(0.05, 2.5, 8)
    alpha = float(gen.uniform(0.5, 2.5))
    want = _official_agm_coefficients(sa, sv, alpha)
    agm = AGM(balance_model(seed=0), alpha=alpha)
    got = [agm.coefficients({"x1": a, "x2": v}) for a, v in zip(sa, sv)]
    for (ka, kv), k in zip(want, got):
        assert k["x1"] == pytest.approx(ka, rel=1e-9) and k["x2"] == pytest.approx(kv, rel=1e-9)
    # the comparison can fail: the update-first order gives kappa = 1 at step 1
    assert abs(want[0][0] - 1.0) > 1e-3


def test_agm_update_hook_uses_this_batch_scores_and_previous_means():
    b = _batch(16, seed=4)
    agm = AGM(balance_model(seed=0), alpha=1.5).train()
    out = agm.forward_all(b.inputs)
    agm.update(agm, out, b, 0)
    r = shapley_responses(agm.model, b.inputs)
    s = {m: float(F.cross_entropy(r[m].detach(), b.y)) for m in r}  # no probability below 1e-8 here
    (ka, kv), = _official_agm_coefficients([s["x1"]], [s["x2"]], 1.5)
    assert agm.current == pytest.approx((ka, kv), rel=1e-5)
    assert agm.history["scores"][0] == pytest.approx(s, rel=1e-5)


def test_agm_gradient_equals_hooked_responses_by_brute_force():
    b = _batch(16, seed=2)
    agm = AGM(balance_model(seed=0), alpha=1.0)
    agm.current = (0.3, 1.7)
    out = agm.forward_all(b.inputs)
    torch.testing.assert_close(out.logits, agm.model(b.inputs))  # forward is f(a, b)
    F.cross_entropy(out.logits, b.y).backward()
    got = _grads(agm.model)
    # brute force: m_a, m_b with tensor hooks multiplying their gradients by kappa
    ref = balance_model(seed=0)
    r = shapley_responses(ref, b.inputs)
    r["x1"].register_hook(lambda g: 0.3 * g)
    r["x2"].register_hook(lambda g: 1.7 * g)
    F.cross_entropy(r["x1"] + r["x2"], b.y).backward()
    want = _grads(ref)
    assert got.keys() == {f"{k}" for k in want}
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7)


def test_agm_registers_the_wrapped_parameters_and_checks_inputs():
    model = balance_model(seed=0)
    agm = AGM(model, 1.0)
    assert [n for n, _ in agm.named_parameters()] == [f"model.{n}" for n, _ in model.named_parameters()]
    with pytest.raises(ValueError, match="exactly two modalities"):
        AGM(build_classifier({"a": (3,), "b": (3,), "c": (3,)}, 2, "late", feature_dim=2))
    with pytest.raises(TypeError, match="MultimodalClassifier"):
        AGM(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="alpha"):
        AGM(model, -0.5)


@pytest.mark.parametrize("bad,err", [(float("nan"), ValueError), (float("inf"), ValueError), (-1.0, ValueError),
                                     (True, TypeError), (None, TypeError)])
def test_agm_rejects_bad_numeric_options(bad, err):
    with pytest.raises(err, match="alpha"):
        AGM(balance_model(seed=0), bad)
    with pytest.raises(err, match="max_exponent"):
        AGM(balance_model(seed=0), 1.0, max_exponent=bad)


# ---------------------------------------------------------------- MMPareto


def test_min_norm_2_hand_worked_case_is_a_common_descent_direction():
    g_mm, g_u = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    assert F.cosine_similarity(g_mm, g_u, dim=0) < 0  # they conflict
    c, d = min_norm_2(g_mm, g_u)
    assert c == pytest.approx(0.6)
    torch.testing.assert_close(d, torch.tensor([0.2, 0.4]))
    # d . g_mm = d . g_u = ||d||^2 = 0.2 > 0: a step along -d lowers both (linear) losses
    assert float(d @ g_mm) == pytest.approx(0.2) and float(d @ g_u) == pytest.approx(0.2)
    assert float(d @ d) == pytest.approx(0.2)
    # MMPareto's full update for this tensor: 2d = (0.4, 0.8), raised to ||g_mm + g_u|| = 1, times 1.5
    w = pareto_weights(g_mm, g_u)
    assert w == pytest.approx((0.6, 0.4))
    g = pareto_combine(g_mm, g_u, w, gamma=1.5)
    torch.testing.assert_close(g, torch.tensor([0.6708, 1.3416]), atol=1e-4, rtol=0)
    theta = torch.zeros(2)
    step = theta - 0.1 * g
    assert float(g_mm @ step) < float(g_mm @ theta) and float(g_u @ step) < float(g_u @ theta)
    # the plain sum g_mm + g_u = (0, 1) does not lower L_mm = g_mm . theta at all
    assert float(g_mm @ (g_mm + g_u)) == 0.0


def test_min_norm_2_matches_brute_force_and_ends():
    gen = torch.Generator().manual_seed(0)
    cs = torch.linspace(0, 1, 100001)
    for _ in range(5):
        g1, g2 = torch.randn(7, generator=gen, dtype=torch.float64), torch.randn(7, generator=gen, dtype=torch.float64)
        c, d = min_norm_2(g1, g2)
        norms = (cs[:, None].double() * g1 + (1 - cs[:, None].double()) * g2).norm(dim=1)
        assert c == pytest.approx(float(cs[norms.argmin()]), abs=2e-5)
        assert float(d.norm()) == pytest.approx(float(norms.min()), abs=1e-8)
    # ends: g1 shorter and pointing along g2 -> c = 1 (or 1 - eps)
    assert min_norm_2(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0]))[0] == 1.0
    assert min_norm_2(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0]), eps=0.001)[0] == 0.999
    assert min_norm_2(torch.tensor([3.0, 0.0]), torch.tensor([1.0, 0.0]), eps=0.001)[0] == 0.001
    # lists of tensors are flattened and joined
    c, d = min_norm_2([torch.tensor([1.0]), torch.tensor([0.0])], [torch.tensor([-1.0]), torch.tensor([1.0])])
    assert c == pytest.approx(0.6)
    with pytest.raises(ValueError, match="same size"):
        min_norm_2(torch.zeros(2), torch.zeros(3))


def test_mmpareto_hook_against_brute_force_gradients():
    b = _batch(32, seed=5)
    model = balance_model(DIMS, 2, unimodal_heads=True, seed=0)
    mmp = MMPareto(gamma=1.5)
    out = model.forward_all(b.inputs)
    loss = F.cross_entropy(out.logits, b.y) + mmp.loss(model, out, b)
    loss.backward()
    summed = _grads(model)
    mmp(model, out, b, 0)
    # brute force per encoder
    ref = balance_model(DIMS, 2, unimodal_heads=True, seed=0)
    ref_out = ref.forward_all(b.inputs)
    l_mm = F.cross_entropy(ref_out.logits, b.y)
    for m in DIMS:
        params = list(ref.encoders[m].parameters())
        g_mm = torch.autograd.grad(l_mm, params, retain_graph=True)
        g_u = torch.autograd.grad(F.cross_entropy(ref_out.unimodal[m], b.y), params, retain_graph=True)
        flat_mm, flat_u = torch.cat([g.flatten() for g in g_mm]), torch.cat([g.flatten() for g in g_u])
        if F.cosine_similarity(flat_mm, flat_u, dim=0) > 0:
            a = (0.5, 0.5)
        else:
            c = float((flat_u - flat_mm) @ flat_u / (flat_mm - flat_u).pow(2).sum())
            a = (min(max(c, 0.001), 0.999), 1 - min(max(c, 0.001), 0.999))
        assert mmp.history["weights"][-1][m] == pytest.approx(a, abs=1e-6)
        for (name, p), gm, gu in zip(model.encoders[m].named_parameters(), g_mm, g_u):
            new = 2 * (a[0] * gm + a[1] * gu)
            total = (gm + gu).norm()
            if total > new.norm():
                new = new * total / new.norm()
            torch.testing.assert_close(p.grad, 1.5 * new, rtol=1e-4, atol=1e-7)
    for name, p in model.named_parameters():  # heads keep the summed gradient
        if not name.startswith("encoders."):
            assert torch.equal(p.grad, summed[name]), name


def test_mmpareto_needs_unimodal_logits():
    b = _batch()
    model = build_classifier({"x1": (16,), "x2": (32,)}, 2, "concat", feature_dim=4)
    out = model.forward_all(b.inputs)
    with pytest.raises(ValueError, match="unimodal_heads"):
        MMPareto().loss(model, out, b)
    with pytest.raises(RuntimeError, match="fit_kwargs"):
        MMPareto()(model, out, b, 0)
    with pytest.raises(ValueError, match="gamma"):
        MMPareto(gamma=0)


# ---------------------------------------------------------------- probes and competition strength


def test_probe_accuracy_on_known_features():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    informative = (2 * y - 1)[:, None] + 0.3 * rng.standard_normal((600, 3))
    useless = rng.standard_normal((600, 3))
    assert probe_accuracy_from_features(informative[:400], y[:400], informative[400:], y[400:]) > 0.97
    assert abs(probe_accuracy_from_features(useless[:400], y[:400], useless[400:], y[400:]) - 0.5) < 0.1
    with pytest.raises(ValueError, match="same d"):
        probe_accuracy_from_features(informative, y, useless[:, :2], y)
    with pytest.raises(ValueError, match="disagree"):
        probe_accuracy_from_features(informative, y[:10], informative, y)


def test_linear_probe_of_a_model_and_errors(small):
    train, test = small
    model = balance_model(seed=0)
    acc = linear_probe_accuracy(model, train, test, "x1")
    # the same probe written out: frozen encoder features -> standardise -> logistic regression
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    with torch.no_grad():
        f_train = model.encoders["x1"].eval()(train.inputs["x1"]).numpy()
        f_test = model.encoders["x1"](test.inputs["x1"]).numpy()
    scaler = StandardScaler().fit(f_train)
    lr = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(f_train), train.y.numpy())
    want = float((lr.predict(scaler.transform(f_test)) == test.y.numpy()).mean())
    assert acc == pytest.approx(want, abs=1.5 / len(test.y))  # at most one test row may flip (solver tolerance)
    # a constant encoder carries nothing: the probe predicts the training majority class
    with torch.no_grad():
        for p in model.encoders["x1"].parameters():
            p.zero_()
    majority = int(np.bincount(train.y.numpy()).argmax())
    assert linear_probe_accuracy(model, train, test, "x1") == pytest.approx(float((test.y == majority).float().mean()))
    with pytest.raises(ValueError, match="unknown modality 'x3'"):
        linear_probe_accuracy(model, train, test, "x3")
    with pytest.raises(TypeError, match="encoders"):
        linear_probe_accuracy(nn.Linear(2, 2), train, test, "x1")


def test_competition_strength_limits():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((500, 6))
    Y = X @ rng.standard_normal((6, 3))  # exactly linear in the joint embedding
    assert competition_strength_from_features(X, Y, X, Y, alpha=1e-8) < 1e-8
    # predicting only the mean (alpha -> infinity) on the same rows gives rank(B)/d = 1
    assert competition_strength_from_features(X, Y, X, Y, alpha=1e14) == pytest.approx(1.0, abs=1e-6)
    noise = rng.standard_normal((500, 3))
    g = competition_strength_from_features(X[:250], noise[:250], X[250:], noise[250:], alpha=1.0)
    assert 0.95 < g < 1.2  # nothing to predict
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        competition_strength_from_features(X[:, 0], Y, X, Y)


# ---------------------------------------------------------------- UME / UMT


def test_ume_sums_members_and_one_missing_modality_is_that_member(small):
    train, test = small
    torch.manual_seed(0)
    members = {m: unimodal_classifier(m, MLPEncoder(d, 4, hidden=(8,)), 2) for m, d in DIMS.items()}
    ume = UniModalEnsemble(members)
    ume.fit_members(train, epochs=2, lr=0.05, optimizer="sgd", progress=False)
    out = ume.forward_all(test.inputs)
    torch.testing.assert_close(out.logits, members["x1"](test.select(["x1"]).inputs)
                               + members["x2"](test.select(["x2"]).inputs))
    n = test.size
    only_x1 = Batch(test.inputs, test.y, {"x1": torch.ones(n, dtype=torch.bool), "x2": torch.zeros(n, dtype=torch.bool)})
    assert evaluate(ume, only_x1)["accuracy"] == evaluate(members["x1"], test.select(["x1"]))["accuracy"]
    assert [n for n, _ in ume.named_parameters()][0].startswith("members.x1.")
    assert sum(p.numel() for p in ume.parameters()) == sum(p.numel() for p in members["x1"].parameters()) + sum(
        p.numel() for p in members["x2"].parameters())
    with pytest.raises(ValueError, match="unknown modality"):
        ume.forward_all({"x1": test.inputs["x1"], "x3": test.inputs["x2"]})


def test_umt_distillation_value_and_frozen_registered_teachers():
    b = _batch(16)
    torch.manual_seed(0)
    teachers = {m: MLPEncoder(d, 4) for m, d in DIMS.items()}
    umt = UniModalTeacher(teachers, weight=0.5)
    names = [n for n, _ in umt.named_parameters()]
    assert names and all(n.startswith("teachers.") for n in names)
    assert not any(p.requires_grad for p in umt.parameters())
    student = balance_model(DIMS, 2, seed=1)
    out = student.forward_all(b.inputs)
    value = umt(student, out, b)
    want = 0.5 * sum((out.features[m] - teachers[m](b.inputs[m])).pow(2).sum(1).mean() for m in DIMS)
    torch.testing.assert_close(value, want)
    value.backward()
    assert all(p.grad is None for p in umt.parameters())  # teachers never trained
    assert all(p.grad is not None for p in student.encoders.parameters())
    with pytest.raises(ValueError, match="out_dim"):
        UniModalTeacher({"x1": MLPEncoder(16, 7)})(student, student.forward_all(b.inputs), b)
    with pytest.raises(ValueError, match="weight"):
        UniModalTeacher(teachers, weight=-1)


# ---------------------------------------------------------------- attribution (Eq. 7)


def _linear_late_model():
    torch.manual_seed(0)
    encoders = {m: MLPEncoder(d, out_dim=None) for m, d in {"x1": 3, "x2": 2}.items()}  # identity: z = x
    return MultimodalClassifier(encoders, LateFusion({"x1": 3, "x2": 2}, 3, weights="uniform"), 3)


def test_eq7_input_gradient_penalty_closed_form():
    model = _linear_late_model()
    b = _batch(10, seed=1, dims={"x1": 3, "x2": 2}, classes=3)
    value = input_gradient_penalty(model, b)
    # f = 1/2 (W_1 x_1 + b_1) + 1/2 (W_2 x_2 + b_2): d l_i / d x_m = 1/2 W_m^T (p_i - e_{y_i})
    with torch.no_grad():
        p = torch.softmax(model(b.inputs), 1) - F.one_hot(b.y, 3).float()
        want = sum((0.5 * p @ model.fusion.heads[m].weight).pow(2).sum() for m in ("x1", "x2")) / 10
    torch.testing.assert_close(value, want)
    value.backward()  # differentiable (double backpropagation)
    assert model.fusion.heads["x1"].weight.grad.abs().sum() > 0


def test_attribution_shares_closed_form_and_penalty_bounds():
    model = _linear_late_model()
    b = _batch(10, seed=2, dims={"x1": 3, "x2": 2}, classes=3)
    out = model.forward_all(b.inputs)
    shares = attribution_shares(model, out.features)
    c = out.logits.argmax(1)
    # Grad x Input of a linear head: A_m = 1/2 W_{m,c} * e_m
    a = torch.stack([(0.5 * model.fusion.heads[m].weight[c] * out.features[m]).norm(dim=1) for m in ("x1", "x2")], 1)
    torch.testing.assert_close(shares, a / a.sum(1, keepdim=True))
    torch.testing.assert_close(shares.sum(1), torch.ones(10))
    assert float(share_penalty(torch.tensor([[0.25, 0.75]]), torch.tensor([1.0, 3.0]))) == pytest.approx(0.0)
    assert float(share_penalty(torch.tensor([[1.0, 0.0]]), torch.tensor([0.0, 1.0]))) == pytest.approx(2.0)
    value = attribution_penalty(model, out, b)
    # by hand: mean_i (|s_i1 - 1/2| + |s_i2 - 1/2|) with the closed-form shares above
    by_hand = (a / a.sum(1, keepdim=True) - 0.5).abs().sum(1).mean()
    assert float(value.detach()) == pytest.approx(float(by_hand.detach()), rel=1e-5)
    assert float(value.detach()) == pytest.approx(float(share_penalty(shares, torch.ones(2)).detach()), abs=1e-6)
    # with detached features the penalty trains only the fusion/head, never the encoders' inputs
    value.backward()
    assert model.fusion.heads["x1"].weight.grad is not None


def test_attribution_errors():
    model = _linear_late_model()
    b = _batch(4, dims={"x1": 3, "x2": 2}, classes=3)
    out = model.forward_all(b.inputs)
    with pytest.raises(ValueError, match="kind"):
        attribution_penalty(model, out, b, kind="saliency")
    with pytest.raises(ValueError, match="unknown modality 'x9'"):
        attribution_penalty(model, out, b, target={"x9": 1.0})
    with pytest.raises(ValueError, match="weight"):
        AttributionRegularizer(-1.0)


# ---------------------------------------------------------------- MCR


def test_jensen_shannon_properties():
    p, q = torch.randn(5, 4), torch.randn(5, 4)
    assert torch.allclose(jensen_shannon(p, p), torch.zeros(5), atol=1e-7)
    torch.testing.assert_close(jensen_shannon(p, q), jensen_shannon(q, p))
    big = torch.tensor([[50.0, -50.0]])
    assert float(jensen_shannon(big, -big)) == pytest.approx(math.log(2), abs=1e-5)


def test_mcr_contribution_is_zero_when_the_head_ignores_a_modality():
    b = _batch(32)
    model = balance_model(DIMS, 2, seed=0)
    reg = CompetitionRegularizer(1.0, seed=0)
    feats = model.forward_all(b.inputs).features
    with torch.no_grad():
        model.fusion.heads["x2"].weight.zero_()
    c = reg.contributions(model, feats)
    assert float(c["x2"].detach()) == 0.0 and float(c["x1"].detach()) > 0
    with torch.no_grad():
        model.fusion.heads["x2"].weight[0].fill_(0.5)  # now x2's features move the class scores apart
    assert float(reg.contributions(model, feats)["x2"].detach()) > 1e-4


def test_mcr_game_is_linear_in_k_and_players_only_move_their_encoder():
    b = _batch(32)

    def grads(k):
        model = balance_model(DIMS, 2, seed=0)
        out = model.forward_all(b.inputs)
        CompetitionRegularizer(1.0, game=k, seed=7)(model, out, b).backward()
        return _grads(model)

    g = {k: grads(k) for k in (-1.0, 0.0, 1.0)}
    for name in g[0.0]:
        torch.testing.assert_close(g[1.0][name] + g[-1.0][name], 2 * g[0.0][name], rtol=1e-4, atol=1e-7)
    # independent game (k = 0): encoder x1's gradient is that of -JSD_x1 alone (x2's features detached)
    model = balance_model(DIMS, 2, seed=0)
    out = model.forward_all(b.inputs)
    reg = CompetitionRegularizer(1.0, game=0.0, seed=7)
    perms = reg._permutations(32)
    feats = {"x1": out.features["x1"], "x2": out.features["x2"].detach()}
    (-reg.contributions(model, feats, permutations=perms)["x1"]).backward()
    for name, p in model.encoders["x1"].named_parameters():
        torch.testing.assert_close(g[0.0][f"encoders.x1.{name}"], p.grad, rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="game"):
        CompetitionRegularizer(game="hostile")


# ---------------------------------------------------------------- every method trains every encoder


@pytest.mark.parametrize("method,alpha", [("ogm_ge", 1.0), ("agm", 1.0), ("mmpareto", 1.5), ("umt", 0.3),
                                          ("attribution", 1.0), ("mcr", 0.5)])
def test_each_method_updates_every_encoder_parameter(small, method, alpha):
    train, test = small
    before = {n: p.detach().clone() for n, p in balance_model(seed=0).named_parameters()}
    r = train_balanced(method, alpha, train, test, epochs=1, seed=0)
    after = dict(r["model"].named_parameters())
    for name, p in before.items():
        assert not torch.equal(after[name], p), f"{method}: {name} did not change"
    assert len(r["probe"]["x2"]) == 1


def test_train_balanced_rejects_unknown_methods(small):
    with pytest.raises(ValueError, match="unknown balance method 'magic'"):
        train_balanced("magic", 1.0, *small)


def test_fit_before_backward_runs_before_gradients_exist(small):
    train, _ = small
    seen = []

    def hook(model, out, batch, step):
        seen.append(all(p.grad is None for p in model.parameters()))

    fit(balance_model(seed=0), train, epochs=1, batch_size=128, progress=False, before_backward=hook)
    assert seen == [True, True]


# ---------------------------------------------------------------- the competition experiment


@pytest.fixture(scope="module")
def imbalanced():
    b = to_batch(make_imbalanced(seed=0))
    train, test = b.index(slice(0, 2000)), b.index(slice(2000, None))
    return train, test, train_unimodal(train, test, seed=0)


@pytest.mark.slow
def test_joint_training_starves_the_weak_encoder_and_balancing_restores_it(imbalanced):
    train, test, uni = imbalanced
    joint = train_balanced("joint", 0.0, train, test, seed=0)
    alone = uni["probe"]["x2"][-1]
    x2_joint = joint["probe"]["x2"][-1]
    # modality competition: the x2 encoder learns less inside the joint model than alone
    assert x2_joint < alone - 0.05
    # x1 is the easy modality: it learns as much jointly as alone
    assert abs(joint["probe"]["x1"][-1] - uni["probe"]["x1"][-1]) < 0.03
    mmp = train_balanced("mmpareto", 1.5, train, test, seed=0)
    umt = train_balanced("umt", 0.3, train, test, seed=0, teachers=uni["ensemble"].encoders)
    assert mmp["probe"]["x2"][-1] > x2_joint + 0.05
    assert umt["probe"]["x2"][-1] > x2_joint + 0.05
    # and the fused model still works
    assert mmp["test_acc"][-1] > 0.85 and umt["test_acc"][-1] > 0.85


@pytest.mark.slow
def test_competition_strength_is_larger_for_the_starved_modality(imbalanced):
    train, test, uni = imbalanced
    joint = train_balanced("joint", 0.0, train, test, seed=0)["model"]
    fit_rows, test_rows = test.index(slice(0, 500)), test.index(slice(500, None))
    members = uni["ensemble"].members
    gamma = {m: competition_strength(joint, members[m], m, fit_rows, test_rows) for m in ("x1", "x2")}
    assert gamma["x2"] > gamma["x1"] + 0.1
    # distilling the unimodal teacher into the x2 encoder (UMT) lowers x2's competition strength
    umt = train_balanced("umt", 0.3, train, test, seed=0, teachers=uni["ensemble"].encoders)["model"]
    assert competition_strength(umt, members["x2"], "x2", fit_rows, test_rows) < gamma["x2"] - 0.2
