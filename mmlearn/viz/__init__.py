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
    json_safe_z,
    modality_color,
    subset_accuracy_figure,
    training_curves,
)
from .alignment import (
    alignment_panel_figure,
    alignment_uniformity_figure,
    contrastive_curves,
    method_comparison_figure,
    retrieval_examples,
    similarity_heatmap,
)
from .balance import (
    balance_panel_figure,
    balance_summary_figure,
    modulation_figure,
    probe_curves_figure,
)
from .evaluation import (
    metric_heatmap_figure,
    report_card_figure,
    report_card_traces,
    report_radar_figure,
    robustness_curves_figure,
)
from .efficiency import (
    leaderboard_figure,
    pareto_figure,
    selection_figure,
)
from .fusion import (
    fusion_comparison_figure,
    fusion_panel_figure,
    solver_trace_figure,
    tfn_lmf_cost_figure,
    xor_grid_figure,
)
from .interactions import (
    fusion_interaction_figure,
    interaction_meter_figure,
    pid_bars_figure,
    synergy_bounds_figure,
)
from .playground import (
    playground_figure,
    robustness_levels,
)
from .robustness import (
    attack_figure,
    missing_heatmap_figure,
    noise_sweep_figure,
    robustness_panel_figure,
)
from .surface import (
    add_reference_lines,
    surface_figure,
)
from .representation import (
    image_strip,
    image_strips_figure,
    latent_generation_figure,
    objective_curves,
    probe_accuracy_figure,
)

__all__ = [
    "fusion_interaction_figure",
    "interaction_meter_figure",
    "pid_bars_figure",
    "synergy_bounds_figure",
    "leaderboard_figure",
    "pareto_figure",
    "selection_figure",
    "metric_heatmap_figure",
    "report_card_figure",
    "report_card_traces",
    "report_radar_figure",
    "robustness_curves_figure",
    "attack_figure",
    "missing_heatmap_figure",
    "noise_sweep_figure",
    "robustness_panel_figure",
    "LAYOUT",
    "MODALITY_COLORS",
    "PALETTE",
    "accuracy_confusion_figure",
    "add_reference_lines",
    "alignment_panel_figure",
    "alignment_uniformity_figure",
    "balance_panel_figure",
    "balance_summary_figure",
    "confusion_counts",
    "confusion_heatmap",
    "confusion_matrix_figure",
    "contrastive_curves",
    "embedding_scatter",
    "fusion_comparison_figure",
    "fusion_panel_figure",
    "image_grid",
    "image_strip",
    "image_strips_figure",
    "json_safe_z",
    "latent_generation_figure",
    "method_comparison_figure",
    "modality_color",
    "modulation_figure",
    "objective_curves",
    "playground_figure",
    "probe_accuracy_figure",
    "probe_curves_figure",
    "retrieval_examples",
    "robustness_levels",
    "similarity_heatmap",
    "solver_trace_figure",
    "subset_accuracy_figure",
    "surface_figure",
    "tfn_lmf_cost_figure",
    "training_curves",
    "xor_grid_figure",
]
