"""The fusion zoo on one contract: TFN, LMF, cross-modal attention, gated, EmbraceNet, DEQ.

Each method is checked against an independent truth (the outer product written
out, the rebuilt low-rank weight, the docking output, a hand-made reference of
the masked attention, gradients of an unrolled iteration); every registered
fusion is checked for trained parameters, missing inputs and clear errors.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from mmlearn.data import make_bitwise, to_batch
from mmlearn.fusion.experiment import fusion_datasets, train_fusion
from mmlearn.fusion import (
    FUSIONS,
    CrossAttentionFusion,
    DEQFusion,
    EmbraceNetFusion,
    GatedFusion,
    LowRankFusion,
    TensorFusion,
    anderson,
    fixed_point_iteration,
    make_fusion,
)
from mmlearn.models import MLPEncoder, MultimodalClassifier
from mmlearn.train import evaluate, fit

DIMS = {"image": 6, "audio": 5}


OUT = 8  # divisible by DEQ's GroupNorm groups


def _features(dims=DIMS, n=7, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, d, generator=g, dtype=dtype) for m, d in dims.items()}


# ------------------------------------------------------------------ TFN and LMF


def test_tensor_fusion_width_is_product_of_d_plus_one_and_holds_every_term():
    dims = {"a": 3, "v": 4, "t": 2}
    f = TensorFusion(dims, 5)
    x = _features(dims, n=4)
    z = f.tensor(x)
    assert f.tensor_dim == 4 * 5 * 3 == 60
    assert z.shape == (4, 60)
    assert f.linear.in_features == 60
    Z = z.view(4, 4, 5, 3)  # (B, d_a + 1, d_v + 1, d_t + 1), row-major as documented
    torch.testing.assert_close(Z[:, 0, 0, 0], torch.ones(4))
    # unimodal terms
    torch.testing.assert_close(Z[:, 1:, 0, 0], x["a"])
    torch.testing.assert_close(Z[:, 0, 0, 1:], x["t"])
    # a bimodal term: z_a (x) z_v
    torch.testing.assert_close(Z[:, 1:, 1:, 0], x["a"][:, :, None] * x["v"][:, None, :])
    # the trimodal term
    torch.testing.assert_close(Z[:, 1:, 1:, 1:], torch.einsum("bi,bj,bk->bijk", x["a"], x["v"], x["t"]))


def test_tensor_fusion_width_grows_as_product_for_any_number_of_modalities():
    for m in (2, 3, 4, 5):
        dims = {f"m{i}": 2 + i for i in range(m)}
        f = TensorFusion(dims, 3)
        want = math.prod(d + 1 for d in dims.values())
        assert f.tensor(_features(dims, n=2)).shape == (2, want)
        assert f(_features(dims, n=2)).shape == (2, 3)


def test_tensor_fusion_absent_modality_keeps_only_the_other_terms():
    f = TensorFusion(DIMS, 4)
    x = _features()
    present = {"audio": torch.tensor([True, False, True, True, True, True, True])}
    Z = f.tensor(x, present).view(7, 7, 6)
    # row 1 has no audio: z~_audio = [1; 0], so only the image terms survive
    torch.testing.assert_close(Z[1, 1:, 0], x["image"][1])
    torch.testing.assert_close(Z[1, :, 1:], torch.zeros(7, 5))


@pytest.mark.parametrize("dims", [{"a": 3, "b": 4}, {"a": 3, "v": 4, "t": 2}])
def test_low_rank_fusion_equals_tensor_fusion_with_the_rebuilt_weight(dims):
    torch.manual_seed(0)
    lmf = LowRankFusion(dims, 6, rank=3).double()
    with torch.no_grad():
        lmf.lambdas.copy_(torch.tensor([0.7, -1.3, 0.4]))  # not the uniform init
        lmf.bias.normal_()
    tfn = TensorFusion(dims, 6).double()
    x = _features(dims, n=9, dtype=torch.float64)
    w = lmf.full_weight()
    assert w.shape == (6, math.prod(d + 1 for d in dims.values()))
    # TFN's vec(Z) followed by the linear map with W rebuilt from the rank factors
    torch.testing.assert_close(lmf.pre_activation(x), F.linear(tfn.tensor(x), w, lmf.bias), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lmf(x), torch.relu(F.linear(tfn.tensor(x), w, lmf.bias)), rtol=1e-10, atol=1e-10)
    # and a TensorFusion loaded with that weight computes the same function
    with torch.no_grad():
        tfn.linear.weight.copy_(w)
        tfn.linear.bias.copy_(lmf.bias)
    torch.testing.assert_close(tfn(x), lmf(x), rtol=1e-10, atol=1e-10)


def test_low_rank_fusion_parameter_count_is_linear_in_modalities():
    rank, out = 4, 16
    for m in (2, 3, 4, 5):
        dims = {f"m{i}": 8 for i in range(m)}
        lmf, tfn = LowRankFusion(dims, out, rank=rank), TensorFusion(dims, out)
        n_lmf = sum(p.numel() for p in lmf.parameters())
        n_tfn = sum(p.numel() for p in tfn.parameters())
        assert n_lmf == rank * m * 9 * out + rank + out
        assert n_tfn == 9**m * out + out
    assert n_lmf < n_tfn / 300  # at M = 5: 2,900 vs 944,800


# ------------------------------------------------------------------ EmbraceNet


def test_embracenet_with_one_modality_available_returns_its_docking_output_exactly():
    torch.manual_seed(0)
    f = EmbraceNetFusion(DIMS, 32)
    x = _features(n=10)
    only_audio = {"image": torch.zeros(10, dtype=torch.bool), "audio": torch.ones(10, dtype=torch.bool)}
    docked = f.dock(x)
    for mode in ("train", "eval"):
        getattr(f, mode)()
        assert torch.equal(f(x, only_audio), docked["audio"])
    # per sample: rows with only the image give the image's docking output
    mixed = {"image": torch.tensor([True] * 5 + [False] * 5), "audio": torch.tensor([False] * 5 + [True] * 5)}
    out = f(x, mixed)
    assert torch.equal(out[:5], docked["image"][:5])
    assert torch.equal(out[5:], docked["audio"][5:])
    shares = f.selection_shares(x, mixed)
    torch.testing.assert_close(shares, torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5))


def test_embracenet_uniform_selection_takes_half_the_components_from_each_modality():
    torch.manual_seed(0)
    f = EmbraceNetFusion(DIMS, 512).train()
    x = _features(n=1000)
    shares = f.selection_shares(x)  # (1000, 2)
    assert shares.shape == (1000, 2)
    torch.testing.assert_close(shares.sum(dim=1), torch.ones(1000))
    assert abs(float(shares[:, 0].mean()) - 0.5) < 0.01
    # every component comes from exactly one modality: the output is one of the two docking outputs
    out, docked = f(x), f.dock(x)
    assert bool(((out == docked["image"]) | (out == docked["audio"])).all())


def test_embracenet_fixed_probabilities_and_eval_modes():
    torch.manual_seed(0)
    f = EmbraceNetFusion(DIMS, 512, probabilities={"image": 4.0, "audio": 1.0})
    x = _features(n=400)
    assert abs(float(f.selection_shares(x)[:, 0].mean()) - 0.8) < 0.01
    f.eval()  # the paper samples at inference too; here with a seeded generator: reproducible
    assert torch.equal(f(x), f(x))
    assert not torch.equal(f.train()(x), f.train()(x))  # training draws fresh selections
    f.eval_selection = "expectation"
    f.eval()
    docked = f.dock(x)
    torch.testing.assert_close(f(x), 0.8 * docked["image"] + 0.2 * docked["audio"])
    with pytest.raises(ValueError, match="'video'"):
        EmbraceNetFusion(DIMS, 4, probabilities={"video": 1.0})


# ------------------------------------------------------------------ gated fusion


def test_gated_fusion_is_a_softmax_weighted_sum_with_missing_modalities_masked():
    torch.manual_seed(0)
    f = GatedFusion(DIMS, 4)
    x = _features()
    g = f.gates(x)
    torch.testing.assert_close(g.sum(dim=1), torch.ones(7))
    want_g = torch.softmax(f.gate(torch.cat([x["image"], x["audio"]], dim=1)), dim=1)
    torch.testing.assert_close(g, want_g)
    want = g[:, :1] * torch.tanh(f.proj["image"](x["image"])) + g[:, 1:] * torch.tanh(f.proj["audio"](x["audio"]))
    torch.testing.assert_close(f(x), want)
    present = {"image": torch.tensor([True, False, True, True, True, True, True])}
    gp = f.gates(x, present)
    assert gp[1].tolist() == [0.0, 1.0]
    torch.testing.assert_close(f(x, present)[1], torch.tanh(f.proj["audio"](x["audio"][1])))


# ------------------------------------------------------------------ cross-modal attention


def test_cross_attention_masks_absent_modalities_out_of_the_keys():
    torch.manual_seed(0)
    dims = {"a": 4, "b": 3, "c": 5}
    f = CrossAttentionFusion(dims, 6, dim=8, heads=2, tokens=3).eval()
    x = _features(dims, n=5)
    present = {"c": torch.tensor([True, False, True, True, True])}
    out = f(x, present)
    # reference for row 1, built by hand: a and b attend only to each other; c pools to zero
    tokens, _ = f.embed({m: v[1:2] for m, v in x.items()})
    h_a = f.blocks["a"](tokens["a"], tokens["b"])
    h_b = f.blocks["b"](tokens["b"], tokens["a"])
    want = torch.relu(f.out(torch.cat([h_a.mean(1), h_b.mean(1), torch.zeros(1, 8)], dim=1)))
    torch.testing.assert_close(out[1:2], want)
    # rows that have every modality are unchanged by row 1's missing input
    torch.testing.assert_close(out[[0, 2, 3, 4]], f(x)[[0, 2, 3, 4]])
    # a sample with only one modality skips attention but stays finite
    alone = {"b": torch.zeros(5, dtype=torch.bool), "c": torch.zeros(5, dtype=torch.bool)}
    assert torch.isfinite(f(x, alone)).all()


def test_cross_attention_accepts_sequences_of_any_length():
    torch.manual_seed(0)
    f = CrossAttentionFusion(DIMS, 4, dim=8, heads=2, sequence=True)
    seq = {"image": torch.randn(3, 7, 6), "audio": torch.randn(3, 2, 5)}
    assert f(seq).shape == (3, 4)
    with pytest.raises(ValueError, match=r"'audio'.*\(3, 5\).*expected \(B, \*, 5\)"):
        f({"image": seq["image"], "audio": torch.randn(3, 5)})
    with pytest.raises(ValueError, match="at least two modalities"):
        CrossAttentionFusion({"a": 3}, 4)


# ------------------------------------------------------------------ DEQ fusion


def _contractive_deq(dims, d=16, **opts):
    """A DEQ fusion whose map is a contraction (the check of method-notes Sec. 5): W2 and W_f scaled
    down, the branches' output GroupNorm gain halved, one group per norm (no tiny groups)."""
    torch.manual_seed(0)
    f = DEQFusion(dims, d, groups=1, **opts).double()
    with torch.no_grad():
        for b in f.branches.values():
            b.w2.weight.mul_(0.1)
            b.gn3.weight.fill_(0.5)
        f.fusion_branch.fuse.weight.mul_(0.1)
    return f


