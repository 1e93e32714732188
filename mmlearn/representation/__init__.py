"""Representation learning (survey Sec. II-III): joint objectives, multimodal VAEs, factorized models.

- :class:`JointAutoencoder`: the joint objective of Eq. (1), a shared latent
  with per-modality reconstruction losses and an L1 or KL regulariser;
- :class:`MultimodalVAE`: Eq. (3) with a product-of-experts (MVAE), mixture
  of experts (MMVAE) or mixture of products of experts (MoPoE) posterior;
  :func:`product_of_experts`, :func:`coherence` (cross-modal generation);
- :class:`FactorizedModel`: MFM, shared discriminative and modality-specific
  generative factors with the MMD prior term (:func:`mmd`);
- :func:`fit_representation`: one training loop for their objectives.
"""

from .base import LatentModel, MLPDecoder, gaussian_kl, gaussian_log_density, reparameterize
from .experts import nonempty_subsets, product_of_experts
from .factorized import FactorizedModel, mmd
from .joint_autoencoder import JointAutoencoder
from .training import fit_representation
from .vae import POSTERIORS, MultimodalVAE, coherence

__all__ = [
    "POSTERIORS",
    "FactorizedModel",
    "JointAutoencoder",
    "LatentModel",
    "MLPDecoder",
    "MultimodalVAE",
    "coherence",
    "fit_representation",
    "gaussian_kl",
    "gaussian_log_density",
    "mmd",
    "nonempty_subsets",
    "product_of_experts",
    "reparameterize",
]
