"""The decision-surface panel: watch a fusion method combine two scalar modalities while it trains.

With one scalar feature per modality the input is a plane, so the model's decision surface
``P(y = 1 | x1, x2)`` can be drawn, as the TensorFlow Playground does. The surface shows *how* a fusion
method combines the modalities: late fusion's logit is a sum ``a(x1) + b(x2)`` (its contour lines can
not carve the XOR quadrants), tensor fusion's product terms can.

Three layers (DESIGN.md):

1. pure functions, no widgets: :func:`make_surface_data` (XOR, AND, OR, redundant, unique; clean corners
   or noisy clouds), :func:`surface_model` (a tiny MLP encoder per scalar + any registered fusion + head),
   :class:`SurfaceTrainer` (seeded, deterministic, k full-batch optimiser steps at a time, keeps the loss
   history), :func:`surface_grid`, :func:`decision_surface` / :func:`logit_surface` (the model on a G x G
   grid) and :func:`unimodal_curves` (what the model predicts from one modality when the other is marked
   absent in the presence mask);
2. :func:`mmlearn.viz.surface_figure`;
3. :class:`SurfacePanel`: dataset, noisy, fusion and learning-rate controls, a Train/Pause toggle, Step and
   Reset buttons. Training runs in a background thread that redraws the one ``FigureWidget`` every
   ``steps_per_draw`` steps; :meth:`SurfacePanel.train_steps` does the same synchronously (tests, notebook
   cells).

**Unimodal curves: a choice.** "What does modality ``m`` alone predict?" is answered with *the same model*,
the other modality marked absent (``present[other] = False``, zero-filled by the model). For the
missing-aware methods (late, gated, EmbraceNet, attention, DEQ) that is the model's own fallback (for late
fusion exactly ``g_m(x_m)``); for the others it is what the model does when a modality goes missing, which
is often nonsense when it was trained on complete pairs only (notebook 03, Section 5). A separate unimodal
model would answer a different question (how much the label depends on ``x_m``; for XOR: not at all) and
would cost a second training run per step.

**Thread safety.** One re-entrant lock (``panel.lock``) guards the trainer and the figure: a training
chunk, a redraw, a Step click and a Reset all take it, so the figure never shows a half-updated model.
Each run has an id; changing the dataset, noise, fusion or learning rate (or Reset) puts the toggle back to
"Train", sets the stop flag, joins the old thread (with a timeout) and bumps the id before building a new
trainer; a thread whose id is no longer current stops without drawing. The thread redraws at most every
``draw_interval`` seconds and sleeps briefly between chunks, so the kernel's main thread keeps handling the
other controls' messages. Widget traits set from the thread (the figure's data, the toggle at the end of a
run) go out through ipykernel's IOPub thread, which is safe to use from any thread (checked in JupyterLab
with headless Chromium: the figure advances while training, and a new dataset stops the run). The training
thread uses the global torch RNG (EmbraceNet samples its components from it), inside
``torch.random.fork_rng`` seeded per step, so its steps are reproducible and the caller's RNG state is left
alone; do not run other random torch code in the notebook *while* it trains if you need that code to be
reproducible.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import ipywidgets as W
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import Batch, make_bitwise, to_batch
from ..fusion import FUSIONS
from ..models import MLPEncoder, MultimodalClassifier
from ..viz.surface import surface_figure
from .base import Panel

#: the datasets of the panel: the two-bit cases of :func:`mmlearn.data.make_bitwise`
SURFACE_KINDS = ("xor", "and", "or", "redundant", "unique")
#: the order of the fusion dropdown (registered methods not listed here follow, sorted)
SURFACE_ORDER = ("early", "concat", "late", "tensor", "low_rank", "cross_attention", "gated", "embracenet", "deq")
#: small, fast options per method (a few ms per full-batch step on 200 points)
SURFACE_OPTIONS: dict[str, dict] = {
    "concat": {"hidden": 16},
    "low_rank": {"rank": 4},
    "cross_attention": {"dim": 8, "heads": 2, "tokens": 2},
    "deq": {"max_iter": 8, "tol": 1e-3, "backward_max_iter": 8},
}
#: the plane drawn: bits 0 and 1 with a margin
PLANE = (-0.6, 1.6)
#: jitter (std) around the corners: clean and noisy
JITTER = {False: 0.08, True: 0.3}
#: feature width of each modality's encoder and of the fusion output
WIDTH = 8
FUSION_DIM = 16
LEARNING_RATES = (0.003, 0.01, 0.03, 0.1)


# layer 1 --------------------------------------------------------------------------------------------------
def make_surface_data(kind: str = "xor", n: int = 200, *, noisy: bool = False, seed: int = 0) -> Batch:
    """A 2-D bimodal dataset: modality ``x1`` is the first coordinate, ``x2`` the second, each ``(n, 1)``.

    The bits and labels are those of :func:`mmlearn.data.make_bitwise` (``xor``: ``y = b1 xor b2``; ``and``,
    ``or``; ``unique``: ``y = b1``; ``redundant``: ``b2 = b1``, ``y = b1``); the coordinates are the bits plus
    Gaussian jitter, std 0.08 (``noisy=False``: points at the corners) or 0.3 (``noisy=True``: overlapping
    continuous clouds, so no model is perfect). :func:`surface_bits` recovers the corner of each point
    (exact for the clean version).
    """
    if kind not in SURFACE_KINDS:
        raise ValueError(f"unknown dataset {kind!r}; expected one of {SURFACE_KINDS}")
    bits = to_batch(make_bitwise(kind, n=n, seed=seed))
    rng = np.random.default_rng(seed + 7919)
    scale = JITTER[bool(noisy)]
    inputs = {m: bits.inputs[m] + torch.from_numpy(scale * rng.standard_normal((n, 1)).astype(np.float32))
              for m in ("x1", "x2")}
    return Batch(inputs, bits.y)


def surface_bits(data: Batch) -> Tensor:
    """The corner each point belongs to, ``(n, 2)`` of 0/1 (the nearest bit per coordinate)."""
    return torch.cat([(data.inputs[m] > 0.5).float() for m in ("x1", "x2")], dim=1)


def surface_model(fusion: str = "concat", *, seed: int = 0, width: int = WIDTH, fusion_dim: int = FUSION_DIM,
                  **options) -> MultimodalClassifier:
    """A tiny bimodal classifier on two scalars: per modality ``MLPEncoder(1 -> width -> width)``, the fusion
    ``fusion`` (any registered name, with :data:`SURFACE_OPTIONS` unless ``options`` are given), a linear
    head to 2 classes. Early fusion gets identity encoders (Eq. 4 on the raw scalars), so its fusion layer
    plus head is a one-hidden-layer MLP on ``(x1, x2)``. Seeded."""
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; available: {sorted(FUSIONS)}")
    opts = {**SURFACE_OPTIONS.get(fusion, {}), **options}
    torch.manual_seed(seed)
    if fusion == "early":
        encoders = {m: MLPEncoder(1, out_dim=None) for m in ("x1", "x2")}
    else:
        encoders = {m: MLPEncoder(1, out_dim=width, hidden=(width,)) for m in ("x1", "x2")}
    return MultimodalClassifier(encoders, fusion, 2, fusion_dim=fusion_dim, **opts)


class SurfaceTrainer:
    """Trains one model on one dataset, ``k`` full-batch Adam steps at a time, and keeps the loss history.

    Deterministic: the model is built from ``seed``; each step ``t`` runs inside ``torch.random.fork_rng``
    seeded with ``(seed, t)``, so step ``t`` draws the same random numbers (EmbraceNet's selection)
    however the steps are chunked, and the caller's RNG state is untouched.
    """

    def __init__(self, data: Batch, fusion: str = "concat", *, lr: float = 0.03, seed: int = 0, **options):
        self.data = data
        self.fusion = fusion
        self.lr = float(lr)
        self.seed = int(seed)
        self.model = surface_model(fusion, seed=seed, **options)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        self.losses: list[float] = []

    @property
    def steps(self) -> int:
        return len(self.losses)

    def step(self, k: int = 1) -> list[float]:
        """Run ``k`` optimiser steps; return the whole loss history (one loss per step, before the update)."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.model.train()
        for _ in range(int(k)):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed * 1_000_003 + self.steps)
                logits = self.model(self.data.inputs)
                loss = F.cross_entropy(logits, self.data.y)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
            self.losses.append(float(loss.detach()))
        return list(self.losses)

    @torch.no_grad()
    def accuracy(self, data: Batch | None = None) -> float:
        data = self.data if data is None else data
        was = self.model.training
        self.model.eval()
        try:
            pred = self.model(data.inputs).argmax(dim=1)
        finally:
            self.model.train(was)
        return float((pred == data.y).float().mean())


