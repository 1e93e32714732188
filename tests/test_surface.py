"""The decision-surface view: datasets, model, stepper, surfaces, figure, and the panel driven by control.value."""

import threading
import time

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from mmlearn.fusion import FUSIONS
from mmlearn.viz import add_reference_lines, surface_figure
from mmlearn.viz.surface import SURFACE_TRACES
from mmlearn.widgets import (
    SurfacePanel,
    SurfaceTrainer,
    additivity_residual,
    decision_surface,
    logit_surface,
    make_surface_data,
    surface_grid,
    surface_model,
    unimodal_curves,
)
from mmlearn.widgets.surface import SURFACE_KINDS, fusion_names, surface_bits

SEEDS = (0, 1, 2)
STEPS = 200


def additive_cap(data) -> float:
    """The best accuracy any additive model can reach on ``data``'s XOR cells: all but the rarest cell."""
    bits = surface_bits(data)
    counts = [int(((bits[:, 0] == a) & (bits[:, 1] == b)).sum()) for a in (0, 1) for b in (0, 1)]
    return 1.0 - min(counts) / data.size


@pytest.fixture(scope="module")
def xor_runs():
    """Late, tensor and concat fusion trained 200 steps on clean XOR, for three seeds (about 10 s)."""
    runs = {}
    for seed in SEEDS:
        data = make_surface_data("xor", 200, seed=seed)
        for fusion in ("late", "tensor", "concat"):
            trainer = SurfaceTrainer(data, fusion, lr=0.03, seed=seed)
            trainer.step(STEPS)
            runs[fusion, seed] = trainer
    return runs


# ---------------------------------------------------------------- layer 1: data


@pytest.mark.parametrize("kind", SURFACE_KINDS)
def test_clean_datasets_have_the_advertised_labels(kind):
    data = make_surface_data(kind, 300, seed=3)
    assert set(data.inputs) == {"x1", "x2"}
    assert data.inputs["x1"].shape == (300, 1) and data.inputs["x2"].shape == (300, 1)
    b1, b2 = surface_bits(data).long().T
    expected = {"xor": b1 ^ b2, "and": b1 & b2, "or": b1 | b2, "unique": b1, "redundant": b1}[kind]
    assert torch.equal(data.y, expected)
    if kind == "redundant":
        assert torch.equal(b1, b2)
    else:  # independent fair bits: every corner is populated
        assert all(((b1 == a) & (b2 == b)).sum() > 30 for a in (0, 1) for b in (0, 1))
    # clean: points sit at the corners, with a little jitter
    dist = (torch.cat([data.inputs["x1"], data.inputs["x2"]], 1) - surface_bits(data)).abs()
    assert float(dist.max()) < 0.45 and 0.03 < float(dist.std()) < 0.1


def test_noisy_dataset_keeps_labels_and_spreads_the_points():
    clean = make_surface_data("xor", 400, seed=1)
    noisy = make_surface_data("xor", 400, noisy=True, seed=1)
    assert torch.equal(clean.y, noisy.y)  # the same bits and labels, only the jitter differs
    spread = {name: float((d.inputs["x1"] - d.inputs["x1"].round().clamp(0, 1)).std())
              for name, d in (("clean", clean), ("noisy", noisy))}
    assert spread["noisy"] > 2.5 * spread["clean"]
    # noisy clouds overlap: some points fall on the other side of 0.5 from their bit
    bits_clean = surface_bits(clean)
    assert float((surface_bits(noisy) != bits_clean).float().mean()) > 0.02


def test_dataset_rejects_unknown_kind_and_is_seeded():
    with pytest.raises(ValueError, match="unknown dataset"):
        make_surface_data("nand")
    a, b = make_surface_data("and", 50, seed=4), make_surface_data("and", 50, seed=4)
    assert torch.equal(a.inputs["x1"], b.inputs["x1"]) and torch.equal(a.y, b.y)