@pytest.mark.parametrize("solver", ["anderson", "iteration"])
def test_deq_residual_is_below_tolerance_at_the_returned_point(solver):
    dims = {"a": 3, "b": 5}
    f = _contractive_deq(dims, solver=solver, max_iter=100, tol=1e-6)
    x = _features(dims, n=6, dtype=torch.float64)
    z_star, info = f.fixed_point(x)
    # recompute the residual ourselves at the returned point
    with torch.no_grad():
        fz = f.iteration_map(x)(z_star)
    assert float((fz - z_star).norm() / fz.norm()) < 1e-6
    assert info["residual"] < 1e-6 and info["iterations"] < 100
    out = f(x)
    assert f.last_residual < 1e-6 and f.last_iterations == info["iterations"]
    torch.testing.assert_close(out, fz[:, -16:])
    if solver == "anderson":  # acceleration: fewer evaluations of f than plain iteration
        plain = _contractive_deq(dims, solver="iteration", max_iter=100, tol=1e-6)
        plain.fixed_point(x)
        assert info["iterations"] < plain.fixed_point(x)[1]["iterations"]


@pytest.mark.parametrize("solver", ["anderson", "iteration"])
def test_deq_implicit_gradient_matches_unrolled_iterations(solver):
    dims = {"a": 3, "b": 5}
    f = _contractive_deq(dims, solver=solver, max_iter=200, tol=1e-10, backward_tol=1e-10, backward_max_iter=200)
    x = {m: v.requires_grad_() for m, v in _features(dims, n=6, dtype=torch.float64).items()}
    w = torch.randn(6, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (f(x) * w).sum().backward()
    assert f.last_info["backward_residual"] < 1e-9
    implicit = {n: p.grad.clone() for n, p in f.named_parameters()}
    implicit_x = {m: v.grad.clone() for m, v in x.items()}
    f.zero_grad()
    for v in x.values():
        v.grad = None
    # the reference: backpropagate through 200 stored plain iterations from z = 0
    step = f.iteration_map(x)
    z = torch.zeros(6, 3 * 16, dtype=torch.float64)
    for _ in range(200):
        z = step(z)
    (z[:, -16:] * w).sum().backward()
    for n, p in f.named_parameters():
        torch.testing.assert_close(implicit[n], p.grad, rtol=1e-6, atol=1e-8, msg=f"gradient of {n}")
    for m, v in x.items():
        torch.testing.assert_close(implicit_x[m], v.grad, rtol=1e-6, atol=1e-8)


def test_deq_forward_stores_no_iterations_in_the_graph():
    dims = {"a": 3, "b": 5}
    f = _contractive_deq(dims, max_iter=50, tol=1e-8)
    x = _features(dims, n=4, dtype=torch.float64)
    out = f(x)
    # the graph of the output holds one application of f: count GroupNorm backward nodes
    seen, stack, norms = set(), [out.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        norms += "NativeGroupNorm" in type(node).__name__
        stack.extend(n for n, _ in node.next_functions)
    assert f.last_iterations > 5
    assert norms == 3 * 2 + 1  # three per branch, one in the fusion branch


def test_deq_absent_modality_leaves_the_fusion():
    dims = {"a": 3, "b": 5}
    f = _contractive_deq(dims, max_iter=100, tol=1e-9).eval()
    x = _features(dims, n=4, dtype=torch.float64)
    present = {"b": torch.tensor([True, False, True, False])}
    before = f(x, present)
    with torch.no_grad():  # change b's branch and injection: rows without b must not move
        for p in [*f.branches["b"].parameters(), *f.inject["b"].parameters()]:
            p.add_(0.3)
    after = f(x, present)
    torch.testing.assert_close(before[[1, 3]], after[[1, 3]])
    assert (before[[0, 2]] - after[[0, 2]]).abs().max() > 1e-3


def test_solvers_find_the_fixed_point_of_a_linear_contraction():
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))[0]
    A = q @ torch.diag(torch.linspace(-0.9, 0.95, 20, dtype=torch.float64)) @ q.T  # spectral radius 0.95
    c = torch.randn(3, 20, generator=g, dtype=torch.float64)
    exact = torch.linalg.solve(torch.eye(20, dtype=torch.float64) - A, c.T).T  # z = A z + c
    f = lambda z: z @ A.T + c  # noqa: E731
    z0 = torch.zeros(3, 20, dtype=torch.float64)
    z_and, info_and = anderson(f, z0, max_iter=200, tol=1e-8)
    z_it, info_it = fixed_point_iteration(f, z0, max_iter=1000, tol=1e-8)
    assert info_and["residual"] < 1e-8 and info_it["residual"] < 1e-8
    # residual 1e-8 relative, amplified by at most 1 / (1 - 0.95) = 20
    scale = float(exact.norm())
    assert float((z_and - exact).norm()) < 20 * 1e-8 * scale * 1.5
    assert float((z_it - exact).norm()) < 20 * 1e-8 * scale * 1.5
    assert info_and["iterations"] < info_it["iterations"] / 3


