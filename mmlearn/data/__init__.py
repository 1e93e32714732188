"""Data: AV-Digits, synthetic generators with known ground truth, corruptions, batches."""

from .av_digits import AUDIO_SHAPE, DIGIT_NAMES, IMAGE_SHAPE, load_av_digits
from .batch import Batch, as_batch, concat_batches, modality_columns, to_batch
from .corruption import add_noise, drop_modalities, modality_stats
from .synthetic import BITWISE_KINDS, make_bitwise, make_latent_views

__all__ = [
    "AUDIO_SHAPE",
    "BITWISE_KINDS",
    "DIGIT_NAMES",
    "IMAGE_SHAPE",
    "Batch",
    "add_noise",
    "as_batch",
    "concat_batches",
    "drop_modalities",
    "load_av_digits",
    "make_bitwise",
    "make_latent_views",
    "modality_columns",
    "modality_stats",
    "to_batch",
]
