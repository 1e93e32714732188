"""Parameter-efficient and bottleneck fusion: PromptFuse (frozen backbone, trainable prompts) and MIB.

PromptFusion: only the prompts, projections, readout and the classifier head
train; the frozen backbone is bit-identical after training. MIB: the KL term
against the closed form written out here, its bookkeeping per variant, and
deterministic eval.
"""

import math

import pytest
import torch
from torch import nn

from mmlearn.data import make_latent_views, to_batch
from mmlearn.fusion.bottleneck import InformationBottleneckFusion, gaussian_kl, mib_loss
from mmlearn.fusion.prompt import PromptFusion
from mmlearn.models import MLPEncoder, MultimodalClassifier
from mmlearn.train import fit


def _features(dims, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, d, generator=g) for m, d in dims.items()}


# ------------------------------------------------------------------ PromptFusion


def _prompt_model(T=5, tok=4, other=6, d_model=16, n_prompts=3, k=2):
    encoders = {"seq": MLPEncoder((T, tok), out_dim=None), "other": MLPEncoder(other, out_dim=None)}
    fusion = PromptFusion({"seq": T * tok, "other": other}, 8, sequence="seq", tokens=T, d_model=d_model,
                          n_prompts=n_prompts, prompt_tokens=k, n_layers=2, n_heads=4, seed=3)
    return MultimodalClassifier(encoders, fusion, 2)


def test_prompt_fusion_trains_only_prompts_projection_and_head_and_leaves_the_backbone_bit_identical():
    T, tok, other, d, P, k = 5, 4, 6, 16, 3, 2
    torch.manual_seed(0)
    model = _prompt_model(T, tok, other, d, P, k)
    fusion = model.fusion
    names = sorted(n for n, _ in model.named_parameters())
    assert names == sorted([
        "fusion.prompts", "fusion.projections.other.weight", "fusion.projections.other.bias",
        "fusion.readout.weight", "fusion.readout.bias", "head.weight", "head.bias",
    ])
    counts = fusion.trainable_parameters()
    assert counts["trainable"] == P * d + (other * k * d + k * d) + (d * 8 + 8)
    ref = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, 4, 2 * d, batch_first=True, norm_first=True), 2,
                                enable_nested_tensor=False)
    frozen = sum(p.numel() for p in ref.parameters()) + (tok * d + d) + T * d  # backbone, embedding, positions
    assert counts["frozen"] == frozen and counts["total"] == counts["trainable"] + frozen
    frozen_before = {n: b.clone() for n, b in fusion.named_buffers()}
    trained_before = {n: p.detach().clone() for n, p in model.named_parameters()}

    # gradients: exactly the trainable parameters get them
    data = make_latent_views(256, dim={"seq": T * tok, "other": other}, modalities=("seq", "other"), seed=0)
    batch = to_batch(data)
    batch = batch._replace(inputs={"seq": batch.inputs["seq"].reshape(-1, T, tok), "other": batch.inputs["other"]})
    loss = nn.functional.cross_entropy(model(batch.inputs), batch.y)
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    assert all(not b.requires_grad and b.grad is None for b in fusion.buffers())
    model.zero_grad()

    history = fit(model, batch, epochs=4, batch_size=64, lr=1e-2, progress=False)
    assert history["train_loss"][-1] < history["train_loss"][0]
    for n, b in fusion.named_buffers():
        assert torch.equal(b, frozen_before[n]), f"frozen {n} changed"
    for n, p in model.named_parameters():
        assert not torch.equal(p.detach(), trained_before[n]), f"trainable {n} did not change"
    assert not fusion.backbone.training and model.training  # the frozen backbone stays in eval mode


def test_prompt_fusion_freezes_a_given_backbone_and_reproduces_its_output():
    torch.manual_seed(1)
    backbone = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 1,
                                     enable_nested_tensor=False).eval()
    h = torch.randn(3, 4, 8)
    expected = backbone(h).detach()
    f = PromptFusion({"a": 12, "b": 5}, 4, tokens=3, d_model=8, backbone=backbone)
    assert not any(True for _ in f.backbone.parameters())
    torch.testing.assert_close(f.backbone(h), expected)
    out = f(_features({"a": 12, "b": 5}))
    assert out.shape == (8, 4)
    f.double()  # frozen buffers follow dtype conversions
    assert f(_features({"a": 12, "b": 5})).dtype == torch.float64


def test_prompt_fusion_with_a_modality_absent_equals_the_sequence_without_its_prompt_tokens():
    torch.manual_seed(0)
    dims = {"seq": 12, "b": 5, "c": 3}
    f = PromptFusion(dims, 4, tokens=3, d_model=8, n_prompts=2, prompt_tokens=2, n_heads=2).eval()
    x = _features(dims, n=4)
    present = {"b": torch.tensor([True, False, True, False]), "c": torch.tensor([True, True, False, False])}
    out = f(x, present)
    # reference: drop the absent modalities' prompt tokens from the sequence instead of masking them
    with torch.no_grad():
        for row in range(4):
            parts = [f.prompts]
            for m in ("b", "c"):
                if present[m][row]:
                    parts.append(f.projections[m](x[m][row]).reshape(2, 8))
            parts.append(f.embed(x["seq"][row].reshape(3, 4)) + f.positions)
            h = f.backbone(torch.cat(parts).unsqueeze(0))
            torch.testing.assert_close(out[row], f.readout(h.mean(dim=1))[0], rtol=1e-5, atol=1e-5)


