"""The interaction meter: redundancy / uniqueness / synergy sliders of the synthetic data, and what they mean.

Layer 1 (pure, no widgets):

- :func:`design_joint` / :func:`design_pid` -- the *design*: the PID of the latents the label is built from
  (what the sliders mean, in bits);
- :func:`meter_point` -- for one slider state, everything measured on data from
  :func:`mmlearn.data.make_latent_views`: the PID estimated from samples (:func:`mmlearn.interactions.pid_from_samples`),
  the label-free synergy bounds (survey Eq. 8) and the test accuracy of several fusion methods over seeds;
- :func:`build_interaction_grid` -- :func:`meter_point` on every slider state (minutes; its output is committed as
  ``mmlearn/interactions/files/interaction_grid.json``), :func:`load_interaction_grid` reads it;
- :func:`interaction_summary` -- one state looked up in the grid: the numbers the meter (and the playground) show.

Layer 2 is :func:`mmlearn.viz.interaction_meter_figure`; layer 3 is :class:`InteractionMeter`.

What "design" means numerically. ``make_latent_views`` draws Gaussian latents and labels
``y = 1[r s_1 + u u_{x1,1} + s u_{x1,2} u_{x2,2} > 0]``. View x1 sees ``(s_1, u_{x1,1}, u_{x1,2})``, view x2 sees
``(s_1, u_{x2,2})`` (among latents the label reads). The design is the BROJA PID of
``(Z1, Z2, Y)`` with ``Z1`` = x1's three label latents and ``Z2`` = x2's two, each cut at the quartiles of N(0, 1)
(64 x 16 x 2 cells), from 400,000 draws: the information an encoder that recovered the latents exactly (at that
resolution) could use. Pure settings give exactly 1 bit of one kind; mixtures split it. The resolution costs
information (a mixture's total is about 0.7 bit, not the 1 bit of the continuous latents); the plug-in bias at
400,000 draws is about (64*16 - 1) / (2 * 400000 * ln 2) = 0.002 bit.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import Panel

#: the values each slider offers (the grid is precomputed on them)
SLIDER_VALUES = (0.0, 0.5, 1.0)
#: the fusion methods compared (the fusion notebook's families: late, early, intermediate, tensor, low rank)
METER_FUSIONS = ("late", "early", "concat", "tensor", "low_rank")
#: data and training settings of the grid (the fusion notebook's synthetic sets: ``fusion_datasets``)
GRID_SETTINGS = dict(n_train=1000, n_test=1000, dim=8, shared_dim=2, unique_dim=2, noise=0.1, epochs=10,
                     n_clusters=8, seeds=(0, 1), design_bins=4, design_samples=400_000)
GRID_PATH = Path(__file__).resolve().parent.parent / "interactions" / "files" / "interaction_grid.json"
TERMS = ("redundancy", "unique1", "unique2", "synergy")


def direction(redundancy: float, uniqueness: float, synergy: float) -> tuple[float, float, float]:
    """The state divided by its largest weight: ``y = 1[score > 0]`` does not change when all weights scale.

    Raises ``ValueError`` when all three are 0 (the label is then constant: nothing to decompose).
    """
    w = np.array([redundancy, uniqueness, synergy], dtype=float)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"redundancy, uniqueness and synergy must be finite and >= 0, got {tuple(w)}")
    if w.max() == 0:
        raise ValueError("All three sliders are at 0: the label is then a constant (score 0 is never > 0), so "
                         "there is no information to decompose. Move a slider up.")
    return tuple(float(round(v, 6)) for v in w / w.max())


def _key(d: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in d)


# --------------------------------------------------------------------------------------
# The design
# --------------------------------------------------------------------------------------


def design_codes(shared, unique_x1, unique_x2, bins: int = 4) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Discrete codes ``(z1, z2)`` of the label latents: x1's ``(s_1, u_{x1,1}, u_{x1,2})``, x2's ``(s_1, u_{x2,2})``.

    Each latent is cut at the ``bins``-quantiles of N(0, 1). Returns the codes and their sizes
    ``(bins**3, bins**2)``.
    """
    from scipy.stats import norm

    edges = norm.ppf(np.linspace(0, 1, bins + 1)[1:-1])
    q = lambda v: np.digitize(np.asarray(v, dtype=float), edges)  # noqa: E731
    shared, unique_x1, unique_x2 = (np.asarray(a, dtype=float) for a in (shared, unique_x1, unique_x2))
    z1 = np.ravel_multi_index((q(shared[:, 0]), q(unique_x1[:, 0]), q(unique_x1[:, 1])), (bins,) * 3)
    z2 = np.ravel_multi_index((q(shared[:, 0]), q(unique_x2[:, 1])), (bins,) * 2)
    return z1, z2, (bins**3, bins**2)