# ---------------------------------------------------------------- layer 1: model, stepper, surfaces


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_every_registered_fusion_builds_and_steps(fusion):
    data = make_surface_data("and", 64, seed=0)
    trainer = SurfaceTrainer(data, fusion, lr=0.01, seed=0)
    history = trainer.step(2)
    assert len(history) == 2 == trainer.steps and all(np.isfinite(history))
    p = decision_surface(trainer.model, surface_grid(7))
    assert p.shape == (7, 7) and np.all((p >= 0) & (p <= 1))


def test_stepper_is_deterministic_however_it_is_chunked_and_leaves_the_rng_alone():
    data = make_surface_data("xor", 80, seed=0)
    one = SurfaceTrainer(data, "embracenet", seed=5)  # EmbraceNet samples from the global RNG while training
    many = SurfaceTrainer(data, "embracenet", seed=5)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    one.step(12)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG state is untouched
    for _ in range(4):
        many.step(3)
    assert one.losses == many.losses
    grid = surface_grid(9)
    assert np.array_equal(decision_surface(one.model, grid), decision_surface(many.model, grid))
    with pytest.raises(ValueError):
        one.step(-1)


def test_surface_has_the_grid_shape_is_a_probability_and_is_indexed_x2_then_x1():
    model = surface_model("tensor", seed=0)
    grid = surface_grid(40)
    p = decision_surface(model, grid)
    assert p.shape == (40, 40) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    i, j = 5, 31  # row i: x2 = grid[i]; column j: x1 = grid[j]
    model.eval()
    with torch.no_grad():
        logits = model({"x1": torch.tensor([[grid[j]]]), "x2": torch.tensor([[grid[i]]])})
    assert p[i, j] == pytest.approx(float(torch.softmax(logits, 1)[0, 1]), abs=1e-6)
    assert np.allclose(p, 1 / (1 + np.exp(-logit_surface(model, grid))))
    with pytest.raises(ValueError):
        surface_grid(1)


def test_tensor_and_concat_solve_clean_xor_and_late_fusion_cannot(xor_runs):
    for seed in SEEDS:
        cap = additive_cap(xor_runs["late", seed].data)
        late = xor_runs["late", seed].accuracy()
        assert late <= cap + 1e-6, (seed, late, cap)  # no additive model beats 3 of 4 cells
        assert late < 0.8, (seed, late)
        for fusion in ("tensor", "concat"):
            assert xor_runs[fusion, seed].accuracy() > 0.9, (fusion, seed)
        assert min(xor_runs[f, seed].accuracy() for f in ("tensor", "concat")) > late + 0.15


def test_late_fusion_logit_surface_is_additive_tensor_fusion_is_not(xor_runs):
    grid = surface_grid(50)
    for seed in SEEDS:
        late = logit_surface(xor_runs["late", seed].model, grid)
        tensor = logit_surface(xor_runs["tensor", seed].model, grid)
        # f(a,b) - f(a,b') - f(a',b) + f(a',b') = 0 exactly for a(x1) + b(x2), up to float32 rounding
        assert additivity_residual(late) < 1e-4, seed
        assert additivity_residual(tensor) > 0.05, seed


def test_embracenet_in_eval_mode_is_additive_too():
    # each output component is taken from one modality (the same for every row in eval), and the head is linear
    trainer = SurfaceTrainer(make_surface_data("and", 100, seed=0), "embracenet", seed=0)
    trainer.step(30)
    assert additivity_residual(logit_surface(trainer.model, surface_grid(30))) < 1e-4


def test_additivity_residual_on_known_functions():
    g = np.linspace(-1, 1, 11)
    x2, x1 = np.meshgrid(g, g, indexing="ij")
    assert additivity_residual(np.sin(3 * x1) + x2 ** 2) < 1e-12
    assert additivity_residual(x1 * x2) > 0.1
    assert additivity_residual(np.zeros((5, 5))) == 0.0