def surface_grid(g: int = 50, lo: float = PLANE[0], hi: float = PLANE[1]) -> np.ndarray:
    """The ``g`` coordinates of each axis, from ``lo`` to ``hi`` (the grid is their product)."""
    if g < 2:
        raise ValueError(f"the grid needs at least 2 points per axis, got {g}")
    return np.linspace(lo, hi, g, dtype=np.float32)


def _grid_inputs(grid: np.ndarray) -> dict[str, Tensor]:
    g = np.asarray(grid, dtype=np.float32)
    x2, x1 = np.meshgrid(g, g, indexing="ij")  # row i: x2 = g[i]; column j: x1 = g[j]
    return {"x1": torch.from_numpy(x1.reshape(-1, 1).copy()), "x2": torch.from_numpy(x2.reshape(-1, 1).copy())}


@torch.no_grad()
def _eval_logits(model, inputs, present=None) -> Tensor:
    was = model.training
    model.eval()
    try:
        return model(inputs, present)
    finally:
        model.train(was)


def logit_surface(model, grid: np.ndarray) -> np.ndarray:
    """The model's log-odds ``logit_1 - logit_0`` on the grid, ``(G, G)`` indexed ``[i, j]`` with ``x2 = grid[i]``
    (rows, the y axis of a heatmap) and ``x1 = grid[j]`` (columns), in eval mode."""
    g = len(grid)
    logits = _eval_logits(model, _grid_inputs(grid))
    return (logits[:, 1] - logits[:, 0]).reshape(g, g).double().numpy()


