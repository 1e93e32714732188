"""Linear CCA: the classical alignment baseline (Hotelling 1936), with scikit-learn.

Canonical correlation analysis finds linear maps ``u = A^T x_a`` and ``v = B^T x_b``
whose coordinates are maximally correlated over the training pairs
(``corr(u_k, v_k)`` largest, successive pairs uncorrelated). Like the
contrastive model it puts both modalities in one space, but linearly and
with a correlation objective instead of Eq. (2)'s discrimination among
negatives. Retrieval then compares canonical variates by cosine similarity.

scikit-learn's :class:`~sklearn.cross_decomposition.CCA` (iterative NIPALS)
has no ridge term, and with 400 audio dimensions and ~1,400 pairs it
overfits; as is common, each modality is first reduced by PCA to ``pca_dim``
components (fitted on the training pairs only).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_modality_dict


def _blas_one_thread():
    """numpy's BLAS on one thread: on a busy 2-core machine, OpenBLAS threads competing with
    torch's made these small fits ~100x slower (13 s instead of 0.1 s)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


class CCABaseline:
    """PCA per modality, then scikit-learn's CCA; the same ``embed`` interface as :class:`AlignmentModel`.

    ``CCABaseline(n_components=8, pca_dim=32).fit(inputs)`` with ``inputs`` a
    dict of exactly two modalities ``{name: (N, ...)}`` (flattened here), then
    ``embed(inputs)`` -> ``{name: (N, n_components)}`` unit-norm canonical
    variates. ``pca_dim=None`` skips the PCA. ``canonical_correlations(inputs)``
    gives ``corr(u_k, v_k)`` per component on any pairs.
    """

    def __init__(self, n_components: int = 8, pca_dim: int | None = 32, max_iter: int = 500, tol: float = 1e-6):
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if pca_dim is not None and pca_dim < n_components:
            raise ValueError(f"pca_dim ({pca_dim}) must be >= n_components ({n_components})")
        self.n_components, self.pca_dim, self.max_iter, self.tol = n_components, pca_dim, max_iter, tol
        self.shapes: dict[str, tuple] | None = None

    @property
    def modalities(self) -> tuple[str, str]:
        if self.shapes is None:
            raise RuntimeError("CCABaseline is not fitted yet: call fit(inputs) first")
        a, b = self.shapes
        return a, b

    def _flat(self, inputs: Mapping[str, Tensor]) -> list[np.ndarray]:
        check_modality_dict(inputs, self.shapes, what="CCABaseline inputs")
        return [np.asarray(inputs[m].detach().cpu().reshape(len(inputs[m]), -1), dtype=np.float64)
                for m in self.modalities]

    def fit(self, inputs: Mapping[str, Tensor]) -> CCABaseline:
        from sklearn.cross_decomposition import CCA
        from sklearn.decomposition import PCA

        if not isinstance(inputs, Mapping) or len(inputs) != 2:
            got = list(inputs) if isinstance(inputs, Mapping) else type(inputs).__name__
            raise ValueError(f"CCABaseline aligns exactly two modalities, got {got}")
        self.shapes = {m: tuple(x.shape[1:]) for m, x in inputs.items()}
        xs = self._flat(inputs)
        n = len(xs[0])
        for m, x in zip(self.modalities, xs):
            need = self.pca_dim or self.n_components
            if min(n, x.shape[1]) < need:
                raise ValueError(f"modality {m!r} gives {n} pairs of {x.shape[1]} features; "
                                 f"need at least {need} of each for pca_dim={self.pca_dim}, "
                                 f"n_components={self.n_components}")
        with _blas_one_thread():
            if self.pca_dim is not None:
                # (N, D_m) -> (N, pca_dim), fitted on the training pairs
                self.pcas = [PCA(self.pca_dim, random_state=0).fit(x) for x in xs]
                xs = [p.transform(x) for p, x in zip(self.pcas, xs)]
            else:
                self.pcas = None
            # A, B maximising corr(A^T x_a, B^T x_b), one component at a time
            self.cca = CCA(self.n_components, max_iter=self.max_iter, tol=self.tol).fit(*xs)
        return self

    def transform(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Canonical variates ``{name: (N, n_components)}`` (not normalised)."""
        xs = self._flat(inputs)
        with _blas_one_thread():
            if self.pcas is not None:
                xs = [p.transform(x) for p, x in zip(self.pcas, xs)]
            u, v = self.cca.transform(*xs)
        return {m: torch.as_tensor(z, dtype=torch.float32) for m, z in zip(self.modalities, (u, v))}

    def embed(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Unit-norm canonical variates ``{name: (N, n_components)}`` (cosine retrieval, like AlignmentModel)."""
        return {m: F.normalize(z, dim=-1) for m, z in self.transform(inputs).items()}

    def canonical_correlations(self, inputs: Mapping[str, Tensor]) -> np.ndarray:
        """``corr(u_k, v_k)`` on these pairs, one per component: (n_components,)."""
        u, v = (z.numpy().astype(np.float64) for z in self.transform(inputs).values())
        u, v = u - u.mean(0), v - v.mean(0)
        return (u * v).sum(0) / np.sqrt((u * u).sum(0) * (v * v).sum(0))
