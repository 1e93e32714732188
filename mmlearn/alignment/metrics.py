"""How well two modalities are aligned: retrieval, zero-shot classification, alignment and uniformity.

All functions take embeddings ``(N, d)`` of N pairs (row i of ``z_a`` belongs
with row i of ``z_b``) and compare them by cosine similarity.

Two notions of a hit in retrieval:

- **instance** (``labels=None``): the query's own partner (same row) must be
  retrieved; chance recall@1 is 1/N.
- **class** (``labels`` given): any item with the query's label counts (for
  AV-Digits: any image of the spoken digit); chance recall@1 is about 1/C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .loss import _check_pair


def _check_finite_embeddings(*named: tuple[str, Tensor]) -> None:
    """Reject NaN/inf embeddings: every comparison with NaN is False, so a diverged
    model would otherwise score a perfect recall (nothing ranks above the partner)."""
    for name, z in named:
        if not isinstance(z, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
        if torch.is_floating_point(z) and not bool(torch.isfinite(z).all()):
            bad = ~torch.isfinite(z).reshape(z.shape[0], -1).all(dim=1) if z.dim() > 1 else ~torch.isfinite(z)
            rows = torch.nonzero(bad).flatten()[:5].tolist()
            raise ValueError(
                f"{name} holds NaN or inf in {int(bad.sum())} row(s) (first: {rows}); metrics of non-finite "
                "embeddings are meaningless (did training diverge? check the loss history and the inputs)"
            )


def cosine_similarity_matrix(z_a: Tensor, z_b: Tensor) -> Tensor:
    """``S[i, j] = cos(z_a_i, z_b_j)``: (N, d) x (M, d) -> (N, M). Rejects NaN/inf embeddings."""
    _check_finite_embeddings(("z_a", z_a), ("z_b", z_b))
    if z_a.dim() != 2 or z_b.dim() != 2 or z_a.shape[1] != z_b.shape[1]:
        raise ValueError(
            f"embeddings have shapes {tuple(z_a.shape)} and {tuple(z_b.shape)}; expected (N, d) and (M, d)"
        )
    return F.normalize(z_a.detach().float(), dim=-1) @ F.normalize(z_b.detach().float(), dim=-1).T


def _check_labels(labels, n: int) -> Tensor | None:
    if labels is None:
        return None
    labels = torch.as_tensor(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels have shape {tuple(labels.shape)}; expected ({n},), one per pair")
    return labels


def retrieval_ranks(sim: Tensor, labels: Tensor | None = None) -> Tensor:
    """Rank (1 = best) of the first correct item for each query (row of ``sim``, (N, N)).

    Without ``labels`` the correct item of row i is column i; with ``labels``
    (N,) every column with the same label is correct, and the rank is that of
    the best-scored correct column. Ties count against the query:
    ``rank_i = 1 + #{incorrect j : S_ij >= max_{correct j'} S_ij'}``, so
    collapsed embeddings (every row the same point, a common way for a run to
    fail) score chance or worse, never a perfect recall.
    """
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity matrix has shape {tuple(sim.shape)}; expected (N, N) for N pairs")
    _check_finite_embeddings(("similarity matrix", sim))
    n = sim.shape[0]
    labels = _check_labels(labels, n)
    if labels is None:
        correct = torch.eye(n, dtype=torch.bool, device=sim.device)  # (N, N)
    else:
        correct = labels.view(-1, 1).to(sim.device) == labels.view(1, -1).to(sim.device)  # (N, N)
    # best similarity among the correct items of each row: (N,)
    best = sim.masked_fill(~correct, float("-inf")).amax(dim=1)
    return 1 + ((sim >= best[:, None]) & ~correct).sum(dim=1)


def retrieval_metrics(z_a: Tensor, z_b: Tensor, labels=None, ks=(1, 5, 10),
                      names: tuple[str, str] = ("a", "b")) -> dict[str, float]:
    """Recall@k and median rank in both directions.

    Keys ``f"{a}->{b} R@{k}"``, ``f"{a}->{b} median rank"`` and the same for
    ``b->a`` (queries from b, items from a), with ``names = (a, b)``. Recall@k
    is the share of queries whose first correct item has rank <= k. Pass
    ``labels`` (N,) for class-level hits (see the module docstring).
    """
    _check_pair(z_a, z_b)
    _check_finite_embeddings(("z_a", z_a), ("z_b", z_b))
    labels = _check_labels(labels, len(z_a))
    sim = cosine_similarity_matrix(z_a, z_b)  # (N, N)
    out: dict[str, float] = {}
    for direction, s in ((f"{names[0]}->{names[1]}", sim), (f"{names[1]}->{names[0]}", sim.T)):
        ranks = retrieval_ranks(s, labels).float()
        for k in ks:
            out[f"{direction} R@{k}"] = float((ranks <= k).float().mean())
        out[f"{direction} median rank"] = float(ranks.median())  # lower median for even N
    return out


def recall_at_k(z_query: Tensor, z_items: Tensor, k: int = 1, labels=None) -> float:
    """Share of queries (row i of ``z_query``) whose correct item is among the k most similar ``z_items``."""
    _check_pair(z_query, z_items, ("z_query", "z_items"))
    _check_finite_embeddings(("z_query", z_query), ("z_items", z_items))
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ranks = retrieval_ranks(cosine_similarity_matrix(z_query, z_items), _check_labels(labels, len(z_query)))
    return float((ranks <= k).float().mean())


def median_rank(z_query: Tensor, z_items: Tensor, labels=None) -> float:
    """Median over queries of the rank of the correct item (1 = retrieved first; lower median for even N)."""
    _check_pair(z_query, z_items, ("z_query", "z_items"))
    _check_finite_embeddings(("z_query", z_query), ("z_items", z_items))
    ranks = retrieval_ranks(cosine_similarity_matrix(z_query, z_items), _check_labels(labels, len(z_query)))
    return float(ranks.float().median())


def class_prototypes(z: Tensor, labels, n_classes: int | None = None) -> Tensor:
    """Mean unit-normalised embedding per class, re-normalised: (N, d), (N,) -> (C, d).

    The prototype of digit c from audio embeddings is "what the word sounds like"
    in the shared space, as CLIP's class prompt "a photo of a {c}" is for images.
    """
    if z.dim() != 2:
        raise ValueError(f"embeddings have shape {tuple(z.shape)}; expected (N, d)")
    _check_finite_embeddings(("z", z))
    labels = _check_labels(labels, len(z)).long()
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    counts = torch.bincount(labels, minlength=n_classes)
    if len(counts) > n_classes or (counts == 0).any():
        empty = [c for c in range(n_classes) if c >= len(counts) or counts[c] == 0]
        raise ValueError(f"class_prototypes: classes {empty} have no example (labels must lie in 0..{n_classes - 1})")
    unit = F.normalize(z.detach().float(), dim=-1)
    sums = torch.zeros(n_classes, z.shape[1]).index_add_(0, labels, unit)  # (C, d)
    return F.normalize(sums / counts[:, None], dim=-1)


def zero_shot_classify(z: Tensor, prototypes: Tensor) -> Tensor:
    """Class of the most similar prototype (cosine): (N, d), (C, d) -> (N,) class ids."""
    _check_finite_embeddings(("z", z), ("prototypes", prototypes))
    return cosine_similarity_matrix(z, prototypes).argmax(dim=1)


def zero_shot_accuracy(z: Tensor, labels, prototypes: Tensor) -> float:
    """Accuracy of :func:`zero_shot_classify` against ``labels`` (N,)."""
    labels = _check_labels(labels, len(z))
    return float((zero_shot_classify(z, prototypes) == labels.to(z.device)).float().mean())


def alignment(z_a: Tensor, z_b: Tensor, alpha: float = 2.0, normalize: bool = True) -> float:
    """Alignment of Wang & Isola (ICML 2020): ``E ||f(x) - f(y)||^alpha`` over positive pairs.

    Lower is better (0: each pair maps to one point). Computed on unit-normalised
    embeddings by default (the hypersphere of the paper), so it lies in [0, 2^alpha].
    """
    _check_pair(z_a, z_b)
    _check_finite_embeddings(("z_a", z_a), ("z_b", z_b))
    a, b = z_a.detach().float(), z_b.detach().float()
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    # ||f(x_i) - f(y_i)||_2^alpha, mean over the N pairs
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(z: Tensor, t: float = 2.0, normalize: bool = True) -> float:
    """Uniformity of Wang & Isola (ICML 2020): ``log E exp(-t ||f(x) - f(y)||^2)`` over distinct pairs.

    The mean runs over the N(N-1)/2 pairs i < j (as ``torch.pdist`` in the
    paper's code). Lower is better (more spread out). On unit vectors it is 0
    when all points coincide and at least ``-2 t N / (N - 1)`` (Jensen, since the
    mean squared distance of N unit vectors is at most ``2N / (N - 1)``).
    """
    if z.dim() != 2 or z.shape[0] < 2:
        raise ValueError(f"embeddings have shape {tuple(z.shape)}; expected (N, d) with N >= 2")
    _check_finite_embeddings(("z", z))
    x = z.detach().float()
    if normalize:
        x = F.normalize(x, dim=-1)
    # ||f(x_i) - f(x_j)||^2 for i < j: (N(N-1)/2,)
    sq = torch.pdist(x, p=2).pow(2)
    # log mean exp(-t ||.||^2), computed stably
    return float(torch.logsumexp(-t * sq, dim=0) - torch.log(torch.tensor(float(len(sq)))))
