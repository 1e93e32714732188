"""The representation figures and panel: pure functions, builders, and the panel driven by control.value."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmlearn.data import Batch
from mmlearn.models import MLPEncoder, MultimodalClassifier
from mmlearn.representation import JointAutoencoder, MultimodalVAE, coherence
from mmlearn.viz import image_strip, image_strips_figure, latent_generation_figure, objective_curves, probe_accuracy_figure
from mmlearn.widgets import RepresentationPanel, fit_projection, infer_and_generate
from mmlearn.widgets.representation import generation_coherence, real_accuracy

SHAPES = {"image": (8, 8), "audio": (20, 20)}


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 10
    # a class-dependent offset so latents and images differ by class
    inputs = {m: torch.randn(60, *s, generator=g) + y.float().reshape(-1, *[1] * len(s)) / 5 for m, s in SHAPES.items()}
    return Batch(inputs, y)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {"PoE": MultimodalVAE(SHAPES, 4, "poe").eval(), "MoE": MultimodalVAE(SHAPES, 4, "moe").eval(),
            "joint AE": JointAutoencoder(SHAPES, 4).eval()}


def test_image_strip_places_images_with_blank_gaps():
    images = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    strip = image_strip(images, gap=1)
    assert strip.shape == (3, 5)
    np.testing.assert_array_equal(strip[:, :2], images[0])
    np.testing.assert_array_equal(strip[:, 3:], images[1])
    assert np.isnan(strip[:, 2]).all()
    with pytest.raises(ValueError, match=r"expected \(n, h, w\)"):
        image_strip(np.zeros((3, 4)))


def test_latent_generation_figure_layout():
    xy = np.array([[0, 0], [1, 1], [2, 2.0]])
    fig = latent_generation_figure(xy, [0, 1, 1], np.zeros((2, 8, 8)), np.ones((2, 8, 8)),
                                   label_names=["zero", "one", "two"], classes=[0, 1, 2], generated_title="gen")
    # one scatter trace per class (even empty ones), then the two heatmaps
    assert [t.type for t in fig.data] == ["scatter"] * 3 + ["heatmap"] * 2
    assert list(fig.data[1].x) == [1, 2] and fig.data[1].name == "one" and len(fig.data[2].x) == 0
    assert np.array(fig.data[4].z, dtype=float).shape == (8, 17)
    assert [a.text for a in fig.layout.annotations] == ["inferred latent (first two principal axes)", "real images", "gen"]
    assert fig.layout.xaxis.title.text == "latent PC 1" and fig.layout.yaxis.title.text == "latent PC 2"
    with pytest.raises(ValueError, match="label_names has 2 names but the classes go up to 2"):
        latent_generation_figure(xy, [0, 1, 2], np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), label_names=["a", "b"])
    with pytest.raises(ValueError, match=r"expected \(N, 2\) and \(N,\)"):
        latent_generation_figure(np.zeros((3, 3)), [0, 1, 1], np.zeros((1, 8, 8)), np.zeros((1, 8, 8)))


def test_other_builders():
    fig = image_strips_figure({"real": np.zeros((3, 8, 8)), "from audio": np.ones((3, 8, 8))}, "t")
    assert len(fig.data) == 2 and [a.text for a in fig.layout.annotations] == ["real", "from audio"]
    fig = probe_accuracy_figure({"shared": 0.9, "image": 0.3}, chance=0.1)
    assert list(fig.data[0].y) == [0.9, 0.3] and fig.layout.yaxis.title.text == "probe accuracy (test)"
    assert [(sh.y0, sh.name, sh.showlegend) for sh in fig.layout.shapes] == [(0.1, "chance (10.0%)", True)]
    fig = probe_accuracy_figure({"MoE": 0.56, "PoE": 0.22}, chance=0.1, ceiling=0.961, ceiling_label="real images")
    # both reference lines are in the legend and labelled (in the right margin, clear of the bars)
    assert [(sh.y0, sh.name) for sh in fig.layout.shapes] == [(0.961, "real images (96.1%)"), (0.1, "chance (10.0%)")]
    assert [a.text for a in fig.layout.annotations] == ["real images<br>96.1%", "chance<br>10.0%"]
    assert all(a.x >= 1 and a.xanchor == "left" for a in fig.layout.annotations)
    assert fig.data[0].textfont.size >= 11
    fig = objective_curves({"a": {"epoch": [1, 2], "loss": [3.0, 2.0]}, "b": {"epoch": [1], "loss": [1.0]}})
    assert [t.name for t in fig.data] == ["a", "b"] and list(fig.data[0].y) == [3.0, 2.0]
    with pytest.raises(ValueError, match="has no 'kl'"):
        objective_curves({"a": {"epoch": [1], "loss": [1.0]}}, key="kl")


def test_fit_projection_is_pca():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((200, 3)) * np.array([5.0, 2.0, 0.1])
    mean, axes = fit_projection(z)
    np.testing.assert_allclose(mean, z.mean(0))
    # the top axes are (up to sign, fixed positive) the coordinate axes of largest variance
    np.testing.assert_allclose(np.abs(axes), np.eye(3)[:2], atol=0.05)
    assert (axes[np.arange(2), np.abs(axes).argmax(1)] > 0).all()


def test_infer_and_generate_matches_the_model(data, models):
    vae = models["MoE"]
    out = infer_and_generate(vae, data, ["audio"], "image", examples=[0, 5])
    with torch.no_grad():
        z = vae.encode({"audio": data.inputs["audio"]})
        gen = vae.generate({"audio": data.inputs["audio"][[0, 5]]}, target_modality="image")
    np.testing.assert_allclose(out["latent"], z.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["generated"], gen.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["true"], data.inputs["image"][[0, 5]].numpy())
    assert out["mode"] == "generated" and out["observed"] == ["audio"]
    # the projection given is used as is
    mean, axes = np.zeros(4), np.eye(4)[:2]
    out = infer_and_generate(vae, data, ["audio", "image"], "image", projection=(mean, axes))
    np.testing.assert_allclose(out["xy"], out["latent"][:, :2], rtol=1e-6)
    assert out["mode"] == "reconstructed"
    with pytest.raises(ValueError, match="No modality is observed"):
        infer_and_generate(vae, data, [], "image")
    with pytest.raises(ValueError, match="unknown modality 'text'"):
        infer_and_generate(vae, data, ["text"], "image")


def test_panel_driven_by_controls(data, models):
    panel = RepresentationPanel(models, data, label_names=[str(i) for i in range(10)], n_points=40)
    fig = panel.figure
    assert set(panel.controls) == {"observe_image", "observe_audio", "posterior"}
    assert len(fig.data) == len(panel.classes) + 2
    full_x = np.concatenate([np.asarray(fig.data[i].x) for i in range(len(panel.classes))])
    full_gen = np.array(fig.data[-1].z, dtype=float)
    assert "reconstructed from image + audio" in fig.layout.annotations[2].text

    # hide the image: the latent comes from audio alone and the image is generated from audio
    panel.controls["observe_image"].value = False
    assert panel.error is None
    assert "images generated from audio" in fig.layout.annotations[2].text
    expected = infer_and_generate(models["PoE"], panel.data, ["audio"], "image", examples=panel.examples,
                                  projection=panel.projections["PoE"])
    np.testing.assert_allclose(np.array(fig.data[-1].z, dtype=float), image_strip(expected["generated"]), rtol=1e-5)
    json.dumps(list(fig.data[-1].z), allow_nan=False)  # a FigureWidget sends strict JSON: gaps are None, not NaN
    np.testing.assert_allclose(np.asarray(fig.data[0].x), expected["xy"][expected["labels"] == panel.classes[0], 0],
                               rtol=1e-5)
    assert not np.allclose(np.array(fig.data[-1].z, dtype=float), full_gen, equal_nan=True)
    moved_x = np.concatenate([np.asarray(fig.data[i].x) for i in range(len(panel.classes))])
    assert not np.allclose(moved_x, full_x)

    # another posterior: the MoE model's own latent and generations
    panel.controls["posterior"].value = "MoE"
    expected = infer_and_generate(models["MoE"], panel.data, ["audio"], "image", examples=panel.examples,
                                  projection=panel.projections["MoE"])
    np.testing.assert_allclose(np.array(fig.data[-1].z, dtype=float), image_strip(expected["generated"]), rtol=1e-5)
    assert fig.layout.title.text.startswith("MoE")

    # nothing observed: a message instead of the figure, the figure is left as it was
    before = np.array(fig.data[-1].z, dtype=float)
    panel.controls["observe_audio"].value = False
    assert panel.error is not None and "No modality is observed" in panel.message.value
    assert panel.output.children == (panel.message,)
    np.testing.assert_array_equal(np.array(fig.data[-1].z, dtype=float), before)

    # back to both observed on the first model: the original picture returns
    panel.controls["observe_audio"].value = True
    panel.controls["observe_image"].value = True
    panel.controls["posterior"].value = "PoE"
    assert panel.output.children == (panel.figure,)
    np.testing.assert_allclose(np.array(fig.data[-1].z, dtype=float), full_gen, rtol=1e-6)


def test_panel_precomputes_every_state(data, models, monkeypatch):
    panel = RepresentationPanel(models, data, n_points=30)
    assert len(panel._precomputed) == len(models) * 3  # 3 non-empty subsets of 2 modalities
    # controls only look up: no model is evaluated after the panel is built
    calls = []
    for m in models.values():
        monkeypatch.setattr(m, "encode", lambda *a, **k: calls.append(1))
    panel.controls["observe_audio"].value = False
    panel.controls["posterior"].value = "joint AE"
    assert calls == [] and panel.error is None
    with pytest.raises(ValueError, match="unknown target modality 'text'"):
        RepresentationPanel(models, data, target="text")


@pytest.fixture(scope="module")
def reader(data):
    """A small image classifier, trained a few steps on the fixture's images so it is far from constant."""
    torch.manual_seed(0)
    clf = MultimodalClassifier({"image": MLPEncoder((8, 8), 16, hidden=(32,))}, "concat", 10)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(clf({"image": data.inputs["image"]}), data.y).backward()
        opt.step()
    return clf.eval()


