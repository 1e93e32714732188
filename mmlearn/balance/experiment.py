"""Moved to :mod:`mmlearn.experiments.balance` (runners live above the method packages)."""

# TODO(lead): remove after 04/balance panel import mmlearn.experiments
from ..experiments.balance import (  # noqa: F401
    BALANCE_METHODS,
    balance_model,
    default_alphas,
    make_imbalanced,
    run_balance_grid,
    train_balanced,
    train_unimodal,
)
