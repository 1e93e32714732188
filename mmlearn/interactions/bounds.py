"""Label-free bounds on synergy (Liang et al., ICLR 2024; survey Eq. 8), in bits.

Liang, Ling, Cheng, Obolenskiy, Liu, Pandey, Wilf, Morency, Salakhutdinov,
"Multimodal Learning Without Labeled Multimodal Data: Guarantees and
Applications", ICLR 2024 (arXiv 2306.04539). The setting: labelled unimodal
data give p(x1, y) and p(x2, y), unlabelled multimodal data give p(x1, x2), and
no labelled multimodal data give p(x1, x2, y). R, U1 and U2 of the BROJA PID
depend on p(x1, y) and p(x2, y) only (Delta_p is defined by them), so they are
computable here; synergy S is not, but it is bounded.

Lower bounds. Every joint with the three known pairwise marginals is a
candidate for p. By the chain rule I_p(X1;Y|X2) = I_p(X1;X2,Y) - I(X1;X2), and
in the PID I(X1;Y|X2) = U1 + S, hence

    S = I_p(X1; X2,Y) - I(X1;X2) - U1
      >= min_r I_r(X1; X2,Y) - I(X1;X2) - U1            =: lower_unique1 (S_U, paper)
    with r over joints of (x1, x2, y) with r(x1,x2) = p(x1,x2), r(x1,y) = p(x1,y).

min_r I_r(X1; X2,Y) is the same convex program as the PID (target X1, sources
X2 and Y), i.e. max_r H_r(X1|X2,Y), as in the paper's code. The symmetric
``lower_unique2`` pairs I(X2;Y|X1) with U2. The redundancy-based form (S_R,
paper) starts from the co-information identity R - S = I(X1;X2) - I(X1;X2|Y):

    S >= R - I(X1;X2) + min_r I_r(X1;X2|Y)              =: lower_redundancy

with the same r; since min_r I_r(X1;X2|Y) = min_r I_r(X1;X2,Y) - I(X1;Y) and
R + U1 = I(X1;Y), it equals ``lower_unique1`` (both are reported; a test checks
they agree). Pairing: the published ``bounds/bounds.py`` stores u1 under the
key 'U2' and u2 under 'U1', so its ``lower_U1`` subtracts U2; on y = x1 that
gives 1 bit while S = 0, i.e. it is not a bound. Here I(X1;Y|X2) is paired with
U1, as the derivation requires.

Upper bound. I_p(X1,X2;Y) = H(X1,X2) + H(Y) - H(X1,X2,Y), and p(x1,x2,y) is a
coupling of {p(x1,x2), p(y)}, of {p(x1,y), p(x2)} and of {p(x2,y), p(x1)}. Its
entropy is at least that of the meet of each pair in the majorisation lattice
(its entries are majorised by both marginals; Cicalese, Gargano, Vaccaro 2019),
whose cumulative sorted sums are the pointwise minimum of the two cumulative
sums. With H_min the largest of the three,

    S <= H(X1,X2) + H(Y) - H_min - R - U1 - U2           =: upper.

Simplifications: the disagreement-based lower bound of the paper (which needs
trained unimodal classifiers) is not implemented; ``lower`` is
max(0, lower_unique1, lower_unique2) (S >= 0 always).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmlearn.interactions.pid import check_distribution, entropy_bits, min_mi_coupling, mutual_information_bits


@dataclass(frozen=True)
class SynergyBounds:
    """Lower and upper bounds on synergy and their components, in bits."""

    lower: float
    upper: float
    lower_redundancy: float
    lower_unique1: float
    lower_unique2: float
    coupling_entropy: float  # H_min: a lower bound on H(X1,X2,Y)
    redundancy: float
    unique1: float
    unique2: float


def pairwise_marginals(p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p(x1,y), p(x2,y), p(x1,x2)) of a joint p(x1,x2,y): the inputs of :func:`synergy_bounds`."""
    p = check_distribution(p)
    return p.sum(axis=1), p.sum(axis=0), p.sum(axis=2)


def majorization_meet_entropy(a, b) -> float:
    """Entropy (bits) of the meet of two distributions in the majorisation lattice.

    Sort each in decreasing order, pad with zeros to one length, and take the
    pointwise minimum of the cumulative sums; the increments form the meet (the
    minimum of two concave sequences is concave, so they are nonincreasing and
    nonnegative). Any coupling of ``a`` and ``b`` has at least this entropy.
    """
    a = np.sort(np.asarray(a, dtype=float).ravel())[::-1]
    b = np.sort(np.asarray(b, dtype=float).ravel())[::-1]
    n = max(a.size, b.size)
    a = np.pad(a, (0, n - a.size))
    b = np.pad(b, (0, n - b.size))
    cum = np.minimum(np.cumsum(a), np.cumsum(b))
    z = np.diff(np.concatenate([[0.0], cum])).clip(0.0)
    return entropy_bits(z / z.sum())


