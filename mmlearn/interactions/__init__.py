"""Multimodal interactions: partial information decomposition and its estimators,
label-free synergy bounds, and multimodal knowledge expansion.

- :func:`pid` -- BROJA PID of a discrete p(x1, x2, y) by a convex program
  (Liang et al., NeurIPS 2023, CVX estimator), in bits.
- :func:`pid_from_samples` -- the same on samples, continuous features clustered by k-means.
- :func:`pid_batch` -- the BATCH estimator for continuous features (no discretisation).
- :func:`synergy_bounds` -- lower and upper bounds on synergy from p(x1,y), p(x2,y)
  and p(x1,x2) only (Liang et al., ICLR 2024; survey Eq. 8).
- :func:`knowledge_expansion` -- MKE (Xue et al., ICCV 2021): a unimodal teacher
  pseudo-labels multimodal data for a regularised multimodal student.

cvxpy, scikit-learn and torch are imported inside the functions that need them,
so ``import mmlearn.interactions`` stays cheap.
"""

from mmlearn.interactions.bounds import SynergyBounds, pairwise_marginals, synergy_bounds
from mmlearn.interactions.pid import (
    PIDResult,
    entropy_bits,
    joint_histogram,
    mutual_information_bits,
    pid,
    pid_from_samples,
)

_LAZY = {
    "pid_batch": "mmlearn.interactions.batch",
    "sinkhorn_coupling": "mmlearn.interactions.batch",
    "KnowledgeExpansion": "mmlearn.interactions.mke",
    "knowledge_expansion": "mmlearn.interactions.mke",
    "make_two_moons_views": "mmlearn.interactions.mke",
    "semi_supervised_split": "mmlearn.interactions.mke",
}


def __getattr__(name):  # torch-based parts are imported on first use
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmlearn.interactions' has no attribute {name!r}")


__all__ = [
    "KnowledgeExpansion",
    "PIDResult",
    "SynergyBounds",
    "pairwise_marginals",
    "synergy_bounds",
    "entropy_bits",
    "joint_histogram",
    "knowledge_expansion",
    "make_two_moons_views",
    "mutual_information_bits",
    "pid",
    "pid_batch",
    "pid_from_samples",
    "semi_supervised_split",
    "sinkhorn_coupling",
]