def test_unimodal_curves_mark_the_other_modality_absent():
    trainer = SurfaceTrainer(make_surface_data("unique", 120, seed=0), "late", seed=0)
    trainer.step(40)
    grid = surface_grid(20)
    curves = unimodal_curves(trainer.model, grid)
    assert set(curves) == {"x1", "x2"} and all(c.shape == (20,) for c in curves.values())
    model = trainer.model.eval()
    with torch.no_grad():  # late fusion with x2 absent is exactly g_x1(x1)
        x = torch.from_numpy(grid.reshape(-1, 1))
        expected = torch.softmax(model.fusion.heads["x1"](model.encoders["x1"](x)).double(), 1)[:, 1].numpy()
    assert np.allclose(curves["x1"], expected, atol=1e-6)
    # on "unique" (y = b1) x1 alone separates the classes, x2 alone does not
    assert curves["x1"][-1] - curves["x1"][0] > 0.5
    assert abs(curves["x2"][-1] - curves["x2"][0]) < curves["x1"][-1] - curves["x1"][0]


# ---------------------------------------------------------------- layer 2: figure


def test_surface_figure_traces_and_validation():
    grid = surface_grid(10)
    data = make_surface_data("xor", 40, seed=0)
    fig = surface_figure(grid, np.full((10, 10), 0.5), data, {"x1": np.zeros(10), "x2": np.ones(10)},
                         [0.7, 0.6], title="t")
    assert isinstance(fig, go.Figure) and len(fig.data) == len(SURFACE_TRACES)
    assert [t.name for t in fig.data[4:6]] == ["class 0", "class 1"]
    assert len(fig.data[4].x) + len(fig.data[5].x) == 40 and list(fig.data[6].y) == [0.7, 0.6]
    legend = [t.name for t in fig.data if t.showlegend is not False and isinstance(t, go.Scatter | go.Contour)]
    assert "boundary P = 0.5" in legend
    with pytest.raises(ValueError, match="surface has shape"):
        surface_figure(grid, np.zeros((9, 10)), data, {"x1": np.zeros(10), "x2": np.zeros(10)})
    with pytest.raises(ValueError, match="unimodal"):
        surface_figure(grid, np.zeros((10, 10)), data, {"x1": np.zeros(10)})


def test_reference_lines_have_legend_entries():
    fig = go.Figure(go.Bar(x=["a", "b"], y=[0.3, 0.9]))
    add_reference_lines(fig, {"chance": 0.5, "image alone": 0.7}, ["a", "b"])
    assert [t.name for t in fig.data[1:]] == ["chance", "image alone"]
    assert list(fig.data[2].y) == [0.7, 0.7]


# ---------------------------------------------------------------- layer 3: the panel


def small_panel(**kwargs):
    return SurfacePanel(**{"n": 60, "grid_size": 12, "steps_per_draw": 5, **kwargs})


def test_panel_lists_every_registered_fusion_and_draws_the_data():
    panel = small_panel()
    assert sorted(panel.controls["fusion"].options) == sorted(FUSIONS)
    assert fusion_names()[:3] == ["early", "concat", "late"]
    fig = panel.figure
    assert np.asarray(fig.data[0].z).shape == (12, 12)
    assert len(fig.data[4].x) + len(fig.data[5].x) == 60
    assert "step 0" in fig.layout.title.text


def test_train_steps_changes_the_figure():
    panel = small_panel(fusion="tensor")
    before = np.array(panel.figure.data[0].z)
    state = panel.train_steps(10)
    assert state["steps"] == 10 == panel.trainer.steps
    assert len(panel.figure.data[6].y) == 10
    assert not np.allclose(np.array(panel.figure.data[0].z), before)
    assert "step 10" in panel.figure.layout.title.text