def test_prompt_fusion_rejects_bad_options():
    with pytest.raises(ValueError, match="not divisible into tokens=4"):
        PromptFusion({"a": 6, "b": 2}, 4, tokens=4)
    with pytest.raises(ValueError, match="sequence: unknown modality 'c'"):
        PromptFusion({"a": 6, "b": 2}, 4, sequence="c")
    with pytest.raises(ValueError, match="d_model=10 must be divisible by n_heads=4"):
        PromptFusion({"a": 6, "b": 2}, 4, d_model=10)
    with pytest.raises(ValueError, match="n_prompts must be >= 0"):
        PromptFusion({"a": 6, "b": 2}, 4, n_prompts=-1)
    with pytest.raises(TypeError, match="tokens must be a whole number"):
        PromptFusion({"a": 6, "b": 2}, 4, tokens=float("nan"))


# ------------------------------------------------------------------ MIB


def closed_form_kl(mu, sigma):
    """0.5 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2), row by row, with plain Python floats."""
    return [0.5 * sum(m * m + s * s - 1 - math.log(s * s) for m, s in zip(r_mu, r_s))
            for r_mu, r_s in zip(mu.tolist(), sigma.tolist())]


def test_gaussian_kl_is_zero_at_the_prior_and_matches_the_closed_form():
    assert torch.equal(gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5)), torch.zeros(3))
    assert float(gaussian_kl(torch.ones(1, 1), torch.zeros(1, 1))) == pytest.approx(0.5)
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 6, generator=g, dtype=torch.float64)
    sigma = torch.rand(4, 6, generator=g, dtype=torch.float64) * 2 + 0.1
    got = gaussian_kl(mu, torch.log(sigma**2))
    torch.testing.assert_close(got, torch.tensor(closed_form_kl(mu, sigma), dtype=torch.float64))
    normal = torch.distributions.Normal
    ref = torch.distributions.kl_divergence(normal(mu, sigma), normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(got, ref)


def _ib_parts(ib, h):
    a = ib.hidden(h)
    return ib.mu(a), ib.logvar(a)


@pytest.mark.parametrize("variant", ["early", "late", "full"])
def test_mib_stores_the_kl_of_its_bottlenecks_and_eval_uses_the_mean(variant):
    dims = {"a": 5, "b": 3}
    torch.manual_seed(0)
    f = InformationBottleneckFusion(dims, 6, variant=variant, hidden=16).double()
    x = {m: v.double() for m, v in _features(dims, n=10).items()}
    f.eval()
    out = f(x)
    torch.testing.assert_close(out, f(x), rtol=0, atol=0)  # deterministic
    # recompute the means and the KL from the heads, independently of forward
    if variant == "early":
        mu, lv = _ib_parts(f.fused_ib, torch.cat([x["a"], x["b"]], 1))
        torch.testing.assert_close(out, mu)
        want = gaussian_kl(mu, lv).mean()
    else:
        parts = {m: _ib_parts(f.modality_ib[m], x[m]) for m in dims}
        zcat = torch.cat([parts["a"][0], parts["b"][0]], 1)
        want = sum(gaussian_kl(mu, lv).mean() for mu, lv in parts.values())
        if variant == "late":
            torch.testing.assert_close(out, f.fuse(zcat))
        else:
            mu, lv = _ib_parts(f.fused_ib, zcat)
            torch.testing.assert_close(out, mu)
            want = want + gaussian_kl(mu, lv).mean()
    torch.testing.assert_close(f.kl, want)
    assert float(f.kl.detach()) > 0
    torch.testing.assert_close(f.kl_loss(0.5), 0.5 * want)
    # training mode samples: two passes differ; where no bottleneck reads a sample (early, late), the KL
    # depends on the means and variances only and is the same in both passes
    f.train()
    o1, k1 = f(x), f.kl.detach().clone()
    o2 = f(x)
    assert not torch.allclose(o1, o2)
    if variant != "full":
        torch.testing.assert_close(k1, f.kl.detach())


def test_mib_beta_shrinks_the_kl_through_fit():
    data = make_latent_views(400, dim=6, seed=0)
    kls = {}
    for beta in (0.0, 1.0):
        torch.manual_seed(0)
        enc = {m: MLPEncoder(6, 8, hidden=()) for m in ("x1", "x2")}
        model = MultimodalClassifier(enc, InformationBottleneckFusion({"x1": 8, "x2": 8}, 8, variant="full"), 2)
        fit(model, data, epochs=5, batch_size=64, lr=3e-3, progress=False, extra_losses=[mib_loss(beta)])
        model.eval()
        with torch.no_grad():
            model(to_batch(data).inputs)
        kls[beta] = float(model.fusion.kl)
    assert kls[1.0] < 0.5 * kls[0.0]  # measured 0.015 vs 3.28


def test_mib_rejects_bad_options():
    with pytest.raises(ValueError, match="variant must be one of"):
        InformationBottleneckFusion({"a": 2, "b": 2}, 3, variant="middle")
    with pytest.raises(ValueError, match="beta must be finite"):
        InformationBottleneckFusion({"a": 2, "b": 2}, 3, beta=float("nan"))
    with pytest.raises(ValueError, match="beta must be >= 0"):
        mib_loss(-1.0)
    with pytest.raises(RuntimeError, match="call the fusion"):
        InformationBottleneckFusion({"a": 2, "b": 2}, 3).kl_loss()
