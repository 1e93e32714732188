"""Moved to :mod:`mmlearn.experiments.fusion` (runners live above the method packages)."""

# TODO(lead): remove once mmlearn/widgets/interactions.py and notebooks/07 import mmlearn.experiments
from ..experiments.fusion import (  # noqa: F401
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
