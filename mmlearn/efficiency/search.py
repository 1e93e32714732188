"""MFAS: multimodal fusion architecture search (Perez-Rua, Vielzeuf, Pateux, Baccouche, Jurie, CVPR 2019).

Two frozen unimodal encoders each expose the features of several layers. A
fusion architecture is a sequence of ``L`` fusion layers; layer ``l`` picks
``(i_l, j_l, sigma_l)``: a layer of encoder 1, a layer of encoder 2 and an
activation::

    h_1 = sigma_1(W_1 [x_{i_1}; y_{j_1}])
    h_l = sigma_l(W_l [x_{i_l}; y_{j_l}; h_{l-1}])          l = 2..L
    logits = W_out h_L

The search is sequential and model-based (as in the authors' code, reimplemented
in MultiBench ``training_structures/architecture_search.py``): depth grows one
layer per step; at each step every architecture of the current sample is extended
by every single-layer choice, a surrogate predicts the accuracy of each
extension, ``K`` are sampled with probabilities ``p ~ (a / sum a)^(1/T)``, trained
briefly, and their validation accuracies refit the surrogate. The temperature
decays from step to step (see :func:`mfas_temperature`).

Where this differs from MFAS: the surrogate is a ridge regression on one-hot
encodings of the layer choices (theirs an LSTM over the layer sequence); the
budget counts distinct trained architectures; candidates are trained with Adam
at a fixed rate (theirs: cosine annealing with restarts), without weight sharing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_number, fill_absent
from ..fusion.base import Fusion

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "leaky_relu": lambda: nn.LeakyReLU(0.01)}


def mfas_temperature(step: int, init: float = 10.0, final: float = 0.2, decay: float = 4.0) -> float:
    """The MFAS temperature after sampling step ``step`` (0, 1, ...)::

        T(step) = (init - final) * exp(-(step + 1)^2 / decay^2) + final

    (an inverse-exponential decay from ``init`` towards ``final``; MultiBench
    ``utils/search_tools.compute_temperature``). The first sampling step uses
    ``init``; sampling step ``t >= 1`` uses ``T(t - 1)``. With the defaults
    ``T(0..3) = 9.406, 7.832, 5.784, 3.805``.
    """
    step = check_number(step, "step", low=0, integer=True)
    init = check_number(init, "init", low=0.0, low_open=True)
    final = check_number(final, "final", low=0.0, low_open=True)
    decay = check_number(decay, "decay", low=0.0, low_open=True)
    return (init - final) * math.exp(-((step + 1.0) ** 2) / decay**2) + final


def search_space_size(n_layers_1: int, n_layers_2: int, n_activations: int, depth: int) -> int:
    """Number of architectures of exactly ``depth`` fusion layers: ``(n_layers_1 * n_layers_2 * n_activations)^depth``."""
    per_layer = 1
    for name, v in (("n_layers_1", n_layers_1), ("n_layers_2", n_layers_2), ("n_activations", n_activations)):
        per_layer *= check_number(v, name, low=1, integer=True)
    return per_layer ** check_number(depth, "depth", low=1, integer=True)


class LayeredMLP(nn.Module):
    """An MLP encoder whose every hidden layer is an output: ``layer_features(x) -> [h_1, ..., h_n]``.

    ``h_k = ReLU(W_k h_{k-1})`` with widths ``widths``; ``forward`` returns the last.
    """

    def __init__(self, in_shape: int | Sequence[int], widths: Sequence[int] = (32, 32, 16)):
        super().__init__()
        self.in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
        if not widths:
            raise ValueError("widths must name at least one layer")
        self.widths = tuple(check_number(w, "widths[]", low=1, integer=True) for w in widths)
        flat = math.prod(self.in_shape)
        dims = [flat, *self.widths]
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in zip(dims[:-1], dims[1:]))
        self.out_dim = self.widths[-1]

    def layer_features(self, x: Tensor) -> list[Tensor]:
        h = x.reshape(x.shape[0], -1)
        out = []
        for layer in self.layers:
            h = layer(h)
            out.append(h)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.layer_features(x)[-1]


def pretrain_layered_encoders(
    train, modalities: Sequence[str] | None = None, *, widths: Sequence[int] = (32, 32, 16), epochs: int = 10,
    lr: float = 3e-3, batch_size: int = 64, seed: int = 0,
) -> dict[str, LayeredMLP]:
    """Train one :class:`LayeredMLP` per modality on its own (with a linear head), then freeze it.

    Returns ``{modality: encoder}`` in eval mode with ``requires_grad=False``.
    """
    from ..data import as_batch

    batch = as_batch(train)
    names = list(modalities) if modalities is not None else batch.modalities
    n_classes = int(batch.y.max()) + 1
    encoders = {}
    for m in names:
        torch.manual_seed(seed)
        enc = LayeredMLP(tuple(batch.inputs[m].shape[1:]), widths)
        head = nn.Linear(enc.out_dim, n_classes)
        x = batch.inputs[m].float()
        _train_loop(lambda idx, x=x, enc=enc, head=head: head(enc(x[idx])), [*enc.parameters(), *head.parameters()],
                    batch.y, epochs, lr, batch_size, seed)
        enc.eval()
        for p in enc.parameters():
            p.requires_grad_(False)
        encoders[m] = enc
    return encoders


def _train_loop(logits_of, params, y: Tensor, epochs: int, lr: float, batch_size: int, seed: int) -> None:
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = y.shape[0]
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            loss = nn.functional.cross_entropy(logits_of(idx), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def layer_key(modality: str, layer: int) -> str:
    """Name of one layer's features in the fusion input: ``"image/0"``."""
    return f"{modality}/{layer}"


