"""Tests of mmlearn.interactions: PID (CVX), PID from samples, synergy bounds.

Every information quantity the tests compare against is recomputed here by
brute force (explicit sums over the table), independently of the library.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mmlearn.interactions import PIDResult, pid, pid_from_samples

TOL = 1e-3  # bits


# --------------------------------------------------------------------------------------
# Independent brute-force information measures (bits)
# --------------------------------------------------------------------------------------


def bf_mi(p_ab: np.ndarray) -> float:
    """I(A;B) = sum_{a,b} p(a,b) log2 p(a,b) / (p(a) p(b)), by explicit loops."""
    pa = [sum(p_ab[i, j] for j in range(p_ab.shape[1])) for i in range(p_ab.shape[0])]
    pb = [sum(p_ab[i, j] for i in range(p_ab.shape[0])) for j in range(p_ab.shape[1])]
    total = 0.0
    for i in range(p_ab.shape[0]):
        for j in range(p_ab.shape[1]):
            if p_ab[i, j] > 0:
                total += p_ab[i, j] * math.log2(p_ab[i, j] / (pa[i] * pb[j]))
    return total


def bf_infos(p: np.ndarray) -> tuple[float, float, float]:
    """I(X1;Y), I(X2;Y), I(X1,X2;Y)."""
    n1, n2, ny = p.shape
    joint = np.array([[p[a, b, y] for y in range(ny)] for a in range(n1) for b in range(n2)])
    return bf_mi(p.sum(axis=1)), bf_mi(p.sum(axis=0)), bf_mi(joint)


def table(f, n1: int = 2, n2: int = 2, ny: int = 2) -> np.ndarray:
    """Uniform (x1, x2), y = f(x1, x2)."""
    p = np.zeros((n1, n2, ny))
    for a, b in itertools.product(range(n1), range(n2)):
        p[a, b, f(a, b)] += 1.0 / (n1 * n2)
    return p


def redundant() -> np.ndarray:
    p = np.zeros((2, 2, 2))
    p[0, 0, 0] = p[1, 1, 1] = 0.5
    return p


def random_p(rng: np.random.Generator, shape=None, sparse: bool = False) -> np.ndarray:
    shape = shape or tuple(int(s) for s in rng.integers(2, 5, size=3))
    p = rng.dirichlet(np.full(int(np.prod(shape)), 0.5)).reshape(shape)
    if sparse:
        p = p * (rng.random(shape) < 0.6)
        p = p / p.sum()
    return p


EXACT = {
    # name: (p, (R, U1, U2, S)) -- the classic BROJA values (method-notes section 1)
    "and": (table(lambda a, b: a & b), (0.311278, 0.0, 0.0, 0.5)),
    "or": (table(lambda a, b: a | b), (0.311278, 0.0, 0.0, 0.5)),
    "xor": (table(lambda a, b: a ^ b), (0.0, 0.0, 0.0, 1.0)),
    "unique1": (table(lambda a, b: a), (0.0, 1.0, 0.0, 0.0)),
    "redundant": (redundant(), (1.0, 0.0, 0.0, 0.0)),
}


# --------------------------------------------------------------------------------------
# pid on exact distributions
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXACT))
def test_pid_exact_tables(name):
    p, want = EXACT[name]
    r = pid(p)
    assert isinstance(r, PIDResult)
    got = (r.redundancy, r.unique1, r.unique2, r.synergy)
    assert got == pytest.approx(want, abs=TOL), f"{name}: got {got}, want {want}"
    assert r.total == pytest.approx(bf_infos(p)[2], abs=1e-9)


def test_and_redundancy_is_the_closed_form():
    # BROJA redundancy of AND: I(X1;Y) = I(X2;Y) = 1.5 - 0.75 log2 3 and U1 = U2 = 0, so R = I(X1;Y).
    assert pid(EXACT["and"][0]).redundancy == pytest.approx(1.5 - 0.75 * math.log2(3), abs=TOL)


def test_pid_result_is_frozen():
    r = pid(EXACT["xor"][0])
    with pytest.raises(Exception):
        r.synergy = 0.0  # type: ignore[misc]
    assert set(r.as_dict()) == {"redundancy", "unique1", "unique2", "synergy", "total"}


# --------------------------------------------------------------------------------------
# pid on random distributions: identities, nonnegativity, symmetry, optimality
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_pid_identities_on_random_distributions(seed):
    rng = np.random.default_rng(seed)
    p = random_p(rng, sparse=seed % 3 == 2)
    i1, i2, i12 = bf_infos(p)
    r = pid(p)
    terms = (r.redundancy, r.unique1, r.unique2, r.synergy)
    assert min(terms) >= -1e-9
    assert sum(terms) == pytest.approx(i12, abs=TOL)
    assert r.total == pytest.approx(i12, abs=1e-9)
    assert r.redundancy + r.unique1 == pytest.approx(i1, abs=TOL)
    assert r.redundancy + r.unique2 == pytest.approx(i2, abs=TOL)
    # swapping the modalities swaps the unique terms and keeps R and S
    s = pid(p.transpose(1, 0, 2))
    assert (s.redundancy, s.unique1, s.unique2, s.synergy) == pytest.approx(
        (r.redundancy, r.unique2, r.unique1, r.synergy), abs=TOL
    )


def _grid_min_iq(p: np.ndarray, n: int = 801) -> float:
    """min I_q(X1,X2;Y) over Delta_p for binary X1, X2, by brute-force grid search.

    For each y, a 2x2 table q(., .|y) with fixed row and column sums has one free
    entry t = q(0,0,y) in [max(0, r0 - c1), min(r0, c0)]; the grid covers both.
    """
    py = p.sum(axis=(0, 1))
    grids = []
    for y in range(2):
        r0, c0 = p[0, :, y].sum(), p[:, 0, y].sum()
        c1 = p[:, 1, y].sum()
        lo, hi = max(0.0, r0 - c1), min(r0, c0)
        t = np.linspace(lo, hi, n)
        grids.append(np.stack([t, r0 - t, c0 - t, py[y] - r0 - c0 + t], axis=-1).clip(0))  # q00 q01 q10 q11
    q0 = grids[0][:, None, :]  # y = 0, varies on axis 0
    q1 = grids[1][None, :, :]  # y = 1, varies on axis 1
    qab = q0 + q1

    # I_q(X1X2;Y) = sum q log q/(q(ab) p(y))
    with np.errstate(divide="ignore", invalid="ignore"):
        t0 = np.where(q0 > 0, q0 * np.log2(q0 / (qab * py[0])), 0.0)
        t1 = np.where(q1 > 0, q1 * np.log2(q1 / (qab * py[1])), 0.0)
    return float((t0 + t1).sum(axis=-1).min())


@pytest.mark.parametrize("seed", range(5))
def test_pid_minimum_matches_brute_force_grid_on_binary(seed):
    rng = np.random.default_rng(100 + seed)
    p = random_p(rng, shape=(2, 2, 2))
    r = pid(p)
    iq_star = r.total - r.synergy
    assert iq_star == pytest.approx(_grid_min_iq(p), abs=TOL)


def test_pid_ten_cubed_runs():
    p = np.random.default_rng(0).dirichlet(np.ones(1000)).reshape(10, 10, 10)
    r = pid(p)
    assert sum(r.as_dict()[k] for k in ("redundancy", "unique1", "unique2", "synergy")) == pytest.approx(r.total, abs=TOL)


# --------------------------------------------------------------------------------------
# pid: boundary errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((2, 2), 0.25), "3-D"),
        (np.full((2, 2, 2), 0.2), "sum to 1"),
        (np.array([[[0.5, -0.25], [0.25, 0.25]], [[0.25, 0.0], [0.0, 0.0]]]), "nonnegative"),
        (np.array([[[np.nan, 0.25], [0.25, 0.25]], [[0.25, 0.0], [0.0, 0.0]]]), "NaN"),
        (np.zeros((0, 2, 2)), "empty"),
    ],
)
def test_pid_rejects_bad_distributions(bad, match):
    with pytest.raises(ValueError, match=match):
        pid(bad)


def test_pid_rejects_non_numeric():
    with pytest.raises(TypeError, match="numeric"):
        pid([[["a", "b"]]])


# --------------------------------------------------------------------------------------
# pid_from_samples
# --------------------------------------------------------------------------------------


def test_pid_from_samples_discrete_matches_exact_pid():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 20000), rng.integers(0, 2, 20000)
    r = pid_from_samples(a, b, a & b)
    assert (r.redundancy, r.unique1, r.unique2, r.synergy) == pytest.approx((0.311, 0.0, 0.0, 0.5), abs=0.01)


def test_pid_from_samples_clusters_continuous_features():
    rng = np.random.default_rng(1)
    n = 2000
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    centres = np.array([[-3.0, 0.0, 1.0], [3.0, 1.0, -2.0]])
    x1 = centres[a] + 0.3 * rng.standard_normal((n, 3))
    x2 = centres[b] + 0.3 * rng.standard_normal((n, 3))
    r = pid_from_samples(x1, x2, a ^ b, n_clusters=2, seed=0)
    assert r.synergy == pytest.approx(1.0, abs=0.02)
    assert max(r.redundancy, r.unique1, r.unique2) < 0.02


def test_pid_from_samples_bias_shrinks_with_n():
    # x1, x2, y independent: every true term is 0, so the plug-in total is pure bias,
    # about (|X1||X2| - 1)(|Y| - 1) / (2 N ln 2) bits.
    def mean_total(n):
        out = []
        for seed in range(3):
            rng = np.random.default_rng(seed)
            out.append(pid_from_samples(rng.integers(0, 4, n), rng.integers(0, 4, n), rng.integers(0, 2, n)).total)
        return float(np.mean(out))

    small, large = mean_total(100), mean_total(10000)
    assert small > 0.03  # ~15 / (200 ln 2) = 0.11 expected
    assert large < 0.01
    assert large < small / 5


def test_pid_from_samples_errors():
    x = np.arange(10) % 2
    with pytest.raises(ValueError, match="paired"):
        pid_from_samples(x, x[:5], x)
    with pytest.raises(TypeError, match="integer labels"):
        pid_from_samples(x, x, x.astype(float) + 0.5)
    with pytest.raises(ValueError, match="n_clusters"):
        pid_from_samples(np.random.default_rng(0).standard_normal((5, 2)), x[:5], x[:5], n_clusters=8)
    with pytest.raises(ValueError, match="n_clusters"):
        pid_from_samples(x, x, x, n_clusters=0)
    with pytest.raises(ValueError, match="NaN"):
        pid_from_samples(np.full((10, 2), np.nan), x, x, n_clusters=2)


# --------------------------------------------------------------------------------------
# synergy_bounds (Liang et al., ICLR 2024)
# --------------------------------------------------------------------------------------

from mmlearn.interactions import SynergyBounds, pairwise_marginals, synergy_bounds  # noqa: E402


@pytest.mark.parametrize("seed", range(30))
def test_synergy_bounds_contain_true_synergy(seed):
    rng = np.random.default_rng(1000 + seed)
    p = random_p(rng, sparse=seed % 3 == 2)
    s = pid(p).synergy
    b = synergy_bounds(*pairwise_marginals(p))
    assert isinstance(b, SynergyBounds)
    assert b.lower - TOL <= s <= b.upper + TOL, (b, s)
    assert b.lower >= 0.0
    # the components that need no labelled multimodal data equal the full PID's
    r = pid(p)
    assert (b.redundancy, b.unique1, b.unique2) == pytest.approx((r.redundancy, r.unique1, r.unique2), abs=TOL)
    # S_R and S_U1 are algebraically equal (R + U1 = I(X1;Y)) when correctly paired
    assert b.lower_redundancy == pytest.approx(b.lower_unique1, abs=TOL)


@pytest.mark.parametrize(
    "name, lower, upper",
    [("xor", 0.0, 1.0), ("unique1", 0.0, 0.0), ("redundant", 0.0, 0.0), ("and", 0.311278, 0.5), ("or", 0.311278, 0.5)],
)
def test_synergy_bounds_on_exact_tables(name, lower, upper):
    p, want = EXACT[name]
    b = synergy_bounds(*pairwise_marginals(p))
    assert (b.lower, b.upper) == pytest.approx((lower, upper), abs=TOL)
    assert b.lower - TOL <= want[3] <= b.upper + TOL


def test_uniqueness_bound_pairs_u1_with_x1():
    # y = x1: S = 0, U1 = 1, U2 = 0. The correct pairing min I(X1;Y|X2) - U1 gives 0 <= S;
    # the published code's pairing (min I(X1;Y|X2) - U2) gives 1 > S: not a bound.
    p = EXACT["unique1"][0]
    b = synergy_bounds(*pairwise_marginals(p))
    min_cond = b.lower_unique1 + b.unique1  # min_r I_r(X1;Y|X2)
    assert min_cond == pytest.approx(1.0, abs=TOL)
    assert b.lower_unique1 == pytest.approx(0.0, abs=TOL)
    assert min_cond - b.unique2 == pytest.approx(1.0, abs=TOL)  # swapped pairing: 1 bit > S = 0
    assert pid(p).synergy < min_cond - b.unique2 - 0.5
    # the same on the mirrored table y = x2 for the second uniqueness bound
    b2 = synergy_bounds(*pairwise_marginals(p.transpose(1, 0, 2)))
    assert b2.lower_unique2 == pytest.approx(0.0, abs=TOL)
    assert b2.unique2 == pytest.approx(1.0, abs=TOL)


def test_majorization_meet_is_a_coupling_entropy_lower_bound():
    from mmlearn.interactions.bounds import majorization_meet_entropy

    rng = np.random.default_rng(7)
    for _ in range(20):
        m = rng.dirichlet(np.full(12, 0.3)).reshape(3, 4)  # any coupling of its row and column sums
        assert majorization_meet_entropy(m.sum(1), m.sum(0)) <= -(m[m > 0] * np.log2(m[m > 0])).sum() + 1e-9
    assert majorization_meet_entropy([0.5, 0.5], [0.25] * 4) == pytest.approx(2.0)


def test_synergy_bounds_reject_inconsistent_marginals():
    p1y, p2y, p12 = pairwise_marginals(EXACT["and"][0])
    with pytest.raises(ValueError, match=r"p\(x1\)"):
        synergy_bounds(p1y, p2y, np.array([[0.5, 0.25], [0.25, 0.0]]))
    with pytest.raises(ValueError, match=r"\|Y\|"):
        synergy_bounds(p1y, np.full((2, 3), 1 / 6), p12)
    with pytest.raises(ValueError, match="2-D"):
        synergy_bounds(p1y, p2y, EXACT["and"][0])
    with pytest.raises(ValueError, match="sum to 1"):
        synergy_bounds(p1y * 2, p2y, p12)
