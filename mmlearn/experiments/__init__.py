"""The course's experiment runners, above the method packages.

A method package (:mod:`mmlearn.fusion`, :mod:`mmlearn.balance`, :mod:`mmlearn.robustness`, ...) says what a
method computes; it does not build classifiers or run training loops for the notebooks. The runners that do
(build encoders + method + head with :mod:`mmlearn.models`, train with :mod:`mmlearn.train`, tabulate) live
here, so they may import every method package without a cycle:

- :mod:`mmlearn.experiments.fusion`: :func:`~mmlearn.experiments.fusion.train_fusion` (the one fusion trainer
  of the course: notebook 03, the fusion panel, the interaction meter, the playground),
  :func:`~mmlearn.experiments.fusion.compare_fusions`, :func:`~mmlearn.experiments.fusion.fusion_datasets`;
- :mod:`mmlearn.experiments.balance`: the modality-competition set and one trainer per balance method
  (:func:`~mmlearn.experiments.balance.run_balance_grid`, notebook 04).

``tests/test_experiments.py`` checks the layering: no method package imports :mod:`mmlearn.models`,
:mod:`mmlearn.train` or :mod:`mmlearn.experiments` except where the test names the reason.
"""

from .balance import (
    BALANCE_METHODS,
    balance_model,
    default_alphas,
    make_imbalanced,
    run_balance_grid,
    train_balanced,
    train_unimodal,
)
from .fusion import (
    DEFAULT_OPTIONS,
    FUSION_ORDER,
    FusionRun,
    compare_fusions,
    count_parameters,
    fusion_datasets,
    mlp_encoders,
    runs_table,
    train_fusion,
)

__all__ = [
    "BALANCE_METHODS",
    "DEFAULT_OPTIONS",
    "FUSION_ORDER",
    "FusionRun",
    "balance_model",
    "compare_fusions",
    "count_parameters",
    "default_alphas",
    "fusion_datasets",
    "make_imbalanced",
    "mlp_encoders",
    "run_balance_grid",
    "runs_table",
    "train_balanced",
    "train_fusion",
    "train_unimodal",
]