def design_labels(redundancy: float, uniqueness: float, synergy: float, shared, unique_x1, unique_x2) -> np.ndarray:
    """``make_latent_views``'s label from its latents (``unique_to`` = x1): ``1[r s_1 + u u_{x1,1} + s u_{x1,2} u_{x2,2} > 0]``."""
    score = redundancy * np.asarray(shared)[:, 0] + uniqueness * np.asarray(unique_x1)[:, 0]
    if synergy:
        score = score + synergy * np.asarray(unique_x1)[:, 1] * np.asarray(unique_x2)[:, 1]
    return (score > 0).astype(np.int64)


def design_joint(redundancy: float, uniqueness: float, synergy: float, *, bins: int = 4, n: int = 400_000,
                 seed: int = 0) -> np.ndarray:
    """p(z1, z2, y) of the design (module docstring), estimated from ``n`` fresh draws of the latents."""
    direction(redundancy, uniqueness, synergy)  # refuses the all-zero state
    from mmlearn.interactions import joint_histogram

    rng = np.random.default_rng(seed)
    shared, u1, u2 = rng.standard_normal((n, 1)), rng.standard_normal((n, 2)), rng.standard_normal((n, 2))
    y = design_labels(redundancy, uniqueness, synergy, shared, u1, u2)
    z1, z2, (k1, k2) = design_codes(shared, u1, u2, bins)
    return joint_histogram(z1, z2, y, (k1, k2, 2))


def design_pid(redundancy: float, uniqueness: float, synergy: float, **kwargs):
    """The PID (bits) of :func:`design_joint`: what the sliders mean."""
    from mmlearn.interactions import pid

    return pid(design_joint(redundancy, uniqueness, synergy, **kwargs))


# --------------------------------------------------------------------------------------
# Measuring one state
# --------------------------------------------------------------------------------------


def latent_views_split(redundancy: float, uniqueness: float, synergy: float, seed: int = 0, **settings):
    """``(train, test)`` batches of :func:`mmlearn.data.make_latent_views` with the grid's settings."""
    from mmlearn.data import make_latent_views, to_batch

    s = {**GRID_SETTINGS, **settings}
    ds = make_latent_views(s["n_train"] + s["n_test"], dim=s["dim"], shared_dim=s["shared_dim"],
                           unique_dim=s["unique_dim"], noise=s["noise"], redundancy=redundancy,
                           uniqueness=uniqueness, synergy=synergy, seed=seed)
    batch = to_batch(ds)
    return batch.index(slice(0, s["n_train"])), batch.index(slice(s["n_train"], None))


def sample_joint(x1, x2, y, n_clusters: int = 8, seed: int = 0) -> np.ndarray:
    """The plug-in p(c1, c2, y) that :func:`mmlearn.interactions.pid_from_samples` decomposes (same k-means)."""
    from mmlearn.interactions import joint_histogram
    from mmlearn.interactions.pid import _codes

    c1, k1 = _codes(x1, "x1", n_clusters, seed)
    c2, k2 = _codes(x2, "x2", n_clusters, seed)
    _, cy = np.unique(np.asarray(y), return_inverse=True)
    return joint_histogram(c1, c2, cy.ravel(), (k1, k2, int(cy.max()) + 1))


def _train_fusion():
    from mmlearn.experiments.fusion import train_fusion  # on first use: it pulls in the training stack

    return train_fusion


def retrain_fusion(fusion: str, redundancy: float, uniqueness: float, synergy: float, seed: int = 0,
                   **settings) -> float:
    """Test accuracy of one fusion method trained on one state's data, as in the grid (``seed``: data and init)."""
    s = {**GRID_SETTINGS, **settings}
    train, test = latent_views_split(redundancy, uniqueness, synergy, seed=seed, **settings)
    return float(_train_fusion()(fusion, train, test, epochs=s["epochs"], seed=seed).accuracy)


def _bounds_dict(b) -> dict:
    return {"lower": b.lower, "upper": b.upper}


