"""The shared boundary rules of mmlearn._checks, which every module relies on."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmlearn._checks import (
    NonFiniteLossError,
    check_finite,
    check_finite_loss,
    check_float_input,
    check_number,
    check_present,
    fill_absent,
)

BAD = [float("nan"), float("inf"), float("-inf")]


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 6),
    width=st.integers(1, 4),
    mask_bits=st.lists(st.booleans(), min_size=6, max_size=6),
    poison=st.sampled_from(BAD + [1e30]),
)
def test_fill_absent_ignores_whatever_an_absent_row_holds(batch, width, mask_bits, poison):
    x = torch.randn(batch, width, 2, generator=torch.Generator().manual_seed(batch * 7 + width))
    present = torch.tensor(mask_bits[:batch])
    poisoned = torch.where(present.reshape(-1, 1, 1), x, torch.full_like(x, poison))
    out = fill_absent(poisoned, present, value=-3.0)
    assert torch.isfinite(out).all()
    # present rows untouched, absent rows all equal to the fill value
    assert torch.equal(out[present], x[present])
    assert torch.equal(out[~present], torch.full_like(x[~present], -3.0))
    # and multiplying by the mask would NOT have done this: the reason for the rule
    if not bool(present.all()) and poison != 1e30:
        assert not torch.isfinite(poisoned * present.reshape(-1, 1, 1)).all()


def test_fill_absent_takes_a_row_vector_as_fill():
    x = torch.full((3, 2), float("nan"))
    emb = torch.tensor([1.0, 2.0])
    out = fill_absent(x, torch.tensor([False, False, False]), emb)
    assert torch.equal(out, emb.expand(3, 2))


def test_check_finite_names_the_modality_and_rows_and_skips_absent_rows():
    x = torch.zeros(4, 3)
    x[2, 1] = float("inf")
    with pytest.raises(ValueError, match=r"audio.*1 present row.*\[2\]"):
        check_finite({"audio": x})
    check_finite({"audio": x}, {"audio": torch.tensor([True, True, False, True])})  # row 2 absent: fine


def test_check_float_input_converts_floats_and_rejects_ints_and_bools():
    x64 = torch.randn(2, 3, dtype=torch.float64)
    out = check_float_input(x64, "image")
    assert out.dtype == torch.float32 and torch.allclose(out.double(), x64, atol=1e-6)
    for bad in (torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 3, dtype=torch.bool)):
        with pytest.raises(TypeError, match=r"image.*dtype torch\.(int64|bool).*floating"):
            check_float_input(bad, "image")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, "a", None, True])
def test_check_number_rejects_nan_inf_out_of_range_and_non_numbers(value):
    with pytest.raises((ValueError, TypeError), match="alpha"):
        check_number(value, "alpha", low=0.0)


def test_check_number_bounds_and_integers():
    assert check_number(0.0, "x", low=0.0) == 0.0
    with pytest.raises(ValueError, match="> 0"):
        check_number(0.0, "x", low=0.0, low_open=True)
    assert check_number(4, "heads", low=1, integer=True) == 4
    with pytest.raises(ValueError, match=">= 1"):
        check_number(0, "heads", low=1, integer=True)
    with pytest.raises(TypeError, match="whole number"):
        check_number(2.5, "heads", integer=True)
    with pytest.raises(ValueError, match="<= 1"):
        check_number(1.5, "p", low=0, high=1)


def test_check_present_rejects_fractional_masks_but_accepts_0_1():
    with pytest.raises(ValueError, match=r"present\['x'\].*True/False"):
        check_present({"x": torch.tensor([0.5, 1.0])}, ["x"], 2)
    out = check_present({"x": torch.tensor([0, 1])}, ["x", "y"], 2)
    assert out["x"].tolist() == [False, True] and out["y"].tolist() == [True, True]


def test_check_finite_loss_raises_with_epoch_and_step_or_warns():
    assert check_finite_loss(torch.tensor(0.3), epoch=1, step=2)
    with pytest.raises(NonFiniteLossError, match=r"epoch 3, step 17"):
        check_finite_loss(torch.tensor(math.inf), epoch=3, step=17)
    assert issubclass(NonFiniteLossError, FloatingPointError)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_finite_loss(torch.tensor(math.nan), epoch=1, step=0, on_nonfinite="warn") is False
    assert any("skipped" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="on_nonfinite"):
        check_finite_loss(torch.tensor(1.0), epoch=0, step=0, on_nonfinite="ignore")


def test_check_number_takes_numpy_and_torch_scalars_but_not_strings():
    import numpy as np

    assert check_number(np.int64(3), "k", low=1, integer=True) == 3
    assert check_number(np.float32(0.5), "p", low=0, high=1) == 0.5
    assert check_number(torch.tensor(2), "k", integer=True) == 2
    for bad in ("0.4", np.bool_(True), torch.tensor(True)):
        with pytest.raises(TypeError, match="p must be"):
            check_number(bad, "p")


def test_check_finite_accepts_an_empty_batch():
    check_finite({"x": torch.zeros(0, 3, 2)})
