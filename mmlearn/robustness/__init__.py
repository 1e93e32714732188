"""Robustness (survey Sec. XI): corruptions, missing modalities, adapters, adversarial attacks, sweeps.

- :func:`corrupt` and :data:`CORRUPTIONS`: seeded corruptions per modality
  (images: salt and pepper, occlusion, blur; spectrograms: background noise,
  time and frequency masks; any modality: Gaussian noise, feature dropout);
- missing modalities: :func:`missing_batch` (test time),
  :func:`modality_dropout_transform` (train time), :func:`fill_missing`,
  :func:`training_means`, :func:`impute_with_vae`, :class:`LearnedMissingEmbedding`,
  :class:`MissingEmbeddingClassifier`; :class:`~mmlearn.fusion.AvailableModalityFusion`
  (Eq. 9) lives in :mod:`mmlearn.fusion`;
- losses: :func:`asymmetric_loss` (Eq. 10), simplified ARM (:func:`arm_scales`, :func:`arm_loss_term`);
- :class:`ScaleShiftAdapter`: per-channel scale and shift on a frozen model for one missing pattern;
- adversarial (Eq. 11): :func:`fgsm`, :func:`pgd`, :func:`adversarial_training_transform`,
  :func:`adversarial_loss_term`;
- :func:`robustness_sweep`: accuracy of several models over levels, as a tidy table
  (:func:`corrupted_accuracy` says how each point is computed);
- one combined setting (missing rates, then a corruption level per modality, then an attack):
  :func:`setting_batch` / :func:`setting_accuracy`; the same numbers from cached encoder features, for panels:
  :class:`EncodedData`, :func:`encoded_accuracy`, :func:`encoded_accuracies` (many settings in one pass),
  :func:`encoded_curve`.
"""

from .adapter import ScaleShiftAdapter
from .adversarial import adversarial_loss_term, adversarial_training_transform, attack, fgsm, pgd
from .encoded import (
    EncodedData,
    curve_settings,
    encoded_accuracies,
    encoded_accuracy,
    encoded_curve,
    encoded_logits,
    setting_accuracy,
    setting_batch,
)
from .corruptions import (
    CORRUPTIONS,
    background_noise,
    blur,
    corrupt,
    feature_dropout,
    frequency_mask,
    gaussian_noise,
    occlusion,
    register_corruption,
    salt_and_pepper,
    time_mask,
)
from .missing import (
    FILL_METHODS,
    LearnedMissingEmbedding,
    MissingEmbeddingClassifier,
    arm_loss_term,
    arm_scales,
    asymmetric_loss,
    fill_missing,
    impute_with_vae,
    missing_batch,
    modality_dropout_transform,
    training_means,
)
from .sweep import corrupted_accuracy, robustness_sweep, sweep_kinds

__all__ = [
    "EncodedData",
    "curve_settings",
    "encoded_accuracies",
    "encoded_accuracy",
    "encoded_curve",
    "encoded_logits",
    "setting_accuracy",
    "setting_batch",
    "CORRUPTIONS",
    "FILL_METHODS",
    "LearnedMissingEmbedding",
    "MissingEmbeddingClassifier",
    "ScaleShiftAdapter",
    "adversarial_loss_term",
    "adversarial_training_transform",
    "arm_loss_term",
    "arm_scales",
    "asymmetric_loss",
    "attack",
    "background_noise",
    "blur",
    "corrupt",
    "corrupted_accuracy",
    "feature_dropout",
    "fgsm",
    "fill_missing",
    "frequency_mask",
    "gaussian_noise",
    "impute_with_vae",
    "missing_batch",
    "modality_dropout_transform",
    "occlusion",
    "pgd",
    "register_corruption",
    "robustness_sweep",
    "salt_and_pepper",
    "sweep_kinds",
    "time_mask",
    "training_means",
]