def _check_marginals(p_x1y, p_x2y, p_x1x2, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p_x1y = check_distribution(p_x1y, "p_x1y", ndim=2)
    p_x2y = check_distribution(p_x2y, "p_x2y", ndim=2)
    p_x1x2 = check_distribution(p_x1x2, "p_x1x2", ndim=2)
    if p_x1y.shape[1] != p_x2y.shape[1]:
        raise ValueError(f"p_x1y {p_x1y.shape} and p_x2y {p_x2y.shape} disagree on |Y|")
    if p_x1x2.shape != (p_x1y.shape[0], p_x2y.shape[0]):
        raise ValueError(
            f"p_x1x2 has shape {p_x1x2.shape}; expected (|X1|, |X2|) = ({p_x1y.shape[0]}, {p_x2y.shape[0]})"
        )
    for what, u, v in (
        ("p(y)", p_x1y.sum(0), p_x2y.sum(0)),
        ("p(x1)", p_x1y.sum(1), p_x1x2.sum(1)),
        ("p(x2)", p_x2y.sum(1), p_x1x2.sum(0)),
    ):
        gap = float(np.abs(u - v).max())
        if gap > tol:
            raise ValueError(f"the marginals disagree on {what} (max difference {gap:.3g} > {tol})")
    return p_x1y, p_x2y, p_x1x2


def synergy_bounds(p_x1y, p_x2y, p_x1x2, *, tol: float = 1e-6) -> SynergyBounds:
    """Lower and upper bounds on PID synergy from p(x1,y), p(x2,y) and p(x1,x2) only, in bits.

    Liang et al., ICLR 2024 (survey Eq. 8); equations and simplifications in the
    module docstring. For a full joint ``p`` use
    ``synergy_bounds(*pairwise_marginals(p))``. The three tables must agree on
    the shared marginals p(x1), p(x2), p(y) within ``tol``.

    Tight cases (tested): XOR (upper = S = 1), y = x1 and x1 = x2 = y (lower =
    upper = S = 0), AND (upper = S = 0.5, lower = 0.311).
    """
    from mmlearn._checks import check_number

    tol = float(check_number(tol, "tol", low=0.0))
    p_x1y, p_x2y, p_x1x2 = _check_marginals(p_x1y, p_x2y, p_x1x2, tol)
    i1 = mutual_information_bits(p_x1y)
    i2 = mutual_information_bits(p_x2y)
    i12 = mutual_information_bits(p_x1x2)

    # R, U1, U2 from the PID program on the label marginals.
    q = min_mi_coupling(p_x1y, p_x2y)
    iq = max(mutual_information_bits(q.reshape(-1, q.shape[2])), i1, i2)  # I_q* >= I(Xi;Y); snaps solver noise
    redundancy, unique1, unique2 = max(i1 + i2 - iq, 0.0), max(iq - i2, 0.0), max(iq - i1, 0.0)

    # min_r I_r(X1; X2,Y) with r(x2,x1), r(y,x1) fixed: r is (x2, y, x1).
    r1 = min_mi_coupling(p_x1x2.T, p_x1y.T)
    min_i1 = mutual_information_bits(r1.reshape(-1, r1.shape[2]))
    # min_r I_r(X2; X1,Y) with r(x1,x2), r(y,x2) fixed: r is (x1, y, x2).
    r2 = min_mi_coupling(p_x1x2, p_x2y.T)
    min_i2 = mutual_information_bits(r2.reshape(-1, r2.shape[2]))

    lower_unique1 = min_i1 - i12 - unique1  # min I_r(X1;Y|X2) - U1
    lower_unique2 = min_i2 - i12 - unique2  # min I_r(X2;Y|X1) - U2
    lower_redundancy = redundancy - i12 + (min_i1 - i1)  # R - I(X1;X2) + min I_r(X1;X2|Y)

    p_y, p_x1, p_x2 = p_x1y.sum(0), p_x1y.sum(1), p_x2y.sum(1)
    h_min = max(
        majorization_meet_entropy(p_x1x2, p_y),
        majorization_meet_entropy(p_x1y, p_x2),
        majorization_meet_entropy(p_x2y, p_x1),
    )
    upper = entropy_bits(p_x1x2) + entropy_bits(p_y) - h_min - redundancy - unique1 - unique2
    return SynergyBounds(
        lower=max(0.0, lower_unique1, lower_unique2),
        upper=float(upper),
        lower_redundancy=float(lower_redundancy),
        lower_unique1=float(lower_unique1),
        lower_unique2=float(lower_unique2),
        coupling_entropy=float(h_min),
        redundancy=float(redundancy),
        unique1=float(unique1),
        unique2=float(unique2),
    )
