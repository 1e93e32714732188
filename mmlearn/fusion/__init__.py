"""Fusion: every surveyed method on one contract (survey Sec. IV).

``Fusion(in_dims: dict[str, int], out_dim: int, **options)``, called as
``fusion(features: dict[str, Tensor], present=None) -> Tensor (B, out_dim)``.
``FUSIONS`` maps a name to its class for dropdowns; ``make_fusion(name, ...)``
builds one.
"""

from .base import FUSIONS, Fusion, make_fusion, register_fusion
from .early import EarlyFusion
from .intermediate import ConcatFusion
from .late import LateFusion
from .tensor import TensorFusion
from .low_rank import LowRankFusion
from .attention import CrossAttentionFusion
from .gated import GatedFusion
from .embracenet import EmbraceNetFusion
from .deq import DEQFusion, anderson, fixed_point_iteration
from .available import AvailableModalityFusion, MeanAvailableModalityFusion
from .prompt import PromptFusion
from .bottleneck import InformationBottleneckFusion

__all__ = [
    "FUSIONS",
    "ConcatFusion",
    "CrossAttentionFusion",
    "DEQFusion",
    "EmbraceNetFusion",
    "GatedFusion",
    "LowRankFusion",
    "TensorFusion",
    "anderson",
    "fixed_point_iteration",
    "EarlyFusion",
    "Fusion",
    "LateFusion",
    "make_fusion",
    "register_fusion",
]