def decision_surface(model, grid: np.ndarray) -> np.ndarray:
    """``P(y = 1 | x1, x2)`` on the grid, ``(G, G)``, same indexing as :func:`logit_surface`."""
    return 1.0 / (1.0 + np.exp(-logit_surface(model, grid)))


def additivity_residual(logits: np.ndarray) -> float:
    """How far a surface is from a sum ``a(x1) + b(x2)``: the largest mixed second difference
    ``|f(a, b) - f(a, b') - f(a', b) + f(a', b')|`` over neighbouring grid cells, relative to the range of ``f``.

    Zero (up to rounding) exactly when ``f`` is additive on the grid: late fusion's logit is.
    """
    f = np.asarray(logits, dtype=np.float64)
    mixed = f[1:, 1:] - f[1:, :-1] - f[:-1, 1:] + f[:-1, :-1]
    # a function is additive on the grid iff every mixed difference against a fixed corner vanishes
    corner = f - f[:1, :] - f[:, :1] + f[0, 0]
    scale = max(float(np.ptp(f)), 1e-12)
    return float(max(np.abs(mixed).max(), np.abs(corner).max()) / scale)


@torch.no_grad()
def unimodal_curves(model, grid: np.ndarray) -> dict[str, np.ndarray]:
    """``P(y = 1 | x_m alone)`` along the grid for each modality, ``{"x1": (G,), "x2": (G,)}``: the same model
    with the other modality marked absent in the presence mask (zero-filled by the model)."""
    x = torch.from_numpy(np.asarray(grid, dtype=np.float32).reshape(-1, 1).copy())
    n = x.shape[0]
    out = {}
    for m, other in (("x1", "x2"), ("x2", "x1")):
        inputs = {m: x, other: torch.zeros_like(x)}
        present = {m: torch.ones(n, dtype=torch.bool), other: torch.zeros(n, dtype=torch.bool)}
        logits = _eval_logits(model, inputs, present)
        out[m] = torch.softmax(logits.double(), dim=1)[:, 1].numpy()
    return out


def surface_state(trainer: SurfaceTrainer, grid: np.ndarray) -> dict:
    """Everything the figure shows, from the trainer as it is now."""
    return {
        "grid": np.asarray(grid),
        "surface": decision_surface(trainer.model, grid),
        "unimodal": unimodal_curves(trainer.model, grid),
        "losses": list(trainer.losses),
        "accuracy": trainer.accuracy(),
        "fusion": trainer.fusion,
        "steps": trainer.steps,
    }


def surface_title(state: Mapping, dataset: str = "", noisy: bool = False) -> str:
    data = f"{'noisy ' if noisy else ''}{dataset.upper() if dataset in ('xor', 'and', 'or') else dataset}"
    text = f"{state['fusion']} on {data}: step {state['steps']}"
    if state["losses"]:
        text += f", loss {state['losses'][-1]:.3f}"
    return text + f", train accuracy {state['accuracy']:.0%}"


