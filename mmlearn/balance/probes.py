"""How much did each encoder learn? Linear probes and AGM's competition strength.

- :func:`linear_probe_accuracy`: freeze an encoder, fit a logistic regression
  (scikit-learn) on its features of a training split, report test accuracy.
  Comparing an encoder trained inside the joint model with the same encoder
  trained alone measures *modality laziness* (Du et al., ICML 2023).
- :func:`competition_strength`: the modality-competition metric of AGM (Li et
  al., ICCV 2023): how much of a unimodal model's features the joint model's
  embedding fails to predict linearly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._checks import check_number
from ..data import as_batch


def _encoder(model: nn.Module, modality: str) -> nn.Module:
    encoders = getattr(model, "encoders", None)
    if encoders is None:
        raise TypeError(f"expected a model with .encoders (a MultimodalClassifier), got {type(model).__name__}")
    if modality not in encoders:
        raise ValueError(f"unknown modality {modality!r}; the model has encoders {sorted(encoders)}")
    return encoders[modality]


@torch.no_grad()
def encoder_features(model: nn.Module, data, modality: str, *, batch_size: int = 2048) -> np.ndarray:
    """Frozen features of ``model``'s encoder for ``modality`` on ``data``: (N, d) numpy, eval mode."""
    encoder = _encoder(model, modality)
    batch = as_batch(data)
    if modality not in batch.inputs:
        raise ValueError(f"data has no modality {modality!r}; it has {batch.modalities}")
    batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
    if batch.size == 0:
        raise ValueError("encoder_features: the data is empty (0 rows)")
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    try:
        x = batch.inputs[modality]
        chunks = [encoder(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    finally:
        encoder.train(was_training)
    return torch.cat(chunks).reshape(len(x), -1).numpy()


def probe_accuracy_from_features(train_features, train_y, test_features, test_y, *, C: float = 1.0,
                                 max_iter: int = 1000) -> float:
    """Test accuracy of a standardised logistic regression fitted on (train_features, train_y)."""
    train_features, test_features = np.asarray(train_features), np.asarray(test_features)
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"probe features must be (N, d) with the same d, got {train_features.shape} and {test_features.shape}"
        )
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if len(train_y) != len(train_features) or len(test_y) != len(test_features):
        raise ValueError(
            f"features and labels disagree: {len(train_features)} vs {len(train_y)} rows (train), "
            f"{len(test_features)} vs {len(test_y)} rows (test)"
        )
    if len(np.unique(train_y)) < 2:
        raise ValueError("the probe's training labels have a single class")
    C = check_number(C, "C", low=0.0, low_open=True)
    max_iter = check_number(max_iter, "max_iter", low=1, integer=True)
    for name, a in (("train_features", train_features), ("test_features", test_features)):
        if not np.isfinite(a).all():
            raise ValueError(f"probe {name} hold NaN or inf (a diverged encoder?)")
    from sklearn.linear_model import LogisticRegression  # scikit-learn only when a probe runs
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, solver="newton-cholesky"))
    probe.fit(train_features, train_y)
    return float(probe.score(test_features, test_y))


def linear_probe_accuracy(model: nn.Module, train, test, modality: str, *, C: float = 1.0) -> float:
    """Linear-probe accuracy of ``model``'s (frozen) encoder for ``modality``.

    A logistic regression on the standardised encoder features of ``train``,
    scored on ``test``. Works for a joint model, a unimodal model, or any
    object with ``.encoders[modality]``.
    """
    tr, te = as_batch(train), as_batch(test)
    return probe_accuracy_from_features(
        encoder_features(model, tr, modality), tr.y.numpy(), encoder_features(model, te, modality), te.y.numpy(), C=C
    )


def probe_accuracies(model: nn.Module, train, test, modalities=None) -> dict[str, float]:
    """:func:`linear_probe_accuracy` for every encoder (or the given ``modalities``)."""
    names = list(model.encoders) if modalities is None else list(modalities)
    return {m: linear_probe_accuracy(model, train, test, m) for m in names}