class MFASFusion(Fusion):
    """A searched MFAS fusion network on the fusion contract.

    ``in_dims``: every layer's features, keyed ``"<modality>/<layer>"``
    (:func:`layer_key`) for the two modalities ``modalities``; ``architecture``: a
    sequence of ``(i, j, activation)``, one per fusion layer; every fusion layer
    has width ``out_dim``, so the output ``h_L`` is ``(B, out_dim)``. Layers not
    named by the architecture are accepted and ignored.
    """

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, architecture: Sequence, modalities: Sequence[str]):
        super().__init__(in_dims, out_dim)
        if len(modalities) != 2:
            raise ValueError(f"MFAS fuses two modalities, got {list(modalities)}")
        if not architecture:
            raise ValueError("architecture is empty: it needs at least one fusion layer (i, j, activation)")
        self.pair = tuple(modalities)
        self.architecture = tuple((int(i), int(j), str(a)) for i, j, a in architecture)
        layers, acts, prev = [], [], 0
        for i, j, a in self.architecture:
            for m, k in ((self.pair[0], i), (self.pair[1], j)):
                if layer_key(m, k) not in self.in_dims:
                    raise ValueError(f"architecture names layer {k} of {m!r}, which in_dims lacks ({layer_key(m, k)!r})")
            if a not in ACTIVATIONS:
                raise ValueError(f"unknown activation {a!r}; expected one of {sorted(ACTIVATIONS)}")
            width = self.in_dims[layer_key(self.pair[0], i)] + self.in_dims[layer_key(self.pair[1], j)] + prev
            layers.append(nn.Linear(width, out_dim))
            acts.append(ACTIVATIONS[a]())
            prev = out_dim
        self.layers = nn.ModuleList(layers)
        self.acts = nn.ModuleList(acts)

    def forward(self, features, present=None) -> Tensor:
        x, _ = self.check(features, present)
        h = None
        for (i, j, _), lin, act in zip(self.architecture, self.layers, self.acts):
            parts = [x[layer_key(self.pair[0], i)], x[layer_key(self.pair[1], j)]]
            if h is not None:
                parts.append(h)
            h = act(lin(torch.cat(parts, dim=-1)))  # h_l = sigma_l(W_l [x_i; y_j; h_{l-1}])
        return h