# ------------------------------------------------------------------ every registered fusion


def _build(name, dims=DIMS, out=OUT):
    torch.manual_seed(0)
    return make_fusion(name, dims, out)


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_every_parameter_receives_a_gradient(name):
    f = _build(name).train()
    x = _features(n=16)
    out = f(x)
    assert out.shape == (16, OUT)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * w).sum().backward()
    names = [n for n, _ in f.named_parameters()]
    assert names, f"{name} has no registered parameters"
    for n, p in f.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: parameter {n} got no gradient"
    before = {n: p.detach().clone() for n, p in f.named_parameters()}
    torch.optim.SGD(f.parameters(), lr=0.1).step()
    for n, p in f.named_parameters():
        assert not torch.equal(before[n], p), f"{name}: parameter {n} did not change after one step"


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_clear_errors_on_unknown_names_wrong_widths_and_missing_keys(name):
    f = _build(name)
    x = _features()
    with pytest.raises(ValueError, match="unknown modality 'video'"):
        f({**x, "video": torch.randn(7, 3)})
    with pytest.raises(ValueError, match=r"'audio'.*\(7, 4\).*expected \(B, 5\)"):
        f({**x, "audio": torch.randn(7, 4)})
    with pytest.raises(ValueError, match="missing modality 'audio'"):
        f({"image": x["image"]})
    with pytest.raises(ValueError, match="batch size"):
        f({"image": x["image"], "audio": torch.randn(3, 5)})
    with pytest.raises(ValueError, match=r"present\['audio'\] has shape \(3,\)"):
        f(x, {"audio": torch.ones(3, dtype=torch.bool)})


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_values_of_absent_inputs_never_reach_the_output(name):
    f = _build(name).eval()
    x = _features()
    present = {"audio": torch.tensor([True, False, True, False, True, True, True])}
    garbage = {"image": x["image"], "audio": x["audio"].clone()}
    garbage["audio"][[1, 3]] = 1e3
    torch.testing.assert_close(f(x, present), f(garbage, present))


