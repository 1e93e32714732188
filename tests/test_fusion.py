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
from mmlearn.experiments.fusion import fusion_datasets, train_fusion
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
NAN, INF = float("nan"), float("inf")


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


def test_tensor_fusion_refuses_a_huge_tensor_and_points_to_low_rank(monkeypatch):
    dims = {f"m{i}": 64 for i in range(5)}  # 65^5 = 1,160,290,625 columns, 37 G weights at out_dim 32
    with pytest.raises(ValueError, match=r"1,160,290,625.*37,129,300,032 parameters.*LowRankFusion"):
        TensorFusion(dims, 32)
    LowRankFusion(dims, 32)  # the way out: 4 * 5 * 65 * 32 weights
    # the limit is a class attribute: exactly at it is accepted, one over is refused
    monkeypatch.setattr(TensorFusion, "max_weights", 100)
    assert TensorFusion({"a": 3, "b": 4}, 5).linear.weight.numel() == 100
    with pytest.raises(ValueError, match="max_weights = 100"):
        TensorFusion({"a": 3, "b": 4}, 6)


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


@pytest.mark.parametrize("selection", ["sample", "expectation"])
def test_embracenet_eval_output_of_a_row_does_not_depend_on_the_other_rows(selection):
    torch.manual_seed(0)
    dims = {"a": 3, "b": 4, "c": 2}
    f = EmbraceNetFusion(dims, 64, probabilities={"a": 1.0, "b": 2.0, "c": 1.0}, eval_selection=selection).eval()
    x = _features(dims, n=50)
    g = torch.Generator().manual_seed(3)
    present = {m: torch.rand(50, generator=g) > 0.3 for m in dims}
    out = f(x, present)
    shares = f.selection_shares(x, present)

    def rows(idx):
        return {m: v[idx] for m, v in x.items()}, {m: v[idx] for m, v in present.items()}

    for i in (0, 7, 49):  # alone: the same selection exactly, the same output up to rounding
        xi, pi = rows([i])
        assert torch.equal(f.selection_shares(xi, pi), shares[i : i + 1])
        torch.testing.assert_close(f(xi, pi), out[i : i + 1])
    perm = torch.randperm(50, generator=g)  # shuffled batch
    xp, pp = rows(perm)
    assert torch.equal(f.selection_shares(xp, pp), shares[perm])
    torch.testing.assert_close(f(xp, pp), out[perm])
    # the official code draws from the global generator at test time: it would have moved between calls
    torch.manual_seed(123)
    torch.testing.assert_close(f(x, present), out)
    if selection == "sample":  # still a draw: every component from exactly one present modality
        docked = f.dock(x, present)
        from_one = torch.zeros(50, 64, dtype=torch.bool)
        for m in dims:
            from_one |= (out == docked[m]) & present[m].unsqueeze(1)
        assert bool(from_one[torch.stack(list(present.values())).any(0)].all())


def test_embracenet_eval_draws_follow_the_selection_probabilities():
    # the inverse-CDF draw at fixed uniforms is a draw from Categorical(p_b): shares match p_b over many components
    f = EmbraceNetFusion(DIMS, 4000, probabilities={"image": 1.0, "audio": 3.0}, seed=5).eval()
    x = _features(n=3)
    shares = f.selection_shares(x)
    torch.testing.assert_close(shares, torch.tensor([[0.25, 0.75]] * 3), atol=0.025, rtol=0)
    # another seed, another draw (same distribution)
    g = EmbraceNetFusion(DIMS, 4000, probabilities={"image": 1.0, "audio": 3.0}, seed=6).eval()
    g.load_state_dict(f.state_dict())
    assert not torch.equal(g(x), f(x))
    only_audio = {"image": torch.zeros(3, dtype=torch.bool)}
    assert torch.equal(f.selection_shares(x, only_audio), torch.tensor([[0.0, 1.0]] * 3))


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


