"""Multimodal VAEs on survey Eq. (3), with three ways to form the joint posterior.

    L_VAE = E_{q(z|x)}[log p(x|z)] - KL(q(z|x) || p(z))                          (3)

With several modalities ``x = (x_1, ..., x_M)`` the decoder factorises,
``log p(x|z) = sum_m log p(x_m|z)``, and the question is how to build
``q(z|x)`` from one encoder per modality so that any subset of modalities
still gives a posterior (and hence cross-modal generation):

- ``"poe"`` product of experts, MVAE (Wu & Goodman, NeurIPS 2018):
  ``q(z|x) ∝ p(z) prod_m q(z|x_m)``. Trained with MVAE's sub-sampled ELBOs:
  the ELBO of the joint posterior plus one ELBO per modality alone (each
  reconstructs only the modalities it conditions on).
- ``"moe"`` mixture of experts, MMVAE (Shi, Siddharth, Paige, Torr, NeurIPS
  2019): ``q(z|x) = (1/M) sum_m q(z|x_m)``; stratified: one sample from each
  component, every sample reconstructs every modality, ELBO averaged over
  components.
- ``"mope"`` mixture of products of experts, MoPoE-VAE (Sutter, Daunhawer,
  Vogt, ICLR 2021): ``q(z|x) = 1/(2^M - 1) sum_{S != {}} PoE({q(z|x_m)}_{m in S})``.

Likelihood: each decoder outputs the mean of a unit-variance Gaussian on the
standardised modality, so ``-log p(x_m|z) = 0.5 ||x_m - x_hat_m||^2`` up to a
constant (dropped), times a per-modality ``likelihood_scale``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .._checks import check_number
from ..data.batch import as_batch
from .base import LatentModel, gaussian_kl, gaussian_log_density, reparameterize, squared_error
from .experts import nonempty_subsets, product_of_experts

POSTERIORS = ("poe", "moe", "mope")
SUBSET_PRIORS = ("full", "none", "all")


class MultimodalVAE(LatentModel):
    """A multimodal VAE (survey Eq. 3) with a product, mixture, or mixture-of-products posterior.

    ``posterior``:

    - ``"poe"`` (MVAE, Wu & Goodman 2018): ``q(z|x) = PoE(prior, q(z|x_m) for observed m)``.
      Objective: ``ELBO(x_1..x_M) + sum_m ELBO(x_m)``, MVAE's sub-sampled
      terms: the joint one and each modality alone (for M > 2 MVAE adds random
      subsets; this class uses only these M + 1 terms).
    - ``"moe"`` (MMVAE, Shi et al. 2019): ``q(z|x) = (1/M) sum_m q(z|x_m)``,
      trained with the *plain* stratified ELBO (K = 1 sample per component, no
      IWAE and no DReG estimator, Gaussian rather than Laplace distributions):
      ``(1/M) sum_m [log p(x|z_m) + beta (log p(z_m) - log q(z_m|x))]`` with
      ``z_m ~ q(z|x_m)`` and ``q(z_m|x)`` the full mixture density.
    - ``"mope"`` (MoPoE-VAE, Sutter et al. 2021): ``q(z|x)`` an equal-weight
      mixture of the PoE of every non-empty subset ``S`` of the observed
      modalities. Objective, stratified over the subsets (one sample each):
      ``mean_S [log p(x|z_S) - beta KL(q_S || p)]``, ``z_S ~ q_S``: the
      reconstruction term of the mixture plus the upper bound
      ``mean_S KL(q_S||p) >= KL(q||p)`` that the MoPoE code also uses.
      Which subset products include the prior expert ``N(0, I)`` is
      ``subset_prior``: ``"full"`` (default) follows the official code
      (thomassutter/MoPoE, ``utils/BaseMMVae.py``, ``poe_fusion``: the prior
      expert joins only the subset of *all* the model's modalities, so a row
      that lacks a modality has no subset with it); ``"none"`` is the paper's
      equation (``PoE({q(z|x_j)}_{j in S})``, no prior expert); ``"all"`` adds
      it to every subset, as MVAE's product does (this class's behaviour
      before; it shrinks every unimodal component toward 0). Deviations from
      the official code: it partitions the batch among the subsets to sample
      the mixture, this class draws one sample per subset for every row; its
      PoE adds ``1e-8`` to each variance; Gaussian rather than Laplace likelihood.
      ``prior_expert`` applies to ``"poe"`` only.

    Rows that miss some modalities use only the experts they have: the joint
    posterior, the mixture components and the reconstruction targets are
    restricted to each row's observed modalities.

    ``likelihood_scale``: weight of each modality's ``-log p(x_m|z)``; by
    default ``D_max / D_m`` (``D_m`` elements per sample), MMVAE's rescaling
    so that a small image counts as much as a large spectrogram.
    ``beta`` weighs the KL term (``beta = 1`` is Eq. 3).

    Shapes: inputs ``{m: (B, *shapes[m])}``, ``present`` ``{m: (B,)}``;
    per-modality posteriors ``(B, M, d)``; :meth:`latent` ``(B, d)``;
    :meth:`generate` ``(B, *shapes[target])``.
    """

    def __init__(
        self,
        shapes: Mapping[str, Sequence[int]],
        latent_dim: int = 16,
        posterior: str = "poe",
        *,
        beta: float = 1.0,
        likelihood_scale: Mapping[str, float] | None = None,
        prior_expert: bool = True,
        subset_prior: str = "full",
        hidden: int = 128,
        stats: Mapping[str, tuple[float, float]] | None = None,
        encoders: Mapping[str, nn.Module] | None = None,
        decoders: Mapping[str, nn.Module] | None = None,
        logvar_range: tuple[float, float] = (-8.0, 8.0),
    ):
        super().__init__(shapes, stats)
        if posterior not in POSTERIORS:
            raise ValueError(f"unknown posterior {posterior!r}; expected one of {POSTERIORS}")
        if subset_prior not in SUBSET_PRIORS:
            raise ValueError(f"unknown subset_prior {subset_prior!r}; expected one of {SUBSET_PRIORS}")
        if not isinstance(prior_expert, bool):
            raise TypeError(f"prior_expert must be True or False, got {prior_expert!r}")
        self.latent_dim = check_number(latent_dim, "latent_dim", low=1, integer=True)
        check_number(hidden, "hidden", low=1, integer=True)
        self.posterior = posterior
        self.beta = check_number(beta, "beta", low=0.0)
        self.prior_expert = prior_expert
        self.subset_prior = subset_prior
        if not isinstance(logvar_range, Sequence) or len(logvar_range) != 2:
            raise TypeError(f"logvar_range must be a pair (low, high), got {logvar_range!r}")
        low = check_number(logvar_range[0], "logvar_range[0]")
        high = check_number(logvar_range[1], "logvar_range[1]", low=low, low_open=True)
        self.logvar_range = (low, high)
        sizes = {m: math.prod(s) for m, s in self.shapes.items()}
        if likelihood_scale is None:
            scale = {m: max(sizes.values()) / sizes[m] for m in self.shapes}
        else:
            for m in likelihood_scale:
                if m not in self.shapes:
                    raise ValueError(f"likelihood_scale: unknown modality {m!r}; expected one of {self.modalities}")
            scale = {m: check_number(likelihood_scale.get(m, 1.0), f"likelihood_scale[{m!r}]", low=0.0)
                     for m in self.shapes}
        self.register_buffer("likelihood_scale", torch.tensor([scale[m] for m in self.shapes]))
        self.encoders = self._encoder_backbones(encoders, hidden, hidden)
        # q(z|x_m): features (B, f_m) -> (mu_m, logvar_m) (B, 2d)
        self.heads = nn.ModuleDict({m: nn.Linear(e.out_dim, 2 * self.latent_dim) for m, e in self.encoders.items()})
        # p(x_m|z): z (B, d) -> mean of x_m (B, *shapes[m])
        self.decoders = self._decoders(decoders, self.latent_dim, hidden)

    # posteriors -------------------------------------------------------------------------------
    def experts(self, x: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Each modality's Gaussian posterior ``q(z|x_m)``: ``mu``, ``logvar`` each (B, M, d)."""
        out = torch.stack([self.heads[m](self.encoders[m](x[m])) for m in self.modalities], dim=1)  # (B, M, 2d)
        mu, logvar = out.chunk(2, dim=-1)
        return mu, logvar.clamp(*self.logvar_range)

    def _subset_mask(self, mask: Tensor, subset: Sequence[str]) -> Tensor:
        """(B, M) experts of ``subset`` that each row observes."""
        member = torch.tensor([m in subset for m in self.modalities], device=mask.device)
        return mask & member

    def components(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> dict:
        """The joint posterior as a weighted list of Gaussians, per row.

        Returns ``{"mu": (B, K, d), "logvar": (B, K, d), "weight": (B, K), "names": [K labels]}``:
        ``K = 1`` for ``"poe"``, the ``M`` modalities for ``"moe"``, the
        ``2^M - 1`` subsets for ``"mope"``; weights are 0 for components a row
        cannot form (a modality it lacks) and sum to 1 over the rest.
        """
        x, mask = self.check_inputs(inputs, present)
        self.require_some(mask, f"{type(self).__name__} inputs")
        return self._components(*self.experts(x), mask)

    def subset_has_prior(self, subset: Sequence[str]) -> bool:
        """Whether MoPoE's product for ``subset`` includes the prior expert (see ``subset_prior``)."""
        if self.subset_prior == "all":
            return True
        if self.subset_prior == "none":
            return False
        return set(subset) == set(self.modalities)  # "full": the official code's rule

    def _components(self, mu_m: Tensor, logvar_m: Tensor, mask: Tensor) -> dict:
        if self.posterior == "poe":
            mu, logvar = product_of_experts(mu_m, logvar_m, mask, prior=self.prior_expert)
            return {"mu": mu[:, None], "logvar": logvar[:, None], "weight": mu.new_ones(len(mask), 1),
                    "names": ["+".join(self.modalities)]}
        if self.posterior == "moe":
            w = mask.to(mu_m.dtype) / mask.sum(dim=1, keepdim=True).to(mu_m.dtype)  # (B, M): 1/|observed| each
            return {"mu": mu_m, "logvar": logvar_m, "weight": w, "names": list(self.modalities)}
        mus, logvars, valid = [], [], []
        subsets = nonempty_subsets(self.modalities)
        for subset in subsets:
            sel = self._subset_mask(mask, subset)
            # a row can form subset S only if it observes every member of S
            ok = sel.sum(dim=1) == len(subset)
            # rows that cannot form S get a placeholder product (all experts) with weight 0
            mu, logvar = product_of_experts(mu_m, logvar_m, torch.where(ok[:, None], sel, torch.ones_like(sel)),
                                            prior=self.subset_has_prior(subset))
            mus.append(mu)
            logvars.append(logvar)
            valid.append(ok)
        valid_t = torch.stack(valid, dim=1).to(mu_m.dtype)  # (B, 2^M - 1)
        return {"mu": torch.stack(mus, dim=1), "logvar": torch.stack(logvars, dim=1),
                "weight": valid_t / valid_t.sum(dim=1, keepdim=True), "names": ["+".join(s) for s in subsets]}

    def latent(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> Tensor:
        """Mean of the joint posterior ``E_q[z]`` (B, d): the PoE mean, or the mixture's weighted mean."""
        c = self.components(inputs, present)
        return (c["weight"].unsqueeze(-1) * c["mu"]).sum(dim=1)

    encode = latent

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """Decoder means of every modality from ``z`` (B, d), in the data's scale."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z has shape {tuple(z.shape)}; expected (B, {self.latent_dim})")
        return {m: self.destandardize(m, self.decoders[m](z)) for m in self.modalities}

    def forward(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Reconstruct every modality (generate the absent ones) from the posterior mean."""
        return self.decode(self.latent(inputs, present))

    def generate(
        self,
        inputs: Mapping[str, Tensor],
        present: Mapping[str, Tensor] | None = None,
        target_modality: str = "image",
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Cross-modal generation: ``target_modality`` decoded from the observed modalities.

        E.g. ``vae.generate({"audio": a}, target_modality="image")`` encodes the
        audio and decodes an image (B, 8, 8). ``sample=False`` decodes the
        posterior mean; ``sample=True`` draws a component by its weight, then
        ``z`` from it.
        """
        self.check_modality(target_modality, "target modality")
        if not sample:
            z = self.latent(inputs, present)
        else:
            c = self.components(inputs, present)
            k = torch.multinomial(c["weight"], 1, generator=generator).squeeze(1)  # (B,)
            rows = torch.arange(len(k), device=k.device)
            mu, logvar = c["mu"][rows, k], c["logvar"][rows, k]
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + torch.exp(0.5 * logvar) * eps
        return self.destandardize(target_modality, self.decoders[target_modality](z))

    # the objective of Eq. (3) ---------------------------------------------------------------------
    def _nll(self, z: Tensor, x: dict[str, Tensor], targets: Tensor, parts: dict[str, Tensor], weight: Tensor) -> Tensor:
        """``-log p(x_targets | z)`` per row (B,), up to a constant; adds weighted per-modality sums to ``parts``."""
        total = z.new_zeros(len(z))
        for j, m in enumerate(self.modalities):
            # -log p(x_m|z) = scale_m * 0.5 * ||x_m - D_m(z)||^2, only where x_m is a target
            nll_m = self.likelihood_scale[j] * 0.5 * squared_error(self.decoders[m](z), x[m])
            nll_m = torch.where(targets[:, j], nll_m, torch.zeros((), dtype=nll_m.dtype, device=nll_m.device))
            total = total + nll_m
            parts[m] = parts[m] + (weight * nll_m).sum()
        return total

    def objective(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                  y: Tensor | None = None) -> dict:
        """``{"loss", "recon": {m: -log p(x_m|z)}, "kl"}``, each averaged over the batch; ``y`` is unused.

        ``loss`` is the negative of the posterior's objective (sub-sampled ELBOs,
        stratified mixture ELBO, or MoPoE bound), so it is minimised.
        """
        x, mask = self.check_inputs(inputs, present)
        self.require_rows(mask, f"{type(self).__name__}.objective")
        self.require_some(mask, f"{type(self).__name__} inputs")
        mu_m, logvar_m = self.experts(x)  # (B, M, d) each
        B = len(mask)
        maskf = mask.to(mu_m.dtype)
        parts = {m: mu_m.new_zeros(()) for m in self.modalities}
        kl_sum = mu_m.new_zeros(())
        neg_elbo = mu_m.new_zeros(B)
        if self.posterior == "poe":
            # MVAE: ELBO(x_1..x_M) + sum_m ELBO(x_m), each through the PoE of its observed experts
            subsets = list(dict.fromkeys([tuple(self.modalities)] + [(m,) for m in self.modalities]))
            for subset in subsets:
                sel = self._subset_mask(mask, subset)  # (B, M) experts and targets of this term
                rows = sel.any(dim=1).to(mu_m.dtype)  # rows that observe any member of S
                mu, logvar = product_of_experts(mu_m, logvar_m, sel | (rows == 0)[:, None],
                                                prior=self.prior_expert)
                z = reparameterize(mu, logvar)
                # ELBO(x_S) = E_q[log p(x_S|z)] - beta * KL(q(z|x_S) || N(0, I))
                kl = gaussian_kl(mu, logvar)
                nll = self._nll(z, x, sel, parts, rows)
                neg_elbo = neg_elbo + rows * (nll + self.beta * kl)
                kl_sum = kl_sum + (rows * kl).sum()
        elif self.posterior == "moe":
            # MMVAE: (1/M) sum_m E_{z ~ q(z|x_m)}[log p(x|z) + log p(z) - log q(z|x)], one sample per component
            w = maskf / maskf.sum(dim=1, keepdim=True)  # (B, M) mixture weights
            log_w = torch.log(w).masked_fill(~mask, float("-inf"))
            for j in range(len(self.modalities)):
                z = reparameterize(mu_m[:, j], logvar_m[:, j])  # (B, d)
                # log q(z|x) = logsumexp_k [log w_k + log N(z; mu_k, sigma_k^2)]: the mixture density
                log_qk = gaussian_log_density(z.unsqueeze(1), mu_m, logvar_m)  # (B, M)
                log_q = torch.logsumexp(log_qk + log_w, dim=1)
                log_p = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
                kl = log_q - log_p  # one-sample estimate of KL(q(z|x) || p(z))
                nll = self._nll(z, x, mask, parts, w[:, j])
                neg_elbo = neg_elbo + w[:, j] * (nll + self.beta * kl)
                kl_sum = kl_sum + (w[:, j] * kl).sum()
        else:
            # MoPoE: mean over subsets S of [E_{q_S}[log p(x|z)] - beta * KL(q_S || N(0, I))]
            c = self._components(mu_m, logvar_m, mask)
            for k in range(c["mu"].shape[1]):
                w = c["weight"][:, k]  # (B,) 1/(number of subsets the row can form), or 0
                z = reparameterize(c["mu"][:, k], c["logvar"][:, k])
                kl = gaussian_kl(c["mu"][:, k], c["logvar"][:, k])
                nll = self._nll(z, x, mask, parts, w)
                neg_elbo = neg_elbo + w * (nll + self.beta * kl)
                kl_sum = kl_sum + (w * kl).sum()
        return {"loss": neg_elbo.mean(), "recon": {m: v / B for m, v in parts.items()}, "kl": kl_sum / B}


def _classify(classifier: Callable, modality: str, x: Tensor) -> Tensor:
    """Logits of ``classifier`` on ``x``: models with a modality dict (``encoders``) get ``{modality: x}``."""
    if isinstance(getattr(classifier, "encoders", None), nn.ModuleDict):
        return classifier({modality: x})
    return classifier(x)


@torch.no_grad()
def coherence(
    model: nn.Module,
    data,
    classifier: Callable,
    *,
    source: str = "audio",
    target: str = "image",
    batch_size: int = 1024,
) -> float:
    """Cross-modal coherence: accuracy of a ``target`` classifier on ``target`` generated from ``source``.

    As in MMVAE (Shi et al. 2019) and MoPoE (Sutter et al. 2021): encode only
    ``source`` (e.g. the spoken digit), decode ``target`` (an image) with
    ``model.generate``, and ask ``classifier`` (trained on *real* ``target``
    inputs) which digit it sees. The score is the share of generated samples
    classified as the label of the sample they were generated from; chance is
    ``1 / n_classes``. ``classifier`` is a model taking ``{target: x}`` (e.g. a
    :class:`~mmlearn.models.MultimodalClassifier`) or a callable on the tensor,
    on the same device as ``model`` (the data are moved there).
    """
    batch = as_batch(data)
    batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
    if batch.size == 0:
        raise ValueError("coherence: the data is empty (0 rows); the score is a share of generated samples")
    if source == target:
        raise ValueError(f"source and target are both {source!r}: coherence is about cross-modal generation")
    for m in (source, target):
        if m not in batch.inputs:
            raise ValueError(f"unknown modality {m!r}; the data has {batch.modalities}")
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    states = (model.training, getattr(classifier, "training", False))
    model.eval()
    if isinstance(classifier, nn.Module):
        classifier.eval()
    try:
        correct = 0
        for start in range(0, batch.size, batch_size):
            part = batch.index(slice(start, start + batch_size)).to(device)
            generated = model.generate({source: part.inputs[source]}, None, target)
            correct += int((_classify(classifier, target, generated).argmax(dim=1) == part.y).sum())
    finally:
        model.train(states[0])
        if isinstance(classifier, nn.Module):
            classifier.train(states[1])
    return correct / batch.size
