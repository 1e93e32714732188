"""Encoders and the multimodal classifier."""

import pytest
import torch

from mmlearn.fusion import ConcatFusion, LateFusion
from mmlearn.models import (
    ImageCNN,
    MLPEncoder,
    MultimodalClassifier,
    SpectrogramCNN,
    build_classifier,
    default_encoders,
)

SHAPES = {"image": (8, 8), "audio": (20, 20)}


def _inputs(n=4):
    torch.manual_seed(0)
    return {"image": torch.randn(n, 8, 8), "audio": torch.randn(n, 20, 20)}


@pytest.mark.parametrize(
    "encoder, shape",
    [(ImageCNN(16), (8, 8)), (SpectrogramCNN(16), (20, 20)), (MLPEncoder((3, 5), 16), (3, 5))],
)
def test_encoders_map_inputs_to_feature_vectors(encoder, shape):
    assert encoder.out_dim == 16 and encoder.in_shape == shape
    assert encoder(torch.randn(7, *shape)).shape == (7, 16)


def test_image_cnn_accepts_channel_dimension():
    enc = ImageCNN(8)
    x = torch.randn(3, 8, 8)
    torch.testing.assert_close(enc(x), enc(x.unsqueeze(1)))


def test_mlp_encoder_without_out_dim_only_flattens():
    enc = MLPEncoder((4, 5), out_dim=None)
    x = torch.randn(2, 4, 5)
    assert enc.out_dim == 20 and torch.equal(enc(x), x.reshape(2, 20))
    assert len(list(enc.parameters())) == 0


def test_default_encoders_pick_by_modality():
    enc = default_encoders({**SHAPES, "x1": (6,)}, 12)
    assert isinstance(enc["image"], ImageCNN) and isinstance(enc["audio"], SpectrogramCNN)
    assert isinstance(enc["x1"], MLPEncoder)


def test_classifier_shapes_and_unimodal_logits():
    model = build_classifier(SHAPES, 10, "concat", unimodal_heads=True)
    logits, uni = model(_inputs(), return_unimodal=True)
    assert logits.shape == (4, 10) and set(uni) == {"image", "audio"}
    out = model.forward_all(_inputs())
    assert out.features["image"].shape == (4, 32) and out.fused.shape == (4, 64)
    torch.testing.assert_close(out.unimodal["audio"], model.unimodal_heads["audio"](out.features["audio"]))


def test_late_fusion_classifier_has_no_head_and_returns_per_modality_predictions():
    model = build_classifier(SHAPES, 10, "late")
    assert isinstance(model.head, torch.nn.Identity) and model.fusion.out_dim == 10
    logits, uni = model(_inputs(), return_unimodal=True)
    w = torch.softmax(model.fusion.logits, 0)
    torch.testing.assert_close(logits, w[0] * uni["image"] + w[1] * uni["audio"])


def test_early_fusion_classifier_fuses_raw_flattened_inputs():
    model = build_classifier(SHAPES, 10, "early")
    assert model.fusion.in_dims == {"image": 64, "audio": 400}


def test_every_parameter_is_registered():
    model = build_classifier(SHAPES, 10, "concat", unimodal_heads=True)
    names = [n for n, _ in model.named_parameters()]
    for prefix in ("encoders.image.", "encoders.audio.", "fusion.", "head.", "unimodal_heads.audio."):
        assert any(n.startswith(prefix) for n in names), prefix
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for _, p in model.named_parameters())


def test_build_classifier_is_seeded():
    a, b = build_classifier(SHAPES, 10, seed=3), build_classifier(SHAPES, 10, seed=3)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