class MFASClassifier(nn.Module):
    """Frozen layered encoders + :class:`MFASFusion` + a linear head; works with ``fit``/``evaluate``.

    ``forward_all`` returns a :class:`~mmlearn.models.MultimodalOutput` whose
    ``features`` are the layer features keyed ``"<modality>/<layer>"``. Absent
    rows (``present``) are zero-filled before encoding.
    """

    def __init__(self, encoders: Mapping[str, LayeredMLP], fusion: MFASFusion, n_classes: int):
        super().__init__()
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = fusion
        self.head = nn.Linear(fusion.out_dim, n_classes)
        self.n_classes = n_classes

    def layer_features(self, inputs: Mapping[str, Tensor], present=None) -> dict[str, Tensor]:
        out = {}
        for m in self.fusion.pair:
            if m not in inputs:
                raise ValueError(f"missing modality {m!r}; this model reads {list(self.fusion.pair)}")
            x = inputs[m].to(self.head.weight.dtype)
            if present is not None and m in present:
                x = fill_absent(x, present[m])
            with torch.no_grad():
                feats = self.encoders[m].layer_features(x)
            out.update({layer_key(m, k): f for k, f in enumerate(feats)})
        return out

    def forward_all(self, inputs, present=None):
        from ..models import MultimodalOutput

        feats = self.layer_features(inputs, present)
        fused = self.fusion(feats)
        return MultimodalOutput(self.head(fused), feats, fused, {}, present)

    def forward(self, inputs, present=None) -> Tensor:
        return self.forward_all(inputs, present).logits


@dataclass
class SearchResult:
    """What :func:`fusion_architecture_search` returns.

    ``leaderboard``: ``[(architecture, val_accuracy)]`` over every trained
    architecture, best first (ties: shallower, then in the order of the choices);
    ``best_architecture`` its first entry; ``best_model`` that architecture as a
    trained :class:`MFASClassifier` (``best_model.fusion`` is the
    :class:`MFASFusion`); ``search_space_size`` the number of architectures of
    depth ``max_layers``, ``(n1 * n2 * n_activations)^max_layers``;
    ``choices_per_layer`` = ``(n1, n2, n_activations)``; ``temperatures`` the
    temperature of each sampling step; ``seconds`` the search's wall time.
    """

    leaderboard: list[tuple[tuple, float]]
    best_architecture: tuple
    best_model: MFASClassifier
    search_space_size: int
    choices_per_layer: tuple[int, int, int]
    temperatures: list[float] = field(default_factory=list)
    n_trained: int = 0
    seconds: float = 0.0


def _one_hot(arch: tuple, choices: list[tuple], max_layers: int) -> np.ndarray:
    """Encoding for the surrogate: per position, a one-hot of i, of j and of the activation; plus the depth."""
    n1 = max(c[0] for c in choices) + 1
    n2 = max(c[1] for c in choices) + 1
    acts = sorted({c[2] for c in choices})
    block = n1 + n2 + len(acts)
    v = np.zeros(max_layers * block + max_layers)
    for pos, (i, j, a) in enumerate(arch):
        base = pos * block
        v[base + i] = 1
        v[base + n1 + j] = 1
        v[base + n1 + n2 + acts.index(a)] = 1
    v[max_layers * block + len(arch) - 1] = 1
    return v