def test_on_config_change_dataset_noise_fusion_and_lr_start_a_fresh_model():
    panel = small_panel()
    panel.train_steps(5)
    old_x = np.array(panel.figure.data[4].x)
    panel.controls["dataset"].value = "and"  # observer -> on_config_change
    assert panel.trainer.steps == 0 and len(panel.figure.data[6].y) == 0
    assert "AND" in panel.figure.layout.title.text
    assert len(panel.figure.data[5].x) == int(panel.trainer.data.y.sum())
    panel.controls["noisy"].value = True
    assert "noisy" in panel.figure.layout.title.text
    assert not np.array_equal(np.array(panel.figure.data[4].x), old_x)
    panel.controls["fusion"].value = "late"
    assert panel.trainer.fusion == "late" and "late on" in panel.figure.layout.title.text
    panel.controls["lr"].value = 0.1
    assert panel.trainer.lr == 0.1
    run_id = panel.run_id
    panel.on_config_change()
    assert panel.run_id == run_id + 1


def test_on_step_and_on_reset_buttons():
    panel = small_panel()
    panel.controls["step"].click()  # on_step: steps_per_draw steps
    panel.on_step()
    assert panel.trainer.steps == 10
    panel.controls["reset"].click()  # on_reset: a fresh model, same choices
    assert panel.trainer.steps == 0 and panel.controls["train"].value is False
    assert panel.trainer.fusion == panel.controls["fusion"].value


def test_run_loop_synchronously_and_its_cancellation_state_machine():
    panel = small_panel(max_steps=12, draw_interval=3600)
    run_id = panel.run_id
    assert panel.run(run_id, max_chunks=2) == 2 and panel.trainer.steps == 10
    assert len(panel.figure.data[6].y) == 10  # redrawn once at the end, however long the draw interval
    assert panel.run(run_id) == 1 and panel.trainer.steps == 15  # stops at max_steps (checked before a chunk)
    panel.on_config_change()  # a new choice: the old run id is no longer current
    assert panel.run(run_id) == 0 and panel.trainer.steps == 0
    panel._stop.set()  # the stop flag alone stops a current run too
    assert panel.run(panel.run_id) == 0


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_on_train_toggle_runs_a_thread_and_changing_the_dataset_stops_it():
    panel = small_panel(max_steps=100_000)
    toggle = panel.controls["train"]
    toggle.value = True  # on_train_toggle -> start
    thread = panel._thread
    try:
        assert isinstance(thread, threading.Thread) and toggle.description == "Pause"
        assert wait_for(lambda: panel.trainer.steps >= 10)
        old_trainer = panel.trainer
        panel.controls["dataset"].value = "or"  # stops and joins the old run, builds a new model
        thread.join(10)
        assert not thread.is_alive()
        assert panel.trainer is not old_trainer and panel.trainer.steps == 0
        assert toggle.value is False and toggle.description == "Train"  # the new model waits for "Train"
        time.sleep(0.1)
        assert panel.trainer.steps == 0  # nothing trains the new model behind our back
        assert "OR" in panel.figure.layout.title.text
    finally:
        panel.close()
        thread.join(10)


def test_pause_stops_the_thread_and_a_finished_run_releases_the_toggle():
    panel = small_panel(max_steps=100_000)
    toggle = panel.controls["train"]
    toggle.value = True
    thread = panel._thread
    assert wait_for(lambda: panel.trainer.steps >= 5)
    toggle.value = False  # Pause
    thread.join(10)
    assert not thread.is_alive() and toggle.description == "Train"
    steps = panel.trainer.steps
    time.sleep(0.05)
    assert panel.trainer.steps == steps

    done = small_panel(max_steps=10)
    done.controls["train"].value = True
    done._thread.join(30)
    assert not done._thread.is_alive() and done.trainer.steps == 10
    assert done.controls["train"].value is False  # the thread set it back at max_steps


def test_update_dispatches_on_the_owner():
    panel = small_panel()
    panel.train_steps(5)
    panel.update({"owner": panel.controls["dataset"], "new": "xor"})
    assert panel.trainer.steps == 0
    panel.update({"owner": panel.controls["train"], "new": False})  # a pause with nothing running: no-op
    assert not panel.running


def test_panel_rejects_unknown_choices():
    with pytest.raises(ValueError, match="unknown fusion"):
        SurfacePanel(fusion="nope")
    with pytest.raises(ValueError, match="unknown dataset"):
        SurfacePanel(dataset="nope")
