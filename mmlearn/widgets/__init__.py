"""Widget panels built on pure functions (DESIGN.md: pure core, thin shell)."""

from .base import Panel
from .modality import ModalityPanel, evaluate_condition

__all__ = ["ModalityPanel", "Panel", "evaluate_condition"]
