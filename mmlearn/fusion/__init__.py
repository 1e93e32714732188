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

__all__ = [
    "FUSIONS",
    "ConcatFusion",
    "EarlyFusion",
    "Fusion",
    "LateFusion",
    "make_fusion",
    "register_fusion",
]