def test_classifier_errors():
    model = build_classifier(SHAPES, 10)
    x = _inputs()
    with pytest.raises(ValueError, match=r"'image'.*\(4, 7, 7\).*\(B, 8, 8\)"):
        model({"image": torch.zeros(4, 7, 7), "audio": x["audio"]})
    with pytest.raises(ValueError, match="unknown modality 'text'"):
        model({**x, "text": torch.zeros(4, 3)})
    with pytest.raises(ValueError, match="no per-modality logits"):
        model(x, return_unimodal=True)
    encoders = default_encoders(SHAPES, 32)
    with pytest.raises(ValueError, match="fusion expects"):
        MultimodalClassifier(encoders, ConcatFusion({"image": 32}, 8), 10)
    with pytest.raises(ValueError, match="predicts 3 classes"):
        MultimodalClassifier(encoders, LateFusion({"image": 32, "audio": 32}, 3), 10)
    with pytest.raises(ValueError, match="unknown fusion"):
        MultimodalClassifier(encoders, "nope", 10)


def test_model_runs_on_the_device_it_is_given():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_classifier(SHAPES, 10).to(device)
    out = model({m: v.to(device) for m, v in _inputs().items()})
    assert out.device.type == device


# ---------------------------------------------------------------- the boundary: dtypes, NaN, absent rows


class _BNEncoder(MLPEncoder):
    """An MLP encoder with BatchNorm, whose batch statistics an absent NaN row would poison."""

    def __init__(self, in_shape, out_dim=8):
        super().__init__(in_shape, out_dim)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(torch.tensor(in_shape).prod()), 16),
                                       torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, out_dim))


def _bn_model(fusion="concat"):
    torch.manual_seed(0)
    enc = {"image": _BNEncoder((8, 8)), "audio": _BNEncoder((20, 20))}
    return MultimodalClassifier(enc, fusion, 10)


@pytest.mark.parametrize("fusion", ["concat", "late", "gated"])
@pytest.mark.parametrize("train_mode", [True, False])
def test_nan_in_absent_rows_gives_the_same_logits_as_zeros(fusion, train_mode):
    x = _inputs(6)
    present = {"image": torch.tensor([True, False, True, True, False, True]), "audio": torch.ones(6, dtype=torch.bool)}
    zeros, nans = dict(x), dict(x)
    zeros["image"] = torch.where(present["image"][:, None, None], x["image"], torch.zeros(()))
    nans["image"] = torch.where(present["image"][:, None, None], x["image"], torch.tensor(float("nan")))
    nans["image"][4, 0, 0] = float("inf")
    outs, stats = [], []
    for inputs in (zeros, nans):
        model = _bn_model(fusion).train(train_mode)
        outs.append(model(inputs, present))
        stats.append(model.encoders["image"].net[2].running_mean.clone())
    assert torch.isfinite(outs[1]).all()
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(stats[0], stats[1])  # BatchNorm's running statistics never saw the NaN rows


def test_classifier_dtype_rule_names_the_modality():
    model = build_classifier(SHAPES, 10)
    x = _inputs()
    model.eval()
    ref = model(x)
    torch.testing.assert_close(model({m: v.double() for m, v in x.items()}), ref)  # float64 is converted
    assert model({m: v.double() for m, v in x.items()}).dtype == torch.float32
    for bad in (torch.int64, torch.bool, torch.int32):
        with pytest.raises(TypeError, match=r"\['audio'\] has dtype torch\.(int|bool)"):
            model({"image": x["image"], "audio": x["audio"].to(bad)})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_classifier_rejects_non_finite_present_rows_naming_the_modality(bad):
    model = build_classifier(SHAPES, 10)
    x = _inputs()
    x["audio"][2, 3, 4] = bad
    with pytest.raises(ValueError, match=r"\['audio'\] holds NaN or inf in 1 present row\(s\) \(first: \[2\]\)"):
        model(x)
    present = {"audio": torch.tensor([True, True, False, True])}
    assert torch.isfinite(model(x, present)).all()  # the same row marked absent is fine


def test_classifier_rejects_non_boolean_masks():
    model = build_classifier(SHAPES, 10)
    with pytest.raises(ValueError, match="True/False"):
        model(_inputs(), {"audio": torch.tensor([0.0, 0.5, 1.0, 1.0])})
    # 0/1 masks are accepted and mean the same as booleans
    torch.testing.assert_close(model(_inputs(), {"audio": torch.tensor([0, 1, 1, 0])}),
                               model(_inputs(), {"audio": torch.tensor([False, True, True, False])}))