def _mult_layer_reference(block, x, x_kv, heads):
    """MulT's crossmodal layer, transcribed from yaohungt/Multimodal-Transformer, modules/transformer.py
    (TransformerEncoderLayer with normalize_before=True, then TransformerEncoder's final layer_norm) and
    modules/multihead_attention.py, in eval mode (dropouts off), with mmlearn's weights copied in.
    Shapes as in MulT: (T, B, dim)."""
    ln0, ln1, ln_final = block.norm1, block.norm2, block.norm_out
    w_in, b_in = block.attn.in_proj_weight, block.attn.in_proj_bias
    fc1, fc2 = block.ffn[0], block.ffn[-1]

    def layer_norm(ln, t):
        return F.layer_norm(t, (t.shape[-1],), ln.weight, ln.bias, ln.eps)

    def multihead_attention(query, key, value):
        tgt_len, bsz, embed_dim = query.shape
        head_dim = embed_dim // heads
        scaling = head_dim**-0.5
        q = F.linear(query, w_in[:embed_dim], b_in[:embed_dim])  # in_proj_q
        k = F.linear(key, w_in[embed_dim : 2 * embed_dim], b_in[embed_dim : 2 * embed_dim])  # in_proj_k
        v = F.linear(value, w_in[2 * embed_dim :], b_in[2 * embed_dim :])  # in_proj_v
        q = q * scaling
        q = q.contiguous().view(tgt_len, bsz * heads, head_dim).transpose(0, 1)
        k = k.contiguous().view(-1, bsz * heads, head_dim).transpose(0, 1)
        v = v.contiguous().view(-1, bsz * heads, head_dim).transpose(0, 1)
        attn_weights = F.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1)
        attn = torch.bmm(attn_weights, v)
        attn = attn.transpose(0, 1).contiguous().view(tgt_len, bsz, embed_dim)
        return block.attn.out_proj(attn)

    # TransformerEncoderLayer.forward(x, x_k, x_v), normalize_before = True
    residual = x
    x = layer_norm(ln0, x)
    x_k = layer_norm(ln0, x_kv)
    x_v = layer_norm(ln0, x_kv)
    x = multihead_attention(x, x_k, x_v)
    x = residual + x
    residual = x
    x = layer_norm(ln1, x)
    x = F.relu(fc1(x))
    x = fc2(x)
    x = residual + x
    # TransformerEncoder: self.layer_norm after the layers
    return layer_norm(ln_final, x)


def test_cross_modal_block_is_mults_pre_norm_crossmodal_layer():
    torch.manual_seed(0)
    dim, heads = 12, 3
    f = CrossAttentionFusion({"a": 4, "b": 3}, 5, dim=dim, heads=heads).double().eval()
    block = f.blocks["a"]
    assert block.norm == "pre" and block.ffn[0].out_features == 4 * dim  # MulT's defaults
    with torch.no_grad():  # move every weight off its init (LayerNorm gains 1, biases 0)
        for p in block.parameters():
            p.add_(0.3 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    q = torch.randn(6, 5, dim, generator=g, dtype=torch.float64)  # (B, T_q, dim)
    kv = torch.randn(6, 7, dim, generator=g, dtype=torch.float64)  # (B, T_kv, dim)
    with torch.no_grad():
        ours = block(q, kv)
        ref = _mult_layer_reference(block, q.transpose(0, 1), kv.transpose(0, 1), heads).transpose(0, 1)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)
    # the post-norm option is a different function of the same weights
    post = CrossAttentionFusion({"a": 4, "b": 3}, 5, dim=dim, heads=heads, norm="post").double().eval()
    assert post.blocks["a"].norm_out is None
    post.blocks["a"].load_state_dict({k: v for k, v in block.state_dict().items() if not k.startswith("norm_out")})
    with torch.no_grad():
        assert (post.blocks["a"](q, kv) - ours).abs().max() > 0.1
        # post-norm written out: LN_2(h + FFN(h)), h = LN_1(q + MHA(q, kv, kv))
        att = block.attn(q, kv, kv, need_weights=False)[0]
        h = F.layer_norm(q + att, (dim,), block.norm1.weight, block.norm1.bias)
        want = F.layer_norm(h + block.ffn(h), (dim,), block.norm2.weight, block.norm2.bias)
        torch.testing.assert_close(post.blocks["a"](q, kv), want, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="norm must be one of"):
        CrossAttentionFusion({"a": 4, "b": 3}, 5, norm="sandwich")


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


