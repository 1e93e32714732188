"""Evaluation (survey Sec. X): scores computed from measured curves and tables.

- :func:`relative_robustness`, :func:`effective_robustness`: MultiBench's
  robustness metrics of an accuracy-vs-level curve (see the module for where
  they differ from MultiBench's script), :func:`minmax_normalize`, and
  :func:`robustness_table` for a :func:`mmlearn.robustness.robustness_sweep` table.
"""

from .robustness import (
    REDUCTIONS,
    effective_robustness,
    minmax_normalize,
    relative_robustness,
    robustness_table,
)

__all__ = ["REDUCTIONS", "effective_robustness", "minmax_normalize", "relative_robustness", "robustness_table"]
