"""Evaluation (survey Sec. X): scores computed from measured curves and tables.

- :func:`relative_robustness`, :func:`effective_robustness`: MultiBench's
  robustness metrics of an accuracy-vs-level curve (see the module for where
  they differ from MultiBench's script), :func:`minmax_normalize`, and
  :func:`robustness_table` for a :func:`mmlearn.robustness.robustness_sweep` table;
- :func:`scores`, :func:`subset_scores`, :func:`macro_f1`: accuracy and macro-F1,
  per modality subset; :func:`complexity`: parameters, training time, latency and
  memory, measured;
- :func:`best_performance`, :func:`mean_relative_gain`, :func:`stability`,
  :func:`adaptability`: MM-BigBench's metrics of a ``(models, tasks, conditions)`` array;
- :func:`report_card`: several models under clean, noisy, missing and adversarial
  conditions in one call, as a :class:`ReportCard` (tables, figures, bootstrap).
"""

from .bigbench import adaptability, best_performance, mean_relative_gain, relative_gain, stability, top_k
from .report import (
    DEFAULT_CONDITIONS,
    ReportCard,
    complexity,
    condition_batch,
    macro_f1,
    report_card,
    scores,
    subset_scores,
)
from .robustness import (
    REDUCTIONS,
    effective_robustness,
    minmax_normalize,
    relative_robustness,
    robustness_table,
)

__all__ = [
    "DEFAULT_CONDITIONS",
    "REDUCTIONS",
    "ReportCard",
    "adaptability",
    "best_performance",
    "complexity",
    "condition_batch",
    "effective_robustness",
    "macro_f1",
    "mean_relative_gain",
    "minmax_normalize",
    "relative_gain",
    "relative_robustness",
    "report_card",
    "robustness_table",
    "scores",
    "stability",
    "subset_scores",
    "top_k",
]