@pytest.mark.parametrize("solver", [anderson, fixed_point_iteration])
def test_solvers_converge_per_sample_and_a_bad_row_changes_no_other(solver):
    # a row-wise map z -> a_b z + c_b: rows 1..4 contract (|a| < 1); row 0 is z -> z + 1, which has no fixed point
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([1.0, 0.5, -0.4, 0.2, 0.3], dtype=torch.float64).unsqueeze(1)
    c = torch.randn(5, 4, generator=g, dtype=torch.float64)
    c[0] = 1.0
    z0 = torch.zeros(5, 4, dtype=torch.float64)
    z, info = solver(lambda z: a * z + c, z0, max_iter=40, tol=1e-8)
    assert torch.isfinite(z).all()
    exact = c / (1 - a)  # rows 1..4
    assert info["converged"].tolist() == [False, True, True, True, True]
    assert info["sample_iterations"][0] == 40 and bool((info["sample_iterations"][1:] < 40).all())
    for i in range(1, 5):
        zi, info_i = solver(lambda z, i=i: a[i] * z + c[i], z0[i : i + 1], max_iter=40, tol=1e-8)
        # the same iterates as alone: the same number of steps and the same point
        assert info_i["iterations"] == int(info["sample_iterations"][i])
        torch.testing.assert_close(z[i : i + 1], zi, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(zi, exact[i : i + 1], rtol=1e-6, atol=1e-6)
    assert info["residual"] == pytest.approx(float(info["residuals"].max()))
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        solver(lambda z: a * z + c, z0, max_iter=0, tol=1e-8)
    with pytest.raises(ValueError, match="tol must be finite"):
        solver(lambda z: a * z + c, z0, max_iter=5, tol=float("nan"))
    # max_iter = 1: f evaluated once, z0 returned with its residual
    z1, info1 = solver(lambda z: a * z + c, z0, max_iter=1, tol=1e-8)
    assert torch.equal(z1, z0) and info1["iterations"] == 1 and info1["residual"] == pytest.approx(1.0)


@pytest.mark.parametrize("solver", [anderson, fixed_point_iteration])
def test_solvers_evaluate_only_the_rows_still_iterating(solver):
    """With ``f.restrict(rows)``, rows that have stopped are no longer evaluated (once a quarter of the working
    set has stopped); every result is the one the unrestricted map gives."""
    g = torch.Generator().manual_seed(0)
    # z -> a * z + c per coordinate: 30 fast rows (a = 0.05) and 10 slow ones (a spread over +-0.97, which
    # takes Anderson with a 6-step history many steps too)
    a = torch.cat([torch.full((30, 20), 0.05), torch.linspace(-0.97, 0.97, 20).expand(10, 20)]).double()
    c = torch.randn(40, 20, generator=g, dtype=torch.float64)
    evaluated = []

    def make(rows):
        def f(z):
            evaluated.append(z.shape[0])
            return a[rows] * z + c[rows]

        f.restrict = make
        return f

    z0 = torch.zeros(40, 20, dtype=torch.float64)
    z, info = solver(make(torch.arange(40)), z0, max_iter=2000, tol=1e-10)
    plain_z, plain_info = solver(lambda z: a * z + c, z0, max_iter=2000, tol=1e-10)
    torch.testing.assert_close(z, plain_z, rtol=1e-12, atol=1e-12)
    assert info["sample_iterations"].tolist() == plain_info["sample_iterations"].tolist()
    assert bool(info["converged"].all())
    torch.testing.assert_close(z, c / (1 - a), rtol=1e-6, atol=1e-6)  # residual 1e-10, amplified <= 1 / 0.03
    # the fast rows stop long before the slow ones; then only the slow ones are evaluated
    assert int(info["sample_iterations"][:30].max()) < int(info["sample_iterations"][30:].min()) / 2
    assert evaluated[0] == 40 and evaluated[-1] <= 10
    assert sum(evaluated) < 0.5 * 40 * info["iterations"]


@pytest.mark.parametrize("option", [{"m": 0}, {"m": 2.5}, {"lam": NAN}, {"lam": -1.0}, {"beta": 0.0}, {"beta": NAN},
                                    {"beta": 1.5}, {"max_iter": NAN}, {"tol": -INF}])
def test_anderson_rejects_bad_options(option):
    z0 = torch.zeros(2, 3)
    with pytest.raises((ValueError, TypeError), match=list(option)[0]):
        anderson(lambda z: 0.5 * z + 1, z0, **{"max_iter": 10, "tol": 1e-6, **option})


def test_deq_output_of_a_row_is_the_same_alone_and_beside_a_hard_row():
    torch.manual_seed(0)
    # PyTorch's default init (init_scale = 1): some rows are far from a contraction and stop at max_iter
    f = DEQFusion(DIMS, OUT, init_scale=1.0, max_iter=30, tol=1e-4).double().eval()
    x = _features(n=40, seed=1, dtype=torch.float64)
    with torch.no_grad():
        out = f(x)
        info = f.last_info
        converged = info["converged"]
        assert 0 < int(converged.sum()) < 40, "the batch should mix easy and hard rows"
        hard = int((~converged).nonzero()[0])
        assert info["residuals"][hard] > 1e-3
        for i in converged.nonzero().flatten()[:6].tolist():
            pair = {m: v[[i, hard]] for m, v in x.items()}  # this row next to a hard row, and alone
            alone = f({m: v[i : i + 1] for m, v in x.items()})
            torch.testing.assert_close(f(pair)[:1], alone, rtol=1e-7, atol=1e-7)
            torch.testing.assert_close(out[i : i + 1], alone, rtol=1e-7, atol=1e-7)
            assert f.last_info["sample_iterations"][0] == info["sample_iterations"][i]


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


ABSENT = {
    "image": torch.tensor([True, True, True, False, True, True, False]),
    "audio": torch.tensor([True, False, True, False, True, True, True]),
}  # row 3 has nothing


@pytest.mark.parametrize("name", sorted(FUSIONS))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_nan_and_inf_in_absent_rows_never_reach_the_output(name, bad):
    f = _build(name).eval()
    x = _features()
    zeros = {m: torch.where(ABSENT[m].unsqueeze(1), v, torch.zeros_like(v)) for m, v in x.items()}
    poisoned = {m: torch.where(ABSENT[m].unsqueeze(1), v, torch.full_like(v, bad)) for m, v in x.items()}
    out = f(poisoned, ABSENT)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, f(zeros, ABSENT), rtol=0, atol=0)
    torch.testing.assert_close(out, f(x, ABSENT), rtol=0, atol=0)
    # training mode too, and the gradients stay finite
    f.train()
    torch.manual_seed(0)  # EmbraceNet draws in training: the same draws for both calls
    out = f(poisoned, ABSENT)
    torch.manual_seed(0)
    torch.testing.assert_close(out, f(zeros, ABSENT), rtol=0, atol=1e-6)
    out.sum().backward()
    for n, p in f.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {n}"


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_nan_in_a_present_row_and_non_float_inputs_are_clear_errors(name):
    f = _build(name).eval()
    x = _features()
    nan_audio = {**x, "audio": x["audio"].clone()}
    nan_audio["audio"][2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"\['audio'\] holds NaN or inf in 1 present row.*\[2\]"):
        f(nan_audio)
    with pytest.raises(ValueError, match=r"\['audio'\] holds NaN or inf"):
        f(nan_audio, ABSENT)  # row 2 has its audio
    f(nan_audio, {"audio": torch.arange(7) != 2})  # marked absent: accepted
    with pytest.raises(TypeError, match=r"\['image'\] has dtype torch.int64"):
        f({**x, "image": torch.ones(7, 6, dtype=torch.long)})
    with pytest.raises(TypeError, match=r"\['audio'\] has dtype torch.bool"):
        f({**x, "audio": torch.ones(7, 5, dtype=torch.bool)})
    # float64 (and float16) inputs are converted to the parameters' dtype
    with torch.no_grad():
        out = f(x)
        out64 = f({m: v.double() for m, v in x.items()})
    assert out64.dtype == torch.float32
    torch.testing.assert_close(out64, out)
    f64 = _build(name).double().eval()
    with torch.no_grad():
        assert f64(x).dtype == torch.float64
        assert f64({m: v.half() for m, v in x.items()}).dtype == torch.float64