def test_generation_coherence_matches_coherence_and_direct_counts(data, models, reader):
    vae = models["MoE"]
    assert generation_coherence(vae, data, reader, ["audio"]) == coherence(vae, data, reader, source="audio",
                                                                          target="image")
    with torch.no_grad():
        both = vae.generate(data.inputs, None, "image")
        direct = float((reader({"image": both}).argmax(1) == data.y).float().mean())
        real = float((reader({"image": data.inputs["image"]}).argmax(1) == data.y).float().mean())
    assert generation_coherence(vae, data, reader, ["image", "audio"]) == pytest.approx(direct)
    assert real_accuracy(reader, data) == pytest.approx(real) and real > 0.5
    with pytest.raises(ValueError, match="No modality is observed"):
        generation_coherence(vae, data, reader, [])


def test_panel_shows_the_coherence_of_the_current_setting(data, models, reader):
    panel = RepresentationPanel(models, data, n_points=40, classifier=reader)
    fig = panel.figure
    real = real_accuracy(reader, panel.data)
    assert panel.real_accuracy == pytest.approx(real)
    full = generation_coherence(models["PoE"], panel.data, reader, ["image", "audio"])
    assert fig.layout.annotations[2].text == f"images reconstructed from image + audio: {full:.1%} recognised"
    assert fig.layout.annotations[1].text == f"real images, one per class (classifier accuracy on all: {real:.1%})"
    panel.controls["observe_image"].value = False
    for label in ("PoE", "MoE", "joint AE"):
        panel.controls["posterior"].value = label
        expected = coherence(models[label], panel.data, reader, source="audio", target="image")
        assert panel.last_result["coherence"] == expected
        assert fig.layout.annotations[2].text == f"images generated from audio: coherence {expected:.1%}"
    # without a classifier the panel shows no coherence
    plain = RepresentationPanel(models, data, n_points=40)
    assert plain.last_result["coherence"] is None and "coherence" not in plain.figure.layout.annotations[2].text
    assert plain.figure.layout.annotations[1].text == "real images (one per class)"
