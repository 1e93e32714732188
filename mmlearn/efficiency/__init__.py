"""Efficiency: which modalities to collect, which fusion to use, and what a model costs.

- :func:`greedy_modality_selection` / :func:`brute_force_selection` with the utilities
  :func:`mutual_information_utility` and :func:`accuracy_utility` (Cheng et al., UAI 2022);
- :func:`fusion_architecture_search` (MFAS, Perez-Rua et al., CVPR 2019) over frozen layered encoders;
- :func:`auto_fusion` (successive halving over the registered fusions) and :func:`recommend_fusion`
  (no training: from the PID's redundancy, uniqueness and synergy, Liang et al., NeurIPS 2023);
- :func:`efficiency_profile` (parameters, FLOPs, latency, memory, accuracy) and :func:`pareto_front`.
"""

from .auto import AutoFusionResult, FusionRecommendation, auto_fusion, recommend_fusion
from .profile import EfficiencyProfile, count_flops, count_parameters, efficiency_profile, pareto_front
from .search import (
    LayeredMLP,
    MFASClassifier,
    MFASFusion,
    SearchResult,
    fusion_architecture_search,
    mfas_temperature,
    pretrain_layered_encoders,
    search_space_size,
)
from .selection import (
    SelectionResult,
    accuracy_utility,
    brute_force_selection,
    greedy_modality_selection,
    mutual_information_utility,
)

__all__ = [
    "AutoFusionResult",
    "FusionRecommendation",
    "auto_fusion",
    "recommend_fusion",
    "LayeredMLP",
    "MFASClassifier",
    "MFASFusion",
    "SearchResult",
    "fusion_architecture_search",
    "mfas_temperature",
    "pretrain_layered_encoders",
    "search_space_size",
    "EfficiencyProfile",
    "SelectionResult",
    "accuracy_utility",
    "brute_force_selection",
    "count_flops",
    "count_parameters",
    "efficiency_profile",
    "greedy_modality_selection",
    "mutual_information_utility",
    "pareto_front",
]