MISSING_AWARE = sorted(n for n, c in FUSIONS.items() if c.handles_missing)


def test_the_missing_aware_fusions_are_the_expected_ones():
    assert set(MISSING_AWARE) >= {"late", "gated", "embracenet", "cross_attention", "deq"}


@pytest.mark.parametrize("name", MISSING_AWARE)
def test_missing_aware_fusions_work_with_one_modality_per_sample(name):
    f = _build(name).eval()
    if name == "embracenet":
        f.eval_selection = "expectation"  # row-independent evaluation for the comparison below
    if name == "deq":  # the solver stops on the batch residual: solve tightly so rows agree alone
        f = _contractive_deq(DIMS, d=OUT, max_iter=100, tol=1e-9).float().eval()
    x = _features(n=6)
    present = {"image": torch.tensor([True, True, False, False, True, True]),
               "audio": torch.tensor([True, False, True, True, False, True])}
    out = f(x, present)
    assert torch.isfinite(out).all()
    # each sample's output depends on its own presence only: evaluating rows alone gives the same numbers
    for i in range(6):
        one = f({m: v[i:i + 1] for m, v in x.items()}, {m: v[i:i + 1] for m, v in present.items()})
        torch.testing.assert_close(out[i:i + 1], one, rtol=1e-4, atol=1e-5)
    # and a sample without audio does not depend on how audio's parameters are set
    params = [p for n, p in f.named_parameters() if "audio" in n]
    if params:
        with torch.no_grad():
            for p in params:
                p.add_(0.5)
        torch.testing.assert_close(f(x, present)[[1, 4]], out[[1, 4]], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ XOR: what an additive fusion cannot do


def _xor_accuracy(fusion: str, seed: int = 0) -> tuple[float, float]:
    """Test accuracy on two-bit XOR, and the best accuracy any additive model can reach on that test set."""
    train = to_batch(make_bitwise("xor", n=256, seed=seed))
    test = to_batch(make_bitwise("xor", n=256, seed=seed + 100))
    torch.manual_seed(seed)
    if fusion == "early":  # Eq. (4) on the raw bits, then the head: a one-hidden-layer MLP
        encoders = {m: MLPEncoder(1, out_dim=None) for m in ("x1", "x2")}
    else:
        encoders = {m: MLPEncoder(1, out_dim=8, hidden=(8,)) for m in ("x1", "x2")}
    opts = {"dim": 8, "heads": 2, "tokens": 2} if fusion == "cross_attention" else {}
    model = MultimodalClassifier(encoders, fusion, 2, fusion_dim=16, **opts)
    fit(model, train, epochs=40, batch_size=64, lr=0.01, seed=seed, progress=False)
    # an additive score a(x1) + b(x2) gets at most 3 of the 4 cells right: the best is to sacrifice the rarest
    cells = torch.stack([test.inputs["x1"][:, 0], test.inputs["x2"][:, 0]], dim=1)
    counts = [float((cells == torch.tensor(c)).all(dim=1).float().mean()) for c in ([0.0, 0.0], [0.0, 1.0],
                                                                                     [1.0, 0.0], [1.0, 1.0])]
    return evaluate(model, test)["accuracy"], 1.0 - min(counts)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_interaction_fusions_learn_xor_where_late_fusion_cannot(seed):
    late, cap = _xor_accuracy("late", seed)
    # late fusion is additive across modalities: never above the 3-of-4-cells bound (about 75 %)
    assert late <= cap + 1e-6 and cap < 0.85
    for fusion in ("tensor", "cross_attention", "early"):
        acc, _ = _xor_accuracy(fusion, seed)
        assert acc > 0.95, (fusion, acc)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_on_continuous_xor_tensor_fusion_is_accurate_and_late_fusion_is_at_chance(seed):
    # y = 1[u_1 u_2 > 0], u_m a private latent of view m: neither view alone says anything about y
    train, test = fusion_datasets(("synergy",), n_train=600, n_test=400, seed=seed)["synergy"]
    tensor = train_fusion("tensor", train, test, epochs=8, batch_size=100, seed=seed).accuracy
    late = train_fusion("late", train, test, epochs=8, batch_size=100, seed=seed).accuracy
    assert tensor > 0.75  # 0.82-0.93 over seeds 0-3
    assert abs(late - 0.5) < 0.08  # 0.47-0.51
    assert tensor - late > 0.25
