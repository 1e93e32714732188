"""Alignment (survey Sec. II, Eq. 2): contrastive learning of a shared space, retrieval metrics, CCA.

- :func:`clip_loss`, :func:`info_nce`, :class:`ContrastiveLoss` (learnable
  temperature; negatives gathered across ``torch.distributed`` ranks by
  :func:`gather_features`);
- metrics: :func:`retrieval_metrics`, :func:`recall_at_k`, :func:`median_rank`,
  :func:`class_prototypes` / :func:`zero_shot_classify`, :func:`alignment` and
  :func:`uniformity` (Wang & Isola 2020);
- :class:`AlignmentModel` and :func:`train_alignment`; the linear baseline :class:`CCABaseline`.
"""

from .cca import CCABaseline
from .loss import (
    INIT_TEMPERATURE,
    MAX_LOGIT_SCALE,
    ContrastiveLoss,
    clip_loss,
    distributed_world,
    gather_features,
    info_nce,
    similarity_logits,
)
from .metrics import (
    alignment,
    class_prototypes,
    cosine_similarity_matrix,
    median_rank,
    recall_at_k,
    retrieval_metrics,
    retrieval_ranks,
    uniformity,
    zero_shot_accuracy,
    zero_shot_classify,
)
from .model import AlignmentModel, evaluate_alignment, train_alignment

__all__ = [
    "INIT_TEMPERATURE",
    "MAX_LOGIT_SCALE",
    "AlignmentModel",
    "CCABaseline",
    "ContrastiveLoss",
    "alignment",
    "class_prototypes",
    "clip_loss",
    "cosine_similarity_matrix",
    "distributed_world",
    "evaluate_alignment",
    "gather_features",
    "info_nce",
    "median_rank",
    "recall_at_k",
    "retrieval_metrics",
    "retrieval_ranks",
    "similarity_logits",
    "train_alignment",
    "uniformity",
    "zero_shot_accuracy",
    "zero_shot_classify",
]
