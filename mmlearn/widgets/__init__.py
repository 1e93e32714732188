"""Widget panels built on pure functions (DESIGN.md: pure core, thin shell)."""

from .alignment import AlignmentPanel, precompute_alignment_grid, summarize_alignment
from .balance import BalancePanel, balance_lookup, grid_alphas
from .base import Panel
from .evaluation import EvaluationPanel, evaluation_view
from .efficiency import BudgetPanel, budget_controls_disabled, budget_selection, subset_costs, subset_utilities
from .fusion import FusionPanel, evaluate_fusions, fusion_weights
from .interactions import InteractionMeter, interaction_summary
from .modality import ModalityPanel, corrupt_batch, evaluate_condition
from .playground import PlaygroundPanel, accuracy_now, make_playground_data, train_model
from .representation import RepresentationPanel, fit_projection, infer_and_generate
from .robustness import (
    AdapterRouter,
    FeatureCache,
    RobustnessPanel,
    condition_accuracy,
    condition_batch,
    fill_sweep,
    filled_accuracy,
    robustness_controls_disabled,
    robustness_result,
)
from .surface import (
    SurfacePanel,
    SurfaceTrainer,
    additivity_residual,
    decision_surface,
    logit_surface,
    make_surface_data,
    surface_grid,
    surface_model,
    unimodal_curves,
)

__all__ = [
    "InteractionMeter",
    "interaction_summary",
    "BudgetPanel",
    "budget_controls_disabled",
    "budget_selection",
    "subset_costs",
    "subset_utilities",
    "EvaluationPanel",
    "evaluation_view",
    "AdapterRouter",
    "FeatureCache",
    "RobustnessPanel",
    "condition_accuracy",
    "condition_batch",
    "fill_sweep",
    "filled_accuracy",
    "robustness_controls_disabled",
    "robustness_result",
    "AlignmentPanel",
    "BalancePanel",
    "FusionPanel",
    "ModalityPanel",
    "Panel",
    "PlaygroundPanel",
    "RepresentationPanel",
    "SurfacePanel",
    "SurfaceTrainer",
    "additivity_residual",
    "balance_lookup",
    "corrupt_batch",
    "accuracy_now",
    "decision_surface",
    "evaluate_condition",
    "evaluate_fusions",
    "fit_projection",
    "fusion_weights",
    "grid_alphas",
    "infer_and_generate",
    "logit_surface",
    "make_playground_data",
    "make_surface_data",
    "precompute_alignment_grid",
    "summarize_alignment",
    "surface_grid",
    "surface_model",
    "train_model",
    "unimodal_curves",
]