BAD_OPTIONS = [
    ("late", {"weights": {"image": NAN}}, "weights"),
    ("late", {"weights": {"image": -1.0, "audio": 2.0}}, "weights"),
    ("late", {"weights": {"image": INF}}, "weights"),
    ("late", {"weights": {"image": 0.0, "audio": 0.0}}, "positive sum"),
    ("concat", {"hidden": -1}, "hidden"),
    ("concat", {"hidden": 2.5}, "hidden"),
    ("concat", {"dropout": NAN}, "dropout"),
    ("concat", {"dropout": 1.0}, "dropout"),
    ("tensor", {"dropout": NAN}, "dropout"),
    ("tensor", {"dropout": -0.1}, "dropout"),
    ("low_rank", {"rank": 0}, "rank"),
    ("low_rank", {"rank": NAN}, "rank"),
    ("cross_attention", {"heads": 0}, "heads"),
    ("cross_attention", {"heads": 3}, "divisible"),
    ("cross_attention", {"dim": 0}, "dim"),
    ("cross_attention", {"tokens": 0}, "tokens"),
    ("cross_attention", {"ffn_mult": 0}, "ffn_mult"),
    ("cross_attention", {"dropout": NAN}, "dropout"),
    ("embracenet", {"probabilities": {"image": NAN}}, "probabilities"),
    ("embracenet", {"probabilities": {"image": -1.0, "audio": 1.0}}, "probabilities"),
    ("embracenet", {"seed": NAN}, "seed"),
    ("embracenet", {"eval_selection": "mean"}, "eval_selection"),
    ("deq", {"init_scale": NAN}, "init_scale"),
    ("deq", {"init_scale": -1.0}, "init_scale"),
    ("deq", {"tol": NAN}, "tol"),
    ("deq", {"tol": 0.0}, "tol"),
    ("deq", {"max_iter": 0}, "max_iter"),
    ("deq", {"backward_max_iter": 0}, "backward_max_iter"),
    ("deq", {"backward_tol": INF}, "backward_tol"),
    ("deq", {"groups": 0}, "groups"),
    ("deq", {"groups": 3}, "divisible"),
    ("deq", {"anderson_m": 0}, "anderson_m"),
    ("deq", {"jacobian_samples": -1}, "jacobian_samples"),
    ("deq", {"jacobian_weight": NAN}, "jacobian_weight"),
    ("deq", {"jacobian_weight": -1.0}, "jacobian_weight"),
    ("deq", {"solver": "newton"}, "solver"),
    ("prompt", {"tokens": 0}, "tokens"),
    ("prompt", {"d_model": 0}, "d_model"),
    ("prompt", {"n_prompts": -1}, "n_prompts"),
    ("prompt", {"n_prompts": NAN}, "n_prompts"),
    ("prompt", {"prompt_tokens": 0}, "prompt_tokens"),
    ("prompt", {"n_layers": -1}, "n_layers"),
    ("prompt", {"n_heads": 0}, "n_heads"),
    ("prompt", {"n_heads": 5}, "divisible"),
    ("prompt", {"seed": NAN}, "seed"),
    ("prompt", {"backbone": 3}, "backbone"),
    ("information_bottleneck", {"latent_dim": 0}, "latent_dim"),
    ("information_bottleneck", {"hidden": 0}, "hidden"),
    ("information_bottleneck", {"beta": NAN}, "beta"),
    ("information_bottleneck", {"beta": -1.0}, "beta"),
    ("information_bottleneck", {"variant": "middle"}, "variant"),
]


