"""Figure builders: the numbers that go in are the numbers drawn."""

import numpy as np
import plotly.graph_objects as go
from sklearn.decomposition import PCA

from mmlearn import viz


def test_confusion_counts_brute_force():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    counts = viz.confusion_counts(t, p, 4)
    for i in range(4):
        for j in range(4):
            assert counts[i, j] == np.sum((t == i) & (p == j))


def test_confusion_matrix_figure_is_row_normalised_with_counts():
    fig = viz.confusion_matrix_figure([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], 2, class_names=["a", "b"])
    heat = fig.data[0]
    np.testing.assert_allclose(np.asarray(heat.z), [[0.5, 0.5], [1 / 3, 2 / 3]])
    assert np.asarray(heat.text).tolist() == [[1, 1], [1, 2]]
    assert list(heat.x) == ["a", "b"]


def test_training_curves_draw_every_history():
    h = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "train_acc": [0.5, 0.7], "eval_loss": [1.1, 0.6], "eval_acc": [0.4, 0.6]}
    fig = viz.training_curves({"a": h, "b": {k: v for k, v in h.items() if not k.startswith("eval")}})
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 4 + 2
    eval_acc = [t for t in fig.data if t.name == "a (eval)" and t.xaxis == "x2"][0]
    assert list(eval_acc.y) == [0.4, 0.6]
    single = viz.training_curves(h)
    assert len(single.data) == 4


def test_embedding_scatter_is_the_pca_projection_by_label():
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(300, 6)), np.repeat([0, 1, 2], 100)
    fig = viz.embedding_scatter(z, y, label_names=["zero", "one", "two"])
    xy = PCA(n_components=2, random_state=0).fit_transform(z)
    assert [t.name for t in fig.data] == ["zero", "one", "two"]
    np.testing.assert_allclose(fig.data[1].x, xy[100:200, 0], rtol=1e-6)
    small = viz.embedding_scatter(z, y, max_points=50)
    assert sum(len(t.x) for t in small.data) == 50


def test_subset_accuracy_figure_and_image_grid():
    fig = viz.subset_accuracy_figure({"image": 0.7, "audio": 0.6, "image+audio": 0.9}, chance=0.1)
    assert list(fig.data[0].y) == [0.7, 0.6, 0.9]
    assert list(fig.data[0].text) == ["70.0%", "60.0%", "90.0%"]
    grid = viz.image_grid([np.eye(3), np.ones((3, 3))], titles=["a", "b"], cols=2)
    assert len(grid.data) == 2
    np.testing.assert_array_equal(grid.data[0].z, np.eye(3))
    assert grid.layout.yaxis.autorange == "reversed"
    assert viz.image_grid([np.eye(3)], origin="lower").layout.yaxis.autorange is True


def test_accuracy_confusion_figure():
    fig = viz.accuracy_confusion_figure({"clean": 0.9, "now": 0.5}, np.array([[2, 0], [1, 1]]))
    assert list(fig.data[0].y) == [0.9, 0.5]
    np.testing.assert_allclose(np.asarray(fig.data[1].z), [[1, 0], [0.5, 0.5]])


def test_training_curves_name_the_evaluation_split_as_asked():
    h = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "train_acc": [0.5, 0.7], "eval_loss": [1.1, 0.6], "eval_acc": [0.4, 0.6]}
    fig = viz.training_curves({"a": h}, title="solid = train, dashed = test", eval_label="test")
    assert [t.name for t in fig.data if t.showlegend] == ["a (train)", "a (test)"]
    assert [t.line.dash for t in fig.data if t.name == "a (test)"] == ["dash", "dash"]


def test_image_grid_with_axes_and_a_shared_colour_bar():
    a, b = np.zeros((4, 5)), np.full((4, 5), 3.0)
    grid = viz.image_grid([a, b], cols=2, origin="lower", axis_titles=("frame", "mel band"), colorbar_title="log energy")
    assert [t.showscale for t in grid.data] == [True, False]
    assert grid.data[0].colorbar.title.text == "log energy"
    assert (grid.data[0].zmin, grid.data[0].zmax) == (0.0, 3.0) and grid.data[1].zmax == 3.0
    assert grid.layout.xaxis.title.text == "frame" and grid.layout.yaxis.title.text == "mel band"
    assert grid.layout.yaxis2.title.text is None  # one y title per row
    assert grid.layout.xaxis.visible is not False


def test_reference_lines_are_named_in_the_legend():
    fig = viz.subset_accuracy_figure({"image": 0.7}, chance=0.1)
    assert [(s.name, s.showlegend) for s in fig.layout.shapes] == [("chance (10%)", True)]
    fig = viz.accuracy_confusion_figure({"clean": 0.9, "now": 0.5}, np.eye(2, dtype=int),
                                        references={"image removed": 0.7}, chance=0.5,
                                        previews={"image": np.eye(8), "audio": np.ones((20, 20))})
    assert [s.name for s in fig.layout.shapes] == ["image removed (70%)", "chance (50%)"]
    assert [s.y0 for s in fig.layout.shapes] == [0.7, 0.5]
    assert [type(t).__name__ for t in fig.data] == ["Bar", "Heatmap", "Heatmap", "Heatmap"]
    assert fig.layout.yaxis3.autorange == "reversed" and fig.layout.yaxis4.title.text == "mel band"
    assert fig.layout.width is None


def test_alignment_panel_figure_names_its_points_and_has_no_fixed_width():
    fig = viz.alignment_panel_figure({"a": 0.5}, {"s1": (0.4, -2.0), "s2": (0.6, -1.0)}, "s2", np.eye(3), [0, 1, 2])
    assert fig.layout.width is None
    assert [t.name for t in fig.data[1:3]] == ["grey: every precomputed (τ, B) setting", "red star: this setting"]
    assert all(t.showlegend is not False for t in fig.data[1:3])
    assert fig.data[3].colorbar.title.text == "cos"


def test_retrieval_examples_name_the_spectrogram_axes_and_colour_scale():
    fig = viz.retrieval_examples(np.stack([np.zeros((20, 20)), np.full((20, 20), 2.0)]), np.ones((2, 3, 8, 8)),
                                 [3, 5], [[3, 1, 3], [5, 5, 5]])
    queries = [fig.data[0], fig.data[4]]  # each row: the spectrogram, then 3 images
    assert [t.showscale for t in queries] == [True, False] and queries[0].colorbar.title.text == "log-mel"
    assert (queries[1].zmin, queries[1].zmax) == (0.0, 2.0)
    assert fig.layout.yaxis.title.text == "mel band" and fig.layout.yaxis.visible