def meter_point(redundancy: float, uniqueness: float, synergy: float, *, fusions: Sequence[str] = METER_FUSIONS,
                seeds: Sequence[int] | None = None, design: bool = True, **settings) -> dict:
    """Every number the meter shows for one state, computed from scratch (seconds to a minute).

    ``{"design", "design_bounds", "estimate", "bounds", "fusion": {method: [accuracy per seed]}}``; PID terms
    as dicts (bits). The estimate and its bounds use the seed-0 data (train and test rows together);
    fusion methods train on the train rows (MLP encoders, ``train_fusion`` of the fusion experiments) and
    are scored on the test rows, one data set and initialisation per seed.
    """
    from mmlearn.interactions import pairwise_marginals, pid, synergy_bounds

    train_fusion = _train_fusion()

    s = {**GRID_SETTINGS, **settings}
    seeds = tuple(s["seeds"] if seeds is None else seeds)
    out: dict = {"state": [redundancy, uniqueness, synergy]}
    if design:
        p = design_joint(redundancy, uniqueness, synergy, bins=s["design_bins"], n=s["design_samples"])
        out["design"] = pid(p).as_dict()
        out["design_bounds"] = _bounds_dict(synergy_bounds(*pairwise_marginals(p)))
    out["fusion"] = {f: [] for f in fusions}
    for seed in seeds:
        train, test = latent_views_split(redundancy, uniqueness, synergy, seed=seed, **settings)
        if seed == seeds[0]:
            x1 = np.concatenate([train.inputs["x1"].numpy(), test.inputs["x1"].numpy()])
            x2 = np.concatenate([train.inputs["x2"].numpy(), test.inputs["x2"].numpy()])
            y = np.concatenate([train.y.numpy(), test.y.numpy()])
            p = sample_joint(x1, x2, y, s["n_clusters"], seed=0)
            out["estimate"] = pid(p).as_dict()
            out["bounds"] = _bounds_dict(synergy_bounds(*pairwise_marginals(p)))
            out["estimate_seed"] = seed
        for f in fusions:
            run = train_fusion(f, train, test, epochs=s["epochs"], seed=seed)
            out["fusion"][f].append(round(run.accuracy, 4))
    return out


def grid_directions(values: Sequence[float] = SLIDER_VALUES) -> list[tuple[float, float, float]]:
    """The distinct directions among all slider states (all-zero excluded)."""
    dirs = []
    for r in values:
        for u in values:
            for s in values:
                if max(r, u, s) > 0:
                    d = direction(r, u, s)
                    if d not in dirs:
                        dirs.append(d)
    return dirs


def build_interaction_grid(path: str | Path | None = GRID_PATH, *, values: Sequence[float] = SLIDER_VALUES,
                           verbose: bool = False, **settings) -> dict:
    """:func:`meter_point` on every distinct direction of the slider grid; written as JSON to ``path``.

    This is how ``mmlearn/interactions/files/interaction_grid.json`` was made (about 10 minutes on a busy 2-core
    CPU): ``python -c "from mmlearn.widgets.interactions import build_interaction_grid; build_interaction_grid()"``.
    """
    import time

    import torch

    torch.set_num_threads(1)
    s = {**GRID_SETTINGS, **settings}
    grid = {"settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()},
            "values": list(values), "fusions": list(METER_FUSIONS), "points": {}}
    for d in grid_directions(values):
        t = time.perf_counter()
        grid["points"][_key(d)] = meter_point(*d, **settings)
        if verbose:
            print(_key(d), f"{time.perf_counter() - t:.1f} s", flush=True)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(_rounded(grid), indent=1))
    return grid


def _rounded(obj):
    if isinstance(obj, float):
        return round(obj, 5)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


@functools.lru_cache(maxsize=4)
def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def load_interaction_grid(path: str | Path = GRID_PATH) -> dict:
    """The committed grid (read once, cached)."""
    return _load(str(path))


# --------------------------------------------------------------------------------------
# The summary the meter shows
# --------------------------------------------------------------------------------------


