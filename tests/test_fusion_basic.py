"""Early (Eq. 4), late (Eq. 5) and concatenation fusion on the one contract."""

import pytest
import torch

from mmlearn.fusion import FUSIONS, ConcatFusion, EarlyFusion, LateFusion, make_fusion

DIMS = {"image": 5, "audio": 3}


def _features(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, d, generator=g) for m, d in DIMS.items()}


def test_registry_has_the_basic_fusions():
    for name, cls in (("early", EarlyFusion), ("late", LateFusion), ("concat", ConcatFusion)):
        assert FUSIONS[name] is cls
        assert isinstance(make_fusion(name, DIMS, 4), cls)
    with pytest.raises(ValueError, match="unknown fusion 'nope'"):
        make_fusion("nope", DIMS, 4)
    for name in ("early", "late", "concat"):
        with pytest.raises(ValueError, match="in_dims"):
            make_fusion(name, {}, 4)
    # trained parameters and boundary errors of every registered fusion: tests/test_fusion.py


def test_early_fusion_is_eq4():
    torch.manual_seed(0)
    f = EarlyFusion(DIMS, 4)
    x = _features()
    # Eq. (4) written out: relu(W_image x_image + W_audio x_audio + b)
    want = torch.relu(x["image"] @ f.proj["image"].weight.T + x["audio"] @ f.proj["audio"].weight.T + f.bias)
    torch.testing.assert_close(f(x), want)


def test_early_fusion_equals_one_linear_layer_on_the_concatenation():
    torch.manual_seed(1)
    early, concat = EarlyFusion(DIMS, 4), ConcatFusion(DIMS, 4)
    with torch.no_grad():
        concat.net[0].weight.copy_(torch.cat([early.proj["image"].weight, early.proj["audio"].weight], dim=1))
        concat.net[0].bias.copy_(early.bias + 0.1)
        early.bias.add_(0.1)
    x = _features()
    torch.testing.assert_close(early(x), concat(x))


def test_late_fusion_is_eq5_with_learned_softmax_weights():
    torch.manual_seed(0)
    f = LateFusion(DIMS, 3)
    with torch.no_grad():
        f.logits.copy_(torch.tensor([0.5, -0.5]))
    x = _features()
    w = torch.softmax(torch.tensor([0.5, -0.5]), 0)
    want = w[0] * f.heads["image"](x["image"]) + w[1] * f.heads["audio"](x["audio"])
    torch.testing.assert_close(f(x), want)
    preds = f.predictions(x)
    torch.testing.assert_close(preds["audio"], f.heads["audio"](x["audio"]))


def test_late_fusion_fixed_weights_and_missing_modality():
    torch.manual_seed(0)
    f = LateFusion(DIMS, 3, weights={"image": 3.0, "audio": 1.0})
    x = _features()
    torch.testing.assert_close(f(x), 0.75 * f.heads["image"](x["image"]) + 0.25 * f.heads["audio"](x["audio"]))
    present = {"image": torch.tensor([True, False, True, True, False, True]), "audio": torch.ones(6, dtype=torch.bool)}
    out = f(x, present)
    # a sample without its image is predicted from audio alone (weights renormalised)
    torch.testing.assert_close(out[1], f.heads["audio"](x["audio"])[1])
    torch.testing.assert_close(out[0], (0.75 * f.heads["image"](x["image"]) + 0.25 * f.heads["audio"](x["audio"]))[0])
    w = f.modality_weights(present, 6)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(6))
    with pytest.raises(ValueError, match="'video'"):
        LateFusion(DIMS, 3, weights={"video": 1.0})


def test_missing_modality_is_zero_filled_before_fusion():
    torch.manual_seed(0)
    f = ConcatFusion(DIMS, 4)
    x = _features()
    present = {"audio": torch.tensor([True, False, True, True, True, True])}
    zeroed = {"image": x["image"], "audio": x["audio"].clone()}
    zeroed["audio"][1] = 0
    torch.testing.assert_close(f(x, present), f(zeroed))
