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
