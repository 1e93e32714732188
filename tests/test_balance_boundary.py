"""mmlearn.balance at its boundary: numeric options (NaN/inf/negative/bool), diverging runs, empty or
non-finite data for the probes."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from mmlearn._checks import NonFiniteLossError
from mmlearn.balance import (
    AGM,
    OGMGE,
    AttributionRegularizer,
    CompetitionRegularizer,
    MMPareto,
    UniModalTeacher,
    attribution_penalty,
    competition_strength_from_features,
    min_norm_2,
    ogm_coefficients,
    pareto_combine,
    probe_accuracy_from_features,
)
from mmlearn.experiments.balance import (
    balance_model,
    make_imbalanced,
    run_balance_grid,
    train_balanced,
    train_unimodal,
)
from mmlearn.balance.probes import encoder_features
from mmlearn.data import Batch, to_batch
from mmlearn.models import MLPEncoder


@pytest.fixture(scope="module")
def small():
    b = to_batch(make_imbalanced(400, seed=3))
    return b.index(slice(0, 256)), b.index(slice(256, None))


BAD = [(float("nan"), ValueError), (float("inf"), ValueError), (-1.0, ValueError), (True, TypeError),
       (None, TypeError)]

_RNG = np.random.default_rng(0)
_F = _RNG.standard_normal((40, 3))
_Y = np.arange(40) % 2

OPTIONS = {
    "OGMGE.alpha": lambda v: OGMGE(v),
    "OGMGE.seed": lambda v: OGMGE(1.0, seed=v),
    "ogm_coefficients.alpha": lambda v: ogm_coefficients({"a": 1.0, "b": 2.0}, v),
    "AGM.alpha": lambda v: AGM(balance_model(seed=0), v),
    "AGM.max_exponent": lambda v: AGM(balance_model(seed=0), 1.0, max_exponent=v),
    "MMPareto.gamma": lambda v: MMPareto(v),
    "MMPareto.unimodal_weight": lambda v: MMPareto(1.5, unimodal_weight=v),
    "min_norm_2.eps": lambda v: min_norm_2(torch.ones(2), -torch.ones(2), eps=v),
    "pareto_combine.gamma": lambda v: pareto_combine(torch.ones(2), torch.ones(2), (0.5, 0.5), gamma=v),
    "MCR.weight": lambda v: CompetitionRegularizer(v),
    "MCR.game": lambda v: CompetitionRegularizer(0.1, game=v),
    "MCR.num_permutations": lambda v: CompetitionRegularizer(0.1, num_permutations=v),
    "UMT.weight": lambda v: UniModalTeacher({"x1": MLPEncoder(16, 4)}, weight=v),
    "Attribution.weight": lambda v: AttributionRegularizer(v),
    "probe.C": lambda v: probe_accuracy_from_features(_F, _Y, _F, _Y, C=v),
    "competition_strength.alpha": lambda v: competition_strength_from_features(_F, _F[:, :2], _F, _F[:, :2], alpha=v),
    "make_imbalanced.noise_weak": lambda v: make_imbalanced(10, noise_weak=v),
    "balance_model.feature_dim": lambda v: balance_model(feature_dim=v),
    "train_balanced.alpha": lambda v: train_balanced("joint", v, *_tiny(), epochs=1),
    "train_balanced.lr": lambda v: train_balanced("joint", 0.0, *_tiny(), epochs=1, lr=v),
    "train_balanced.epochs": lambda v: train_balanced("joint", 0.0, *_tiny(), epochs=v),
    "train_unimodal.batch_size": lambda v: train_unimodal(*_tiny(), epochs=1, batch_size=v),
}
INTEGER = {"OGMGE.seed", "MCR.num_permutations", "balance_model.feature_dim", "train_balanced.epochs",
           "train_unimodal.batch_size"}


def _tiny():
    b = to_batch(make_imbalanced(40, seed=1))
    return b.index(slice(0, 24)), b.index(slice(24, None))


@pytest.mark.parametrize("bad,err", BAD, ids=["nan", "inf", "negative", "bool", "None"])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_numeric_options_reject_nan_inf_negative_and_bool(name, bad, err):
    if name in INTEGER and isinstance(bad, float) and not math.isfinite(bad):
        err = TypeError  # NaN/inf is not a whole number
    if name == "MCR.game" and bad == -1.0:
        assert OPTIONS[name](bad).k == -1.0  # any finite k is a game; -1 is the greedy one
        return
    with pytest.raises(err):
        OPTIONS[name](bad)


def test_numeric_option_messages_name_the_option():
    with pytest.raises(ValueError, match="alpha must be finite, got nan"):
        OGMGE(float("nan"))
    with pytest.raises(ValueError, match="alpha must be finite, got nan"):
        AGM(balance_model(seed=0), float("nan"))
    with pytest.raises(ValueError, match="gamma must be finite, got nan"):
        MMPareto(float("nan"))
    with pytest.raises(ValueError, match="game must be finite, got nan"):
        CompetitionRegularizer(0.1, game=float("nan"))
    model = balance_model(seed=0)
    b = Batch({"x1": torch.randn(4, 16), "x2": torch.randn(4, 32)}, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target\['x1'\] must be >= 0.0"):
        attribution_penalty(model, model.forward_all(b.inputs), b, target={"x1": -1.0})
    # valid values still pass: a number k for the game, alpha = 0
    assert CompetitionRegularizer(0.1, game=-0.5).k == -0.5
    assert OGMGE(0.0).alpha == 0.0


def test_agm_huge_alpha_gives_infinite_not_overflow_error():
    agm = AGM(balance_model(seed=0), alpha=1000.0)
    k = agm.coefficients({"x1": 5.0, "x2": 0.0})  # rbar = 1, r_1 = e^-5: exponent 1000 (1 - e^-5) > 709
    assert k["x1"] == math.inf and k["x2"] == 0.0


# ---------------------------------------------------------------- diverging runs


@pytest.mark.parametrize("method", ["joint", "ogm_ge", "agm", "mcr"])
def test_a_diverging_balance_run_stops_with_the_epoch_and_step(small, method):
    train, test = small
    with pytest.raises(NonFiniteLossError, match=r"fit: the loss became (nan|inf) at epoch 1, step \d+"):
        train_balanced(method, 1.0, train, test, epochs=2, lr=3e3, seed=0)
    # a sane learning rate trains finite weights (so the error is the learning rate's doing)
    result = train_balanced(method, 1.0, train, test, epochs=1, lr=0.05, seed=0)
    assert all(torch.isfinite(p).all() for p in result["model"].parameters())


def test_a_diverging_balance_run_can_warn_and_skip(small):
    train, test = small
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_balanced("agm", 1.0, train, test, epochs=2, lr=3e3, seed=0, on_nonfinite="warn")
    assert any("update was skipped" in str(w.message) for w in caught)
    assert all(torch.isfinite(p).all() for p in result["model"].parameters())
    with pytest.raises(ValueError, match="on_nonfinite"):
        train_balanced("joint", 0.0, train, test, epochs=1, on_nonfinite="ignore")


def test_a_diverging_unimodal_run_stops(small):
    train, test = small
    with pytest.raises(NonFiniteLossError, match=r"at epoch 1, step \d+"):
        train_unimodal(train, test, epochs=2, lr=1e3, seed=0)


def test_the_grid_checks_its_strengths_before_training(small):
    train, test = small
    with pytest.raises(ValueError, match=r"alphas\['ogm_ge'\] must be finite"):
        run_balance_grid(train, test, {"ogm_ge": [1.0, float("nan")]}, epochs=1)


# ---------------------------------------------------------------- probes: empty and non-finite data


def test_probes_refuse_empty_and_non_finite_data(small):
    train, _ = small
    model = balance_model(seed=0)
    with pytest.raises(ValueError, match="empty"):
        encoder_features(model, train.index(slice(0, 0)), "x1")
    bad = _F.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="train_features hold NaN or inf"):
        probe_accuracy_from_features(bad, _Y, _F, _Y)
    with pytest.raises(ValueError, match="joint_test holds NaN or inf"):
        competition_strength_from_features(_F, _F, bad, _F)
