"""Synthetic multimodal data with known ground truth.

``make_latent_views`` controls how much of the label is carried redundantly by
both modalities, uniquely by one, or only synergistically by the two together
(the three kinds of interaction of survey Sec. IX / PID). ``make_bitwise``
gives the classic two-bit cases (AND, OR, XOR, unique, redundant) whose
information decomposition is known in closed form.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # datasets (with pyarrow and pandas) is imported where a dataset is built
    from datasets import Dataset

from .._checks import check_number
from .batch import NON_MODALITY_COLUMNS, NON_MODALITY_PREFIXES, _whole

BITWISE_KINDS = ("and", "or", "xor", "unique", "redundant")


def _dataset(columns: dict[str, np.ndarray]) -> Dataset:
    # Build without explicit Features, then let Arrow infer: much faster (platform notes).
    from datasets import Dataset

    return Dataset.from_dict({k: v for k, v in columns.items()})


def make_bitwise(kind: str, n: int = 1000, seed: int = 0) -> Dataset:
    """Two binary inputs ``x1, x2`` (each a ``(1,)`` float vector) and a binary label.

    - ``and``, ``or``, ``xor``: ``x1, x2`` independent fair bits, ``y = x1 op x2``;
    - ``unique``: independent bits, ``y = x1`` (all information unique to x1);
    - ``redundant``: ``x2 = x1`` and ``y = x1`` (all information redundant).
    """
    if kind not in BITWISE_KINDS:
        raise ValueError(f"unknown bitwise kind {kind!r}; expected one of {BITWISE_KINDS}")
    n = check_number(_whole(n), "n", low=1, integer=True)
    seed = check_number(_whole(seed), "seed", low=0, integer=True)
    rng = np.random.default_rng(seed)
    x1 = rng.integers(0, 2, n)
    x2 = x1.copy() if kind == "redundant" else rng.integers(0, 2, n)
    y = {
        "and": x1 & x2,
        "or": x1 | x2,
        "xor": x1 ^ x2,
        "unique": x1,
        "redundant": x1,
    }[kind]
    return _dataset(
        {
            "x1": x1.astype(np.float32)[:, None],
            "x2": x2.astype(np.float32)[:, None],
            "label": y.astype(np.int64),
        }
    )


def make_latent_views(
    n: int = 2000,
    *,
    dim: int | Mapping[str, int] = 16,
    modalities: tuple[str, ...] = ("x1", "x2"),
    shared_dim: int = 4,
    unique_dim: int = 4,
    redundancy: float = 1.0,
    uniqueness: float = 0.0,
    synergy: float = 0.0,
    unique_to: str | None = None,
    noise: float | Mapping[str, float] = 0.1,
    seed: int = 0,
) -> Dataset:
    """Gaussian latents -> per-modality views -> a binary label with chosen dependence.

    Latents: a shared ``s ~ N(0, I_{shared_dim})`` seen by every modality and a
    private ``u_m ~ N(0, I_{unique_dim})`` per modality. Each view is a fixed
    random linear mixing plus Gaussian noise::

        x_m = A_m [s; u_m] + noise_m * eps_m          (A_m: dim_m x (shared_dim + unique_dim))

    The label thresholds a score with three interpretable parts::

        score = redundancy * s_1                     # in every view: redundant
              + uniqueness * u_{k,1}                 # only in modality k = unique_to: unique
              + synergy    * u_{a,2} * u_{b,2}        # sign needs both views: synergistic (XOR-like)
        y = 1[score > 0]

    where ``a, b`` are the first two modalities. Larger ``noise_m`` makes modality
    ``m`` weaker. The latents come back as ``latent_*`` columns (ground truth,
    ignored by :func:`mmlearn.data.to_batch`).
    """
    if isinstance(modalities, str) or len(modalities) < 2:
        raise ValueError(f"need at least two modalities, got {modalities!r}")
    for m in modalities:
        if not isinstance(m, str) or not m:
            raise TypeError(f"modality names must be non-empty strings, got {m!r}")
        if m in NON_MODALITY_COLUMNS or m.startswith(NON_MODALITY_PREFIXES):
            raise ValueError(
                f"modality name {m!r} is reserved: columns named {NON_MODALITY_COLUMNS} or starting with "
                f"{NON_MODALITY_PREFIXES} are labels and metadata, not modalities; choose another name"
            )
    repeated = sorted({m for m in modalities if list(modalities).count(m) > 1})
    if repeated:
        raise ValueError(f"modality names must be distinct; {repeated} appear more than once in {modalities}")
    n = check_number(_whole(n), "n", low=1, integer=True)
    shared_dim = check_number(_whole(shared_dim), "shared_dim", low=1, integer=True)
    unique_dim = check_number(_whole(unique_dim), "unique_dim", low=1, integer=True)
    seed = check_number(_whole(seed), "seed", low=0, integer=True)
    redundancy = check_number(redundancy, "redundancy")
    uniqueness = check_number(uniqueness, "uniqueness")
    synergy = check_number(synergy, "synergy")
    if synergy and unique_dim < 2:
        raise ValueError(f"synergy uses the second private latent: unique_dim must be >= 2, got {unique_dim}")
    if unique_dim < 1 or shared_dim < 1:
        raise ValueError(f"shared_dim and unique_dim must be >= 1, got {shared_dim}, {unique_dim}")
    unique_to = modalities[0] if unique_to is None else unique_to
    if unique_to not in modalities:
        raise ValueError(f"unique_to: unknown modality {unique_to!r}; expected one of {modalities}")
    dims = dict(dim) if isinstance(dim, Mapping) else {m: dim for m in modalities}
    noises = dict(noise) if isinstance(noise, Mapping) else {m: noise for m in modalities}
    for what, table in (("dim", dims), ("noise", noises)):
        for m in table:
            if m not in modalities:
                raise ValueError(f"{what}: unknown modality {m!r}; expected one of {modalities}")
    dims = {m: check_number(_whole(d), f"dim[{m!r}]", low=1, integer=True) for m, d in dims.items()}
    noises = {m: check_number(v, f"noise[{m!r}]", low=0) for m, v in noises.items()}
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, shared_dim))
    u = {m: rng.standard_normal((n, unique_dim)) for m in modalities}
    a, b = modalities[0], modalities[1]
    score = redundancy * s[:, 0] + uniqueness * u[unique_to][:, 0]
    if synergy:
        score = score + synergy * u[a][:, 1] * u[b][:, 1]
    y = (score > 0).astype(np.int64)
    columns: dict[str, np.ndarray] = {}
    for m in modalities:
        d = dims.get(m, 16)
        mixing = rng.standard_normal((shared_dim + unique_dim, d)) / np.sqrt(shared_dim + unique_dim)
        clean = np.concatenate([s, u[m]], axis=1) @ mixing
        columns[m] = (clean + noises.get(m, 0.0) * rng.standard_normal((n, d))).astype(np.float32)
    columns["label"] = y
    columns["latent_shared"] = s.astype(np.float32)
    for m in modalities:
        columns[f"latent_unique_{m}"] = u[m].astype(np.float32)
    return _dataset(columns)