class RidgeSurrogate:
    """``acc ~ w . phi(arch) + b`` by ridge regression (closed form) on one-hot encodings."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha
        self.w: np.ndarray | None = None
        self.b = 0.0

    def fit(self, X: np.ndarray, y: np.ndarray) -> RidgeSurrogate:
        mx, my = X.mean(axis=0), float(y.mean())
        Xc = X - mx
        self.w = np.linalg.solve(Xc.T @ Xc + self.alpha * np.eye(X.shape[1]), Xc.T @ (y - my))
        self.b = my - float(mx @ self.w)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X @ self.w + self.b


def _sample(rng: np.random.Generator, scores: np.ndarray, k: int, temperature: float) -> list[int]:
    """MFAS sampling: ``p = (s / sum s)^(1/T)``, renormalised; ``k`` without replacement."""
    s = np.clip(scores, 1e-6, None)
    p = s / s.sum()
    p = p ** (1.0 / temperature)
    p = p / p.sum()
    k = min(k, int((p > 0).sum()))
    return list(rng.choice(len(s), size=k, replace=False, p=p))


def fusion_architecture_search(
    train,
    val,
    *,
    modalities: Sequence[str] | None = None,
    encoders: Mapping[str, LayeredMLP] | None = None,
    encoder_widths: Sequence[int] = (32, 32, 16),
    encoder_epochs: int = 10,
    activations: Sequence[str] = ("relu", "sigmoid", "leaky_relu"),
    max_layers: int = 3,
    search_iterations: int = 2,
    samples_per_step: int = 6,
    budget: int = 40,
    width: int = 16,
    epochs: int = 3,
    lr: float = 3e-3,
    batch_size: int = 64,
    temperature_init: float = 10.0,
    temperature_final: float = 0.2,
    temperature_decay: float = 4.0,
    ridge: float = 1.0,
    seed: int = 0,
) -> SearchResult:
    """MFAS-style search for how to fuse two frozen encoders' layers (module docstring).

    ``train`` / ``val``: Batches (or datasets) with two modalities (``modalities``
    picks two when there are more). ``encoders``: ``{modality: LayeredMLP}``
    already trained and frozen; by default each is pretrained on ``train`` alone
    (:func:`pretrain_layered_encoders`, ``encoder_widths``, ``encoder_epochs``).

    Loop: for each of ``search_iterations`` rounds, for depth ``1..max_layers``:
    extend the current sample by every single-layer choice; score the extensions
    (the very first step trains them all, up to ``budget``; later steps ask the
    ridge surrogate); sample ``samples_per_step`` with the MFAS rule at the
    current temperature; train each sampled architecture not trained before
    (``epochs`` of Adam, width ``width``, a seed fixed per architecture) and
    record its validation accuracy; refit the surrogate on every result. The
    search stops once ``budget`` distinct architectures are trained. Fixed ``seed``
    -> identical leaderboard.
    """
    from ..data import as_batch

    tr, va = as_batch(train), as_batch(val)
    names = list(modalities) if modalities is not None else tr.modalities
    if len(names) != 2:
        raise ValueError(f"MFAS searches how to fuse two modalities; got {names} (pass modalities=[a, b])")
    for m in names:
        if m not in tr.inputs or m not in va.inputs:
            raise ValueError(f"unknown modality {m!r}; train has {tr.modalities}, val has {va.modalities}")
    max_layers = check_number(max_layers, "max_layers", low=1, integer=True)
    search_iterations = check_number(search_iterations, "search_iterations", low=1, integer=True)
    samples_per_step = check_number(samples_per_step, "samples_per_step", low=1, integer=True)
    budget = check_number(budget, "budget", low=1, integer=True)
    width = check_number(width, "width", low=1, integer=True)
    epochs = check_number(epochs, "epochs", low=1, integer=True)
    check_number(lr, "lr", low=0.0, low_open=True)
    batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
    ridge = check_number(ridge, "ridge", low=0.0, low_open=True)
    seed = check_number(seed, "seed", integer=True)
    mfas_temperature(0, temperature_init, temperature_final, temperature_decay)  # checks the three
    acts = list(activations)
    if not acts or any(a not in ACTIVATIONS for a in acts):
        raise ValueError(f"activations must be a non-empty subset of {sorted(ACTIVATIONS)}, got {acts}")

    start = time.perf_counter()
    if encoders is None:
        encoders = pretrain_layered_encoders(tr, names, widths=encoder_widths, epochs=encoder_epochs, seed=seed)
    for m in names:
        if m not in encoders or not hasattr(encoders[m], "layer_features"):
            raise TypeError(f"encoders[{m!r}] must be a LayeredMLP (something with layer_features(x))")
    n_classes = int(max(int(tr.y.max()), int(va.y.max()))) + 1

    def layer_feats(batch) -> dict[str, Tensor]:
        out = {}
        with torch.no_grad():
            for m in names:
                x = batch.inputs[m].float()
                if batch.present is not None:
                    x = fill_absent(x, batch.present[m])
                out.update({layer_key(m, k): f for k, f in enumerate(encoders[m].layer_features(x))})
        return out

    ftr, fva = layer_feats(tr), layer_feats(va)
    in_dims = {k: int(v.shape[1]) for k, v in ftr.items()}
    n1 = sum(1 for k in in_dims if k.startswith(f"{names[0]}/"))
    n2 = sum(1 for k in in_dims if k.startswith(f"{names[1]}/"))
    choices = [(i, j, a) for i in range(n1) for j in range(n2) for a in acts]
    index = {c: n for n, c in enumerate(choices)}

    results: dict[tuple, float] = {}
    states: dict[tuple, tuple] = {}

    def arch_seed(arch: tuple) -> int:
        code = 0
        for c in arch:
            code = code * (len(choices) + 1) + index[c] + 1
        return (seed * 1_000_003 + code) % (2**31)

    def train_arch(arch: tuple) -> float:
        torch.manual_seed(arch_seed(arch))
        fusion = MFASFusion(in_dims, width, arch, names)
        head = nn.Linear(width, n_classes)
        _train_loop(lambda idx: head(fusion({k: v[idx] for k, v in ftr.items()})),
                    [*fusion.parameters(), *head.parameters()], tr.y, epochs, lr, batch_size, arch_seed(arch))
        with torch.no_grad():
            acc = float((head(fusion(fva)).argmax(dim=1) == va.y).float().mean())
        states[arch] = (fusion.state_dict(), head.state_dict())
        return acc

    def run(archs: list[tuple]) -> None:
        for a in archs:
            if a not in results and len(results) < budget:
                results[a] = train_arch(a)

    rng = np.random.default_rng(seed)
    surrogate = RidgeSurrogate(ridge)
    temperatures: list[float] = []
    step = 0
    temperature = temperature_init
    for _ in range(search_iterations):
        sample: list[tuple] = []
        for depth in range(1, max_layers + 1):
            if len(results) >= budget:
                break
            candidates = [(c,) for c in choices] if depth == 1 else [s + (c,) for s in sample for c in choices]
            if step == 0:
                run(candidates)  # the very first step trains every candidate (within the budget)
                scores = np.array([results.get(c, 0.0) for c in candidates])
            else:
                X = np.stack([_one_hot(c, choices, max_layers) for c in candidates])
                scores = surrogate.predict(X)
            picked = _sample(rng, scores, samples_per_step, temperature)
            sample = [candidates[i] for i in picked]
            run(sample)
            sample = [s for s in sample if s in results]
            temperatures.append(temperature)
            trained = list(results)
            surrogate.fit(np.stack([_one_hot(c, choices, max_layers) for c in trained]),
                          np.array([results[c] for c in trained]))
            temperature = mfas_temperature(step, temperature_init, temperature_final, temperature_decay)
            step += 1
            if not sample:
                break

    leaderboard = sorted(results.items(), key=lambda kv: (-kv[1], len(kv[0]), [index[c] for c in kv[0]]))
    best = leaderboard[0][0]
    fusion = MFASFusion(in_dims, width, best, names)
    model = MFASClassifier({m: encoders[m] for m in names}, fusion, n_classes)
    fusion.load_state_dict(states[best][0])
    model.head.load_state_dict(states[best][1])
    return SearchResult(
        leaderboard=[(a, acc) for a, acc in leaderboard],
        best_architecture=best,
        best_model=model,
        search_space_size=search_space_size(n1, n2, len(acts), max_layers),
        choices_per_layer=(n1, n2, len(acts)),
        temperatures=temperatures,
        n_trained=len(results),
        seconds=time.perf_counter() - start,
    )
