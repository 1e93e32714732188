"""Plotly figure builders: numbers in, ``go.Figure`` out (DESIGN.md, layer 2)."""

from .core import (
    LAYOUT,
    MODALITY_COLORS,
    PALETTE,
    accuracy_confusion_figure,
    confusion_counts,
    confusion_heatmap,
    confusion_matrix_figure,
    embedding_scatter,
    image_grid,
    modality_color,
    subset_accuracy_figure,
    training_curves,
)

__all__ = [
    "LAYOUT",
    "MODALITY_COLORS",
    "PALETTE",
    "accuracy_confusion_figure",
    "confusion_counts",
    "confusion_heatmap",
    "confusion_matrix_figure",
    "embedding_scatter",
    "image_grid",
    "modality_color",
    "subset_accuracy_figure",
    "training_curves",
]

from .alignment import alignment_panel_figure, alignment_uniformity_figure, contrastive_curves, method_comparison_figure, retrieval_examples, similarity_heatmap  # noqa: E402
__all__ += ["alignment_panel_figure", "alignment_uniformity_figure", "contrastive_curves", "method_comparison_figure", "retrieval_examples", "similarity_heatmap"]  # noqa: E501
from .representation import image_strip, image_strips_figure, latent_generation_figure, objective_curves, probe_accuracy_figure  # noqa: E402
__all__ += ["image_strip", "image_strips_figure", "latent_generation_figure", "objective_curves", "probe_accuracy_figure"]  # noqa: E501
from .balance import balance_panel_figure, balance_summary_figure, modulation_figure, probe_curves_figure  # noqa: E402
__all__ += ["balance_panel_figure", "balance_summary_figure", "modulation_figure", "probe_curves_figure"]
from .fusion import fusion_comparison_figure, fusion_panel_figure, solver_trace_figure, tfn_lmf_cost_figure, xor_grid_figure  # noqa: E402
__all__ += ["fusion_comparison_figure", "fusion_panel_figure", "solver_trace_figure", "tfn_lmf_cost_figure", "xor_grid_figure"]  # noqa: E501
from .playground import playground_figure, robustness_levels  # noqa: E402
__all__ += ["playground_figure", "robustness_levels"]
