"""mmlearn.representation at its boundary: absent rows holding NaN/inf, dtypes, empty batches,
numeric options, diverging training, and property-based checks of the same rules."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmlearn._checks import NonFiniteLossError
from mmlearn.data import Batch
from mmlearn.representation import FactorizedModel, JointAutoencoder, MultimodalVAE, coherence, fit_representation, mmd

SMALL = {"a": (3,), "b": (2, 2)}


def _models():
    return {
        "ae-l1": JointAutoencoder(SMALL, 3, regularizer="l1", input_dropout=0.0),
        "ae-kl": JointAutoencoder(SMALL, 3, regularizer="kl", input_dropout=0.0),
        "ae-dropout": JointAutoencoder(SMALL, 3, regularizer="l1", input_dropout=0.5),
        "poe": MultimodalVAE(SMALL, 3, "poe"),
        "moe": MultimodalVAE(SMALL, 3, "moe"),
        "mope": MultimodalVAE(SMALL, 3, "mope"),
        "mope-all": MultimodalVAE(SMALL, 3, "mope", subset_prior="all"),
        "mfm": FactorizedModel(SMALL, 3, shared_dim=3, specific_dim=2),
    }


NAMES = list(_models())


def _model(name, seed=0):
    torch.manual_seed(seed)
    return _models()[name]


def _inputs(n=6, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, *s, generator=g, dtype=dtype) for m, s in SMALL.items()}


def _outputs(model, inputs, present, y, seed=0):
    """Every output the model offers: the objective (seeded noise) and its generations."""
    torch.manual_seed(seed)
    out = {"loss": model.objective(inputs, present, y)["loss"]}
    with torch.no_grad():
        if isinstance(model, FactorizedModel):
            out["logits"] = model(inputs, present)
            out.update({f"rec/{m}": v for m, v in model.reconstruct(inputs, present).items()})
        else:
            out.update({f"gen/{m}": v for m, v in model(inputs, present).items()})
            torch.manual_seed(seed)
            out["generate"] = model.generate(inputs, present, target_modality="b")
    return out


def _poison(inputs, present, value):
    """Put ``value`` into every absent row."""
    return {m: torch.where(present[m].reshape(-1, *([1] * (x.dim() - 1))), x, torch.full_like(x, value))
            for m, x in inputs.items()}


PRESENT = {"a": torch.tensor([1, 1, 0, 1, 0, 1], dtype=torch.bool),
           "b": torch.tensor([1, 0, 1, 1, 1, 0], dtype=torch.bool)}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e30])
@pytest.mark.parametrize("name", NAMES)
def test_absent_rows_holding_nan_or_inf_change_nothing(name, bad):
    model = _model(name).train()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    zeros = _poison(_inputs(), PRESENT, 0.0)
    want = _outputs(model, zeros, PRESENT, y)
    got = _outputs(model, _poison(zeros, PRESENT, bad), PRESENT, y)
    for k in want:
        assert torch.isfinite(got[k]).all(), k
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)  # bit-identical: absent rows unread
    # the gradients stay finite too (a NaN that is multiplied by 0 would poison them)
    model.zero_grad()
    torch.manual_seed(0)
    model.objective(_poison(zeros, PRESENT, bad), PRESENT, y)["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", NAMES)
def test_nan_or_inf_in_a_present_row_names_the_modality(name):
    model = _model(name)
    y = torch.zeros(6, dtype=torch.long)
    for bad in (float("nan"), float("inf")):
        x = _inputs()
        x["b"][3, 1, 0] = bad  # row 3 observes b
        with pytest.raises(ValueError, match=r"inputs\['b'\] holds NaN or inf in 1 present row\(s\) \(first: \[3\]\)"):
            model.objective(x, PRESENT, y)
        with pytest.raises(ValueError, match=r"\['b'\] holds NaN or inf"):
            model(x, PRESENT)


@pytest.mark.parametrize("name", NAMES)
def test_dtype_rule(name):
    model = _model(name).eval()
    y = torch.zeros(6, dtype=torch.long)
    x32 = _inputs()
    with torch.no_grad():
        torch.manual_seed(0)
        want = model.objective(x32, PRESENT, y)["loss"]
        for dtype in (torch.float64, torch.float16):
            torch.manual_seed(0)
            got = model.objective({m: v.to(dtype) for m, v in x32.items()}, PRESENT, y)["loss"]
            assert got.dtype == torch.float32
            # float64 -> float32 is exact here; float16 rounds the inputs (relative error <= 2^-11)
            torch.testing.assert_close(got, want, rtol=0 if dtype == torch.float64 else 1e-2, atol=1e-3)
    for bad in (torch.ones(6, 3, dtype=torch.long), torch.ones(6, 3, dtype=torch.bool),
                torch.ones(6, 3, dtype=torch.complex64)):
        with pytest.raises(TypeError, match=r"\['a'\] has dtype torch\.(int64|bool|complex64); expected a floating"):
            model.objective(dict(x32, a=bad), PRESENT, y)


def test_model_in_double_precision_takes_float32_inputs():
    torch.manual_seed(0)
    vae = MultimodalVAE(SMALL, 3, "mope").double()
    with torch.no_grad():
        z = vae.latent(_inputs())
    assert z.dtype == torch.float64 and torch.isfinite(z).all()


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_objective_is_a_clear_error(name):
    model = _model(name)
    empty = {m: torch.zeros(0, *s) for m, s in SMALL.items()}
    with pytest.raises(ValueError, match=r"the batch is empty \(0 rows\)"):
        model.objective(empty, None, torch.zeros(0, dtype=torch.long))


def test_empty_data_for_fit_and_coherence():
    model = _model("moe")
    empty = Batch({m: torch.zeros(0, *s) for m, s in SMALL.items()}, torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        fit_representation(model, empty, epochs=1)
    with pytest.raises(ValueError, match="empty"):
        coherence(model, empty, lambda x: torch.zeros(len(x), 3), source="a", target="b")


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch({m: torch.randn(n, *s, generator=g) for m, s in SMALL.items()}, torch.randint(0, 3, (n,), generator=g))


@pytest.mark.parametrize("name", ["ae-kl", "poe", "moe", "mope", "mfm"])
def test_a_diverging_run_stops_with_the_epoch_and_step(name):
    model = _model(name)
    with pytest.raises(NonFiniteLossError, match=r"fit_representation: the loss became (nan|inf) at epoch 1, step \d+"):
        fit_representation(model, _data(), epochs=3, batch_size=16, lr=1e12)
    # the same run with a sane learning rate is finite (so the error is the learning rate's doing)
    history = fit_representation(_model(name), _data(), epochs=1, batch_size=16, lr=1e-3)
    assert math.isfinite(history["loss"][0])


def test_a_diverging_run_can_warn_and_skip_the_updates():
    model = _model("mope")
    with pytest.warns(RuntimeWarning, match="update was skipped"):
        history = fit_representation(model, _data(), epochs=2, batch_size=16, lr=1e12, on_nonfinite="warn")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert len(history["loss"]) == 2
    with pytest.raises(ValueError, match="on_nonfinite"):
        fit_representation(model, _data(), epochs=1, on_nonfinite="ignore")


# ---------------------------------------------------------------- numeric options

BAD_NUMBERS = [(float("nan"), ValueError), (float("inf"), ValueError), (-1.0, ValueError), (True, TypeError),
               (None, TypeError)]


@pytest.mark.parametrize("bad,err", BAD_NUMBERS)
@pytest.mark.parametrize("build", [
    lambda v: JointAutoencoder(SMALL, 3, lam=v),
    lambda v: JointAutoencoder(SMALL, 3, input_dropout=v),
    lambda v: JointAutoencoder(SMALL, v),
    lambda v: MultimodalVAE(SMALL, 3, beta=v),
    lambda v: MultimodalVAE(SMALL, v),
    lambda v: MultimodalVAE(SMALL, 3, likelihood_scale={"a": v}),
    lambda v: FactorizedModel(SMALL, 3, lambda_mmd=v),
    lambda v: FactorizedModel(SMALL, 3, lambda_recon=v),
    lambda v: FactorizedModel(SMALL, 3, lambda_recon={"b": v}),
    lambda v: FactorizedModel(SMALL, 3, shared_dim=v),
    lambda v: MultimodalVAE(SMALL, 3, stats={"a": (0.0, v)}),
    lambda v: mmd(torch.zeros(3, 2), torch.ones(3, 2), bandwidth=v),
    lambda v: fit_representation(JointAutoencoder(SMALL, 3), _data(8), epochs=1, lr=v),
    lambda v: fit_representation(JointAutoencoder(SMALL, 3), _data(8), epochs=v),
    lambda v: fit_representation(JointAutoencoder(SMALL, 3), _data(8), epochs=1, batch_size=v),
    lambda v: fit_representation(JointAutoencoder(SMALL, 3), _data(8), epochs=1, weight_decay=v),
], ids=["ae.lam", "ae.input_dropout", "ae.latent_dim", "vae.beta", "vae.latent_dim", "vae.likelihood_scale",
        "mfm.lambda_mmd", "mfm.lambda_recon", "mfm.lambda_recon[b]", "mfm.shared_dim", "stats.std",
        "mmd.bandwidth", "fit.lr", "fit.epochs", "fit.batch_size", "fit.weight_decay"])
def test_numeric_options_reject_nan_inf_negative_and_bool(build, bad, err, request):
    integer = any(k in request.node.callspec.id for k in ("latent_dim", "shared_dim", "epochs", "batch_size"))
    if integer and isinstance(bad, float) and not math.isfinite(bad):
        err = TypeError  # an integer option: NaN/inf is not a whole number
    if bad is None and request.node.callspec.id.startswith("mmd."):
        assert torch.isfinite(build(None))  # None is mmd's default bandwidth
        return
    with pytest.raises(err):
        build(bad)


def test_numeric_options_error_messages_name_the_option():
    with pytest.raises(ValueError, match=r"stats\['a'\] mean must be finite"):
        MultimodalVAE(SMALL, 3, stats={"a": (float("nan"), 1.0)})
    with pytest.raises(ValueError, match="lam must be finite, got nan"):
        JointAutoencoder(SMALL, 3, lam=float("nan"))
    with pytest.raises(ValueError, match="beta must be finite"):
        MultimodalVAE(SMALL, 3, beta=float("inf"))
    with pytest.raises(ValueError, match=r"input_dropout must be < 1.0"):
        JointAutoencoder(SMALL, 3, input_dropout=1.0)
    with pytest.raises(ValueError, match=r"logvar_range\[1\] must be > -1.0"):
        MultimodalVAE(SMALL, 3, logvar_range=(-1.0, -2.0))
    with pytest.raises(TypeError, match="prior_expert must be True or False"):
        MultimodalVAE(SMALL, 3, prior_expert=1)
    with pytest.raises(ValueError, match=r"labels y must lie in \[0, 3\)"):
        FactorizedModel(SMALL, 3).objective(_inputs(2), None, torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="integer class indices"):
        FactorizedModel(SMALL, 3).objective(_inputs(2), None, torch.tensor([0.0, 1.0]))


# ---------------------------------------------------------------- property-based

_KINDS = ["ae-l1", "ae-kl", "poe", "moe", "mope", "mfm"]
_CACHE: dict = {}


def _cached(name):
    if name not in _CACHE:
        _CACHE[name] = _model(name).eval()
    return _CACHE[name]


@st.composite
def _cases(draw):
    n = draw(st.integers(1, 7))
    rows = {m: draw(st.lists(st.booleans(), min_size=n, max_size=n)) for m in SMALL}
    absent_fill = draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, 1e6]))
    present_bad = draw(st.sampled_from([None, float("nan"), float("inf")]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64]))
    seed = draw(st.integers(0, 2**16))
    return n, rows, absent_fill, present_bad, dtype, seed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(_KINDS), case=_cases())
def test_property_clear_error_or_finite_result_independent_of_absent_rows(name, case):
    n, rows, absent_fill, present_bad, dtype, seed = case
    model = _cached(name)
    present = {m: torch.tensor(r, dtype=torch.bool) for m, r in rows.items()}
    clean = _poison(_inputs(n, seed), present, 0.0)
    x = _poison(clean, present, absent_fill)
    observed = torch.stack(list(present.values()), 1)
    bad_row = None
    if present_bad is not None and bool(present["a"].any()):
        bad_row = int(torch.nonzero(present["a"])[0])
        x["a"][bad_row, 0] = present_bad
    x = {m: (v.to(dtype) if dtype.is_floating_point else v.round().to(dtype)) for m, v in x.items()}
    y = torch.zeros(n, dtype=torch.long)
    if not dtype.is_floating_point:
        with pytest.raises(TypeError, match="expected a floating-point tensor"):
            model.objective(x, present, y)
        return
    if bad_row is not None:
        with pytest.raises(ValueError, match=r"\['a'\] holds NaN or inf"):
            model.objective(x, present, y)
        return
    if not bool(observed.any(1).all()):
        with pytest.raises(ValueError, match="have no observed modality"):
            model.objective(x, present, y)
        return
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(1)
        got = model.objective(x, present, y)["loss"]
        torch.manual_seed(1)
        want = model.objective({m: v.to(dtype) for m, v in clean.items()}, present, y)["loss"]
    assert torch.isfinite(got)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 5), m=st.integers(1, 4), d=st.integers(1, 3), prior=st.booleans(), seed=st.integers(0, 2**16),
       fill=st.sampled_from([float("nan"), float("inf"), 0.0]))
def test_property_product_of_experts_is_the_gaussian_product_of_the_present_experts(b, m, d, prior, seed, fill):
    from mmlearn.representation import product_of_experts

    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, m, d, generator=g, dtype=torch.float64)
    logvar = torch.randn(b, m, d, generator=g, dtype=torch.float64)
    present = torch.rand(b, m, generator=g) < 0.6
    if not prior:
        present[:, 0] = True  # without the prior every row needs an expert
    # absent experts may hold anything
    mu_bad = torch.where(present[..., None], mu, torch.full_like(mu, fill))
    lv_bad = torch.where(present[..., None], logvar, torch.full_like(logvar, fill))
    got_mu, got_lv = product_of_experts(mu_bad, lv_bad, present, prior=prior)
    for i in range(b):
        keep = present[i]
        precision = torch.exp(-logvar[i][keep]).sum(0) + (1.0 if prior else 0.0)  # summed precisions
        mean = (torch.exp(-logvar[i][keep]) * mu[i][keep]).sum(0) / precision  # precision-weighted mean
        torch.testing.assert_close(got_mu[i], mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got_lv[i], -torch.log(precision), rtol=1e-12, atol=1e-12)