def fusion_names() -> list[str]:
    """Every registered fusion, in :data:`SURFACE_ORDER` first."""
    return [n for n in SURFACE_ORDER if n in FUSIONS] + sorted(n for n in FUSIONS if n not in SURFACE_ORDER)


# layer 3 --------------------------------------------------------------------------------------------------
class SurfacePanel(Panel):
    """Dataset, noisy, fusion and learning-rate controls; a Train/Pause toggle, Step and Reset buttons.

    ``panel.train_steps(n)`` trains ``n`` steps synchronously and redraws (tests, notebook cells);
    the Train toggle runs the same in a background thread, redrawing every ``steps_per_draw`` steps, until
    ``max_steps`` or Pause. Changing the dataset, noise, fusion or learning rate stops the run and starts a
    fresh model (Reset does the same with the same choices).
    """

    #: the controls whose change starts a new model
    CONFIG = ("dataset", "noisy", "fusion", "lr")

    def __init__(self, dataset: str = "xor", fusion: str = "concat", *, noisy: bool = False, lr: float = 0.03,
                 n: int = 200, seed: int = 0, grid_size: int = 50, steps_per_draw: int = 25,
                 max_steps: int = 3000, draw_interval: float = 0.25, title: str = "Decision surface while training"):
        names = fusion_names()
        if fusion not in names:
            raise ValueError(f"unknown fusion {fusion!r}; available: {names}")
        if dataset not in SURFACE_KINDS:
            raise ValueError(f"unknown dataset {dataset!r}; expected one of {SURFACE_KINDS}")
        self.n, self.seed = n, seed
        self.steps_per_draw, self.max_steps = int(steps_per_draw), int(max_steps)
        self.draw_interval = float(draw_interval)
        self.grid = surface_grid(grid_size)
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.run_id = 0
        rates = sorted(set(LEARNING_RATES) | {float(lr)})
        controls = {
            "dataset": W.Dropdown(options=list(SURFACE_KINDS), value=dataset, description="data",
                                  layout=W.Layout(width="170px"), style={"description_width": "40px"}),
            "noisy": W.Checkbox(value=noisy, description="noisy", indent=False, layout=W.Layout(width="70px")),
            "fusion": W.Dropdown(options=names, value=fusion, description="fusion",
                                 layout=W.Layout(width="210px"), style={"description_width": "45px"}),
            "lr": W.Dropdown(options=rates, value=float(lr), description="lr", layout=W.Layout(width="120px"),
                             style={"description_width": "20px"}),
            "train": W.ToggleButton(value=False, description="Train", icon="play", tooltip="train / pause",
                                    layout=W.Layout(width="90px")),
            "step": W.Button(description=f"Step {steps_per_draw}", tooltip=f"{steps_per_draw} optimiser steps",
                             layout=W.Layout(width="90px")),
            "reset": W.Button(description="Reset", tooltip="a fresh model", layout=W.Layout(width="70px")),
        }
        self.trainer = self._new_trainer(self._config(controls))
        first = self.compute(self._config(controls))
        figure = surface_figure(first["grid"], first["surface"], self.trainer.data, first["unimodal"],
                                first["losses"], title=surface_title(first, dataset, noisy))
        super().__init__(controls, figure, title)
        self.last_result = first
        controls["step"].on_click(self.on_step)
        controls["reset"].on_click(self.on_reset)

    # layer 1 glue -----------------------------------------------------------------------------------------
    @staticmethod
    def _config(controls) -> dict:
        return {k: controls[k].value for k in SurfacePanel.CONFIG}

    def _new_trainer(self, config: Mapping) -> SurfaceTrainer:
        data = make_surface_data(config["dataset"], self.n, noisy=config["noisy"], seed=self.seed)
        return SurfaceTrainer(data, config["fusion"], lr=config["lr"], seed=self.seed)

    def compute(self, state: Mapping) -> dict:
        """The current trainer's surface, curves and losses (not cached: the model changes as it trains)."""
        return surface_state(self.trainer, self.grid)

    def draw(self, result: Mapping) -> None:
        """In place: surface, strips, points (on a new dataset), loss curve, title."""
        # plain lists, not numpy arrays: the widget's sync code tests values for truth (``if not value``)
        fig = self.figure
        surface = np.asarray(result["surface"], dtype=float).tolist()
        fig.data[0].z = surface
        fig.data[1].z = [np.asarray(result["unimodal"]["x1"], dtype=float).tolist()]
        fig.data[2].z = [[float(v)] for v in result["unimodal"]["x2"]]
        fig.data[3].z = surface
        x1, x2 = (self.trainer.data.inputs[m][:, 0].double().numpy() for m in ("x1", "x2"))
        y = self.trainer.data.y.numpy()
        for trace, c in ((fig.data[4], 0), (fig.data[5], 1)):
            trace.x, trace.y = x1[y == c].tolist(), x2[y == c].tolist()
        losses = [float(v) for v in result["losses"]]
        fig.data[6].x, fig.data[6].y = list(range(1, len(losses) + 1)), losses
        config = self._config(self.controls)
        fig.layout.title.text = surface_title(result, config["dataset"], config["noisy"])

    # the shell --------------------------------------------------------------------------------------------
    def redraw(self) -> None:
        with self.lock:
            result = self.compute({})
            self.last_result = result
            with self.figure.batch_update():
                self.draw(result)

    def update(self, change=None) -> None:
        """Observer of every control: the Train toggle starts/pauses, any other control starts a new model."""
        if change is not None and change.get("owner") is self.controls["train"]:
            self.on_train_toggle(change)
        else:
            self.on_config_change(change)

    def on_config_change(self, change=None) -> None:
        """A new dataset, noise, fusion or learning rate: stop the run (the toggle back to "Train"), build a fresh
        model, redraw."""
        self.controls["train"].value = False  # observer: on_train_toggle -> stop (no-op when not running)
        self.stop(join=True)
        with self.lock:
            self.run_id += 1
            self.trainer = self._new_trainer(self._config(self.controls))
        self.redraw()

    def on_reset(self, button=None) -> None:
        """Reset: the same choices, a fresh model (pauses a run)."""
        self.on_config_change(None)

    def on_step(self, button=None) -> None:
        """Step: ``steps_per_draw`` steps now, synchronously (also while paused)."""
        self.train_steps(self.steps_per_draw)

    def on_train_toggle(self, change=None) -> None:
        """Train/Pause: start the background run, or stop it."""
        toggle = self.controls["train"]
        if toggle.value:
            toggle.description, toggle.icon = "Pause", "pause"
            self.start()
        else:
            toggle.description, toggle.icon = "Train", "play"
            self.stop(join=True)

    def train_steps(self, n: int) -> dict:
        """Train ``n`` steps now (synchronously), redraw, and return the state drawn."""
        with self.lock:
            self.trainer.step(n)
        self.redraw()
        return self.last_result

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> threading.Thread | None:
        """Start training in a background thread (no-op if one runs)."""
        if self.running:
            return self._thread
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self.run_id,), daemon=True, name="surface-training")
        self._thread.start()
        return self._thread

    def stop(self, join: bool = True, timeout: float = 10.0) -> None:
        """Set the stop flag and (unless called from the training thread itself) wait for the thread."""
        self._stop.set()
        thread = self._thread
        if join and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def run(self, run_id: int, max_chunks: int | None = None) -> int:
        """The training loop (the thread's target; call it directly to test it synchronously).

        Trains ``steps_per_draw`` steps per chunk while the stop flag is clear, ``run_id`` is the current run
        and the model has fewer than ``max_steps`` steps. Redraws after a chunk when ``draw_interval`` seconds
        have passed since the last redraw (a fast model would otherwise flood the browser with figures and
        delay the messages of the other controls), and once at the end. Returns the number of chunks run.
        """
        chunks, last_draw = 0, time.monotonic()
        while max_chunks is None or chunks < max_chunks:
            with self.lock:
                if self._stop.is_set() or run_id != self.run_id or self.trainer.steps >= self.max_steps:
                    break
                self.trainer.step(self.steps_per_draw)
                if time.monotonic() - last_draw >= self.draw_interval:
                    self.redraw()
                    last_draw = time.monotonic()
            chunks += 1
            time.sleep(0.002)  # let the kernel's main thread take the GIL and handle control messages
        with self.lock:
            finished = run_id == self.run_id and not self._stop.is_set()
            if chunks and run_id == self.run_id:
                self.redraw()  # the last state, whatever the interval
        if finished and threading.current_thread() is self._thread:
            self.controls["train"].value = False  # the run reached max_steps: show "Train" again
        return chunks

    def close(self) -> None:
        self.stop(join=True)