@pytest.mark.parametrize("name, options, message", BAD_OPTIONS, ids=[f"{n}-{list(o)[0]}-{i}" for i, (n, o, _) in
                                                                     enumerate(BAD_OPTIONS)])
def test_bad_numeric_options_are_clear_errors(name, options, message):
    # NaN passes a plain ``x < 0`` check; heads=0 / groups=0 used to raise ZeroDivisionError
    with pytest.raises((ValueError, TypeError), match=message):
        make_fusion(name, DIMS, OUT, **options)


def test_every_option_of_every_fusion_has_a_bad_value_test():
    import inspect

    not_numbers = {"activation", "sequence", "learn_lambda", "norm"}  # strings and flags, checked elsewhere
    for name, cls in FUSIONS.items():
        options = set(inspect.signature(cls.__init__).parameters) - {"self", "in_dims", "out_dim"}
        tested = {k for n, o, _ in BAD_OPTIONS if n == name for k in o}
        assert options - not_numbers - tested == set(), (name, options - not_numbers - tested)


MISSING_AWARE = sorted(n for n, c in FUSIONS.items() if c.handles_missing)


def test_the_missing_aware_fusions_are_the_expected_ones():
    assert set(MISSING_AWARE) >= {"late", "gated", "embracenet", "cross_attention", "deq"}


@pytest.mark.parametrize("name", MISSING_AWARE)
def test_missing_aware_fusions_work_with_one_modality_per_sample(name):
    f = _build(name).eval()
    if name == "deq":  # a contraction, solved tightly: every row converges (see the DEQ tests for the others)
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
