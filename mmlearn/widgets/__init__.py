"""Widget panels built on pure functions (DESIGN.md: pure core, thin shell)."""

from .base import Panel
from .modality import ModalityPanel, evaluate_condition

__all__ = ["ModalityPanel", "Panel", "evaluate_condition"]
from .alignment import AlignmentPanel, precompute_alignment_grid, summarize_alignment  # noqa: E402
__all__ += ["AlignmentPanel", "precompute_alignment_grid", "summarize_alignment"]
from .representation import RepresentationPanel, fit_projection, infer_and_generate  # noqa: E402
__all__ += ["RepresentationPanel", "fit_projection", "infer_and_generate"]
from .balance import BalancePanel, balance_lookup, grid_alphas  # noqa: E402
__all__ += ["BalancePanel", "balance_lookup", "grid_alphas"]
from .fusion import FusionPanel, evaluate_fusions, fusion_weights  # noqa: E402
__all__ += ["FusionPanel", "evaluate_fusions", "fusion_weights"]
from .playground import PlaygroundPanel, corrupted_accuracy, make_playground_data, train_fusion  # noqa: E402
__all__ += ["PlaygroundPanel", "corrupted_accuracy", "make_playground_data", "train_fusion"]
