"""Property-based tests (hypothesis) of the fusion contract, for every registered fusion.

For random batch sizes (1 included), widths, numbers of modalities, parameter
and input dtypes, presence patterns and NaN/inf placements, a call either
raises the documented error (``TypeError`` for integer/bool inputs,
``ValueError`` naming the modality for NaN/inf in a present row), or returns a
finite ``(B, out_dim)`` output that

- does not depend on what absent rows hold (NaN, inf, 1e30 or zeros give the
  same numbers, exactly: absent rows are replaced before any arithmetic), and
- in eval mode does not depend on the other rows of the batch (each row alone,
  and the batch shuffled, give the same numbers up to rounding).

DEQ fusion: a sample that does not reach the solver's tolerance within
``max_iter`` is still finite and independent of absent rows, but its last
iterate is not a fixed point, so rounding differences between batch sizes can
move it (the map is chaotic there); only converged samples are compared alone.
"""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmlearn.fusion import FUSIONS, make_fusion

NAMES = sorted(FUSIONS)

#: small settings so that each example runs in milliseconds
OPTIONS = {
    "cross_attention": {"dim": 8, "heads": 2, "tokens": 2},
    "deq": {"max_iter": 20},
}

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same examples on every run and every machine
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

POISON = st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -1e30])


@st.composite
def cases(draw, allow_errors=True):
    """A fusion's construction arguments, a batch, a presence mask, and what to put where."""
    n_mod = draw(st.integers(2, 3))
    dims = {f"m{i}": draw(st.integers(1, 6)) for i in range(n_mod)}
    batch = draw(st.integers(1, 6))
    out_dim = draw(st.sampled_from([2, 4, 8]))
    param_dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    input_kind = draw(st.sampled_from(["float32", "float64"] + (["int64", "bool"] if allow_errors else [])))
    present = {m: torch.tensor(draw(st.lists(st.booleans(), min_size=batch, max_size=batch))) for m in dims}
    poison = draw(POISON)
    # with allow_errors: sometimes one cell of a present row holds NaN/inf
    bad_present = None
    if allow_errors and draw(st.booleans()) and draw(st.booleans()):
        m = draw(st.sampled_from(sorted(dims)))
        rows = present[m].nonzero().flatten().tolist()
        if rows:
            bad_present = (m, draw(st.sampled_from(rows)), draw(st.integers(0, dims[m] - 1)),
                           draw(st.sampled_from([math.nan, math.inf, -math.inf])))
    seed = draw(st.integers(0, 2**16))
    return dict(dims=dims, batch=batch, out_dim=out_dim, param_dtype=param_dtype, input_kind=input_kind,
                present=present, poison=poison, bad_present=bad_present, seed=seed)


def _build(name, case):
    torch.manual_seed(case["seed"])
    return make_fusion(name, case["dims"], case["out_dim"], **OPTIONS.get(name, {})).to(case["param_dtype"])


def _inputs(case):
    g = torch.Generator().manual_seed(case["seed"])
    x = {m: torch.randn(case["batch"], d, generator=g, dtype=torch.float64) for m, d in case["dims"].items()}
    clean = {m: torch.where(case["present"][m].unsqueeze(1), v, torch.zeros_like(v)) for m, v in x.items()}
    poisoned = {m: torch.where(case["present"][m].unsqueeze(1), v, torch.full_like(v, case["poison"]))
                for m, v in x.items()}
    return x, clean, poisoned


def _rows(d, idx):
    return {m: v[idx] for m, v in d.items()}


def _tolerance(case):
    return (1e-9, 1e-9) if case["param_dtype"] == torch.float64 else (1e-4, 1e-5)


def _comparable_rows(name, f, case):
    """Rows whose eval output is a deterministic function of the row alone (all, except unconverged DEQ rows)."""
    if name == "deq":
        return f.last_info["converged"].nonzero().flatten().tolist()
    return list(range(case["batch"]))


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(case=cases())
def test_error_or_finite_output_independent_of_absent_rows_and_other_rows(name, case):
    f = _build(name, case).eval()
    x, clean, poisoned = _inputs(case)
    present = case["present"]
    if case["input_kind"] in ("int64", "bool"):
        dtype = torch.long if case["input_kind"] == "int64" else torch.bool
        with pytest.raises(TypeError, match="floating-point"):
            f({m: v.round().to(dtype) for m, v in x.items()}, present)
        return
    dtype = torch.float32 if case["input_kind"] == "float32" else torch.float64
    if case["bad_present"] is not None:
        m, row, col, value = case["bad_present"]
        bad = {k: v.to(dtype).clone() for k, v in poisoned.items()}
        bad[m][row, col] = value
        with pytest.raises(ValueError, match=rf"\['{m}'\] holds NaN or inf"):
            f(bad, present)
        return
    with torch.no_grad():
        out = f({m: v.to(dtype) for m, v in poisoned.items()}, present)
        assert out.shape == (case["batch"], case["out_dim"])
        assert out.dtype == case["param_dtype"]
        assert torch.isfinite(out).all()
        # absent rows: what they hold never matters, not even in the last bit
        assert torch.equal(out, f({m: v.to(dtype) for m, v in clean.items()}, present))
        assert torch.equal(out, f({m: v.to(dtype) for m, v in x.items()}, present))
        rows = _comparable_rows(name, f, case)
        rtol, atol = _tolerance(case)
        # each row alone gives the same output
        for i in rows:
            alone = f({m: v[i : i + 1].to(dtype) for m, v in poisoned.items()}, _rows(present, slice(i, i + 1)))
            torch.testing.assert_close(alone, out[i : i + 1], rtol=rtol, atol=atol)
        # and so does the shuffled batch
        perm = torch.randperm(case["batch"], generator=torch.Generator().manual_seed(case["seed"]))
        shuffled = f({m: v[perm].to(dtype) for m, v in poisoned.items()}, _rows(present, perm))
        inverse = torch.argsort(perm)
        torch.testing.assert_close(shuffled[inverse][rows], out[rows], rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(case=cases(allow_errors=False))
def test_training_mode_output_and_gradients_ignore_absent_rows(name, case):
    f = _build(name, case).train()
    _, clean, poisoned = _inputs(case)
    torch.manual_seed(case["seed"])  # EmbraceNet draws in training: the same draws for both calls
    out = f(poisoned, case["present"])
    torch.manual_seed(case["seed"])
    ref = f(clean, case["present"])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    out.sum().backward()
    for n, p in f.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {n}"