def fusion_verdict(accuracies: dict[str, Sequence[float]], margin: float = 0.01) -> dict:
    """Mean, min and max accuracy per method over seeds, the best method, and the methods tied with it.

    A method is *tied* with the best when its mean is within ``margin`` of the best mean or its best seed reaches
    the best method's worst seed (the seed spread overlaps): no winner is claimed between them.
    """
    stats = {f: {"mean": float(np.mean(a)), "min": float(np.min(a)), "max": float(np.max(a))}
             for f, a in accuracies.items() if len(a)}
    if not stats:
        raise ValueError("no fusion accuracies to compare")
    best = max(stats, key=lambda f: stats[f]["mean"])
    tied = [f for f in stats if f != best and (stats[f]["mean"] >= stats[best]["mean"] - margin
                                               or stats[f]["max"] >= stats[best]["min"])]
    return {"stats": stats, "best": best, "tied": tied, "clear": not tied}


def interaction_summary(redundancy: float, uniqueness: float, synergy: float, grid: dict | None = None, *,
                        snap: bool = False) -> dict:
    """What the meter shows for one slider state, looked up in the precomputed grid (microseconds).

    Returns ``{"state", "direction", "design", "estimate", "bounds", "design_bounds", "fusion", "verdict",
    "dominant"}``: PID terms in bits (dicts), the label-free synergy bounds computed from the samples'
    pairwise marginals (``bounds``) and from the design's (``design_bounds``), accuracies per fusion method
    and seed, :func:`fusion_verdict`, and the design's largest term. Raises ``ValueError`` for the all-zero
    state or a state not on the grid (the message lists the slider values that are). With ``snap=True`` (for
    continuous sliders, e.g. the playground's) an off-grid state is answered by the nearest grid direction
    (Euclidean, after scaling each to a largest weight of 1), and ``"direction"`` says which one was used.
    """
    grid = load_interaction_grid() if grid is None else grid
    d = direction(redundancy, uniqueness, synergy)
    if snap and _key(d) not in grid["points"]:
        options = [tuple(float(v) for v in k.split(",")) for k in grid["points"]]
        d = min(options, key=lambda o: float(np.sum((np.asarray(o) - np.asarray(d)) ** 2)))
    point = grid["points"].get(_key(d))
    if point is None:
        raise ValueError(f"state {(redundancy, uniqueness, synergy)} is not on the precomputed grid; "
                         f"each slider takes the values {grid['values']}")
    design = point["design"]
    return {
        "state": (float(redundancy), float(uniqueness), float(synergy)),
        "direction": d,
        "design": design,
        "estimate": point["estimate"],
        "bounds": point["bounds"],
        "design_bounds": point["design_bounds"],
        "fusion": point["fusion"],
        "verdict": fusion_verdict(point["fusion"]),
        "dominant": max(TERMS, key=lambda t: design[t]),
    }


# --------------------------------------------------------------------------------------
# The panel
# --------------------------------------------------------------------------------------


class InteractionMeter(Panel):
    """Three sliders (the weights of ``make_latent_views``) and one figure: design PID, estimate, bounds, fusion.

    Every number is looked up in the precomputed grid (:func:`interaction_summary`), so a change answers in
    milliseconds. ``grid``: the output of :func:`build_interaction_grid` (default: the committed one).
    """

    def __init__(self, grid: dict | None = None, *, redundancy: float = 1.0, uniqueness: float = 0.0,
                 synergy: float = 1.0, title: str = "Interaction meter: what the sliders mean, and what it changes"):
        import ipywidgets as W

        from ..viz import interaction_meter_figure

        self.grid = load_interaction_grid() if grid is None else grid
        values = [float(v) for v in self.grid["values"]]
        style = {"description_width": "90px"}
        controls = {
            name: W.SelectionSlider(options=values, value=float(v), description=name, continuous_update=False,
                                    style=style, layout=W.Layout(width="280px"))
            for name, v in (("redundancy", redundancy), ("uniqueness", uniqueness), ("synergy", synergy))
        }
        first = interaction_summary(redundancy, uniqueness, synergy, self.grid)
        super().__init__(controls, interaction_meter_figure(first), title)
        self._cache[self._key(self.state())] = first
        self.last_result = first

    def compute(self, state: dict) -> dict:
        return interaction_summary(state["redundancy"], state["uniqueness"], state["synergy"], self.grid)

    def draw(self, result: dict) -> None:
        from ..viz.interactions import meter_trace_updates

        for i, update in enumerate(meter_trace_updates(result)):
            self.figure.data[i].update(update)
        from ..viz.interactions import meter_title

        self.figure.layout.title.text = meter_title(result)