def competition_strength_from_features(joint_fit, unimodal_fit, joint_test, unimodal_test, *,
                                       alpha: float = 120.0) -> float:
    """AGM's competition strength from features (Li et al., ICCV 2023)::

        Yhat   = Ridge(alpha).fit(X_fit, Y_fit).predict(X_test)   # joint embedding -> unimodal features
        Delta  = Y_test - Yhat                                      (N, d)
        B      = (Y_test - mean)^T (Y_test - mean) = N cov(Y_test)  (d, d)
        gamma  = tr(B^+ Delta^T Delta) / d

    A whitened ``1 - R^2``: 0 when the joint model's embedding predicts the
    unimodal features perfectly, about 1 when it predicts nothing beyond their
    mean (exactly ``rank(B) / d`` for the mean prediction). Larger gamma: the
    joint model kept less of what that modality learns alone: stronger competition.
    """
    X_fit, Y_fit = np.asarray(joint_fit, dtype=np.float64), np.asarray(unimodal_fit, dtype=np.float64)
    X_test, Y_test = np.asarray(joint_test, dtype=np.float64), np.asarray(unimodal_test, dtype=np.float64)
    for name, a in (("joint_fit", X_fit), ("unimodal_fit", Y_fit), ("joint_test", X_test), ("unimodal_test", Y_test)):
        if a.ndim != 2:
            raise ValueError(f"{name} must be (N, d), got shape {a.shape}")
    if len(X_fit) != len(Y_fit) or len(X_test) != len(Y_test):
        raise ValueError(f"rows disagree: fit {len(X_fit)} vs {len(Y_fit)}, test {len(X_test)} vs {len(Y_test)}")
    if X_fit.shape[1] != X_test.shape[1] or Y_fit.shape[1] != Y_test.shape[1]:
        raise ValueError(
            f"widths disagree between fit and test: {X_fit.shape}/{X_test.shape}, {Y_fit.shape}/{Y_test.shape}"
        )
    alpha = check_number(alpha, "alpha", low=0.0)
    for name, a in (("joint_fit", X_fit), ("unimodal_fit", Y_fit), ("joint_test", X_test), ("unimodal_test", Y_test)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} holds NaN or inf")
    from sklearn.linear_model import Ridge  # scikit-learn only when it runs

    ridge = Ridge(alpha=alpha).fit(X_fit, Y_fit)
    delta = Y_test - ridge.predict(X_test)  # (N, d)
    centered = Y_test - Y_test.mean(axis=0)
    B = centered.T @ centered  # N cov(Y): (d, d)
    return float(np.trace(np.linalg.pinv(B) @ (delta.T @ delta)) / Y_test.shape[1])


def joint_embedding(model: nn.Module, data) -> np.ndarray:
    """The joint model's embedding: its encoders' features concatenated, (N, sum_m d_m)."""
    return np.concatenate([encoder_features(model, data, m) for m in model.encoders], axis=1)


def competition_strength(joint_model: nn.Module, unimodal_model: nn.Module, modality: str, fit_data, test_data, *,
                         alpha: float = 120.0) -> float:
    """AGM's competition strength of ``modality`` inside ``joint_model`` (Li et al., ICCV 2023).

    Ridge-regress the features of a separately trained ``unimodal_model``'s
    encoder for ``modality`` from the joint model's embedding (its encoder
    features concatenated) on ``fit_data``; report the whitened unexplained
    fraction on ``test_data`` (:func:`competition_strength_from_features`).
    """
    _encoder(unimodal_model, modality)
    return competition_strength_from_features(
        joint_embedding(joint_model, fit_data),
        encoder_features(unimodal_model, fit_data, modality),
        joint_embedding(joint_model, test_data),
        encoder_features(unimodal_model, test_data, modality),
        alpha=alpha,
    )
