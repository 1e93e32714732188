"""The joint objective of survey Eq. (1): one shared latent, a loss per modality, a regulariser.

    min_theta  L = sum_m L_m(z, x_m; theta_m) + lambda * R(z)                      (1)

Here ``L_m`` is the mean squared reconstruction error of modality ``m`` decoded
from the shared ``z`` (in standardised units), and ``R`` is either the L1 norm
of ``z`` (sparse codes) or the KL divergence of a Gaussian code to the prior
``N(0, I)`` (then each encoder outputs a mean and a log-variance, and the
model is a VAE whose posterior is the average of the modality posteriors'
parameters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..data import drop_modalities
from .._checks import check_number, fill_absent
from .base import LatentModel, gaussian_kl, reparameterize

REGULARIZERS = ("l1", "kl")


class JointAutoencoder(LatentModel):
    """Per-modality encoders into one shared latent ``z``, per-modality decoders; survey Eq. (1).

    ``z`` fuses the codes ``h_m = E_m(x_m)`` (each ``(B, d)``) of the modalities
    present in each row by a masked mean, ``z = sum_m p_m h_m / sum_m p_m``
    (``p_m`` in {0, 1} the presence mask), so any non-empty subset of
    modalities gives a code, and every decoder ``D_m(z)`` reconstructs its
    modality from it: a missing modality is *generated* from the others.

    Loss (Eq. 1): ``sum_m L_m + lambda * R(z)`` with ``L_m`` the mean squared
    error over the rows where ``x_m`` is observed in the target, and

    - ``regularizer="l1"``: ``R(z) = sum_j |z_j|`` (sparsity), ``z`` deterministic;
    - ``regularizer="kl"``: ``E_m`` outputs ``(mu_m, logvar_m)``; the fused
      ``(mu, logvar)`` are masked means, ``z ~ N(mu, diag(exp(logvar)))`` while
      training (``z = mu`` in eval mode) and ``R(z) = KL(N(mu, sigma^2) || N(0, I))``.

    ``input_dropout``: while training, each observed modality is hidden from
    the encoder with this probability (at least one kept per row) and still
    reconstructed, which teaches the decoders to fill in a missing modality.

    Shapes: inputs ``{m: (B, *shapes[m])}``, ``present`` ``{m: (B,)}``;
    :meth:`encode` -> ``(B, latent_dim)``; :meth:`forward` -> reconstructions
    ``{m: (B, *shapes[m])}`` in the data's scale.
    """

    def __init__(
        self,
        shapes: Mapping[str, Sequence[int]],
        latent_dim: int = 16,
        *,
        regularizer: str = "l1",
        lam: float = 1e-3,
        input_dropout: float = 0.5,
        hidden: int = 128,
        stats: Mapping[str, tuple[float, float]] | None = None,
        encoders: Mapping[str, nn.Module] | None = None,
        decoders: Mapping[str, nn.Module] | None = None,
    ):
        super().__init__(shapes, stats)
        if regularizer not in REGULARIZERS:
            raise ValueError(f"unknown regularizer {regularizer!r}; expected one of {REGULARIZERS}")
        self.input_dropout = check_number(input_dropout, "input_dropout", low=0.0, high=1.0, high_open=True)
        self.lam = check_number(lam, "lam", low=0.0)
        self.latent_dim = check_number(latent_dim, "latent_dim", low=1, integer=True)
        check_number(hidden, "hidden", low=1, integer=True)
        self.regularizer = regularizer
        self.encoders = self._encoder_backbones(encoders, hidden, hidden)
        width = 2 * self.latent_dim if regularizer == "kl" else self.latent_dim
        # E_m: features (B, f_m) -> code h_m (B, d), or (mu_m, logvar_m) (B, 2d) for the KL regulariser
        self.heads = nn.ModuleDict({m: nn.Linear(e.out_dim, width) for m, e in self.encoders.items()})
        # D_m: z (B, d) -> x_hat_m (B, *shapes[m])
        self.decoders = self._decoders(decoders, self.latent_dim, hidden)

    # encoding -----------------------------------------------------------------------------
    def _codes(self, x: dict[str, Tensor]) -> Tensor:
        """Per-modality codes stacked: (B, M, d) or (B, M, 2d)."""
        return torch.stack([self.heads[m](self.encoders[m](x[m])) for m in self.modalities], dim=1)

    def _fuse(self, codes: Tensor, mask: Tensor) -> Tensor:
        """Masked mean over the present modalities: (B, M, k), (B, M) -> (B, k)."""
        keep = mask.unsqueeze(-1)  # (B, M, 1)
        # select (not multiply) so that an absent code can never leak, whatever it holds
        summed = torch.where(keep, codes, torch.zeros((), dtype=codes.dtype, device=codes.device)).sum(dim=1)
        return summed / keep.sum(dim=1).clamp(min=1).to(codes.dtype)

    def _latent(self, x: dict[str, Tensor], mask: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        self.require_some(mask, f"{type(self).__name__} inputs")
        fused = self._fuse(self._codes(x), mask)
        if self.regularizer == "l1":
            return fused, None, None
        mu, logvar = fused.chunk(2, dim=-1)  # (B, d) each
        logvar = logvar.clamp(-8.0, 8.0)  # keep exp(logvar) finite
        z = reparameterize(mu, logvar) if self.training else mu
        return z, mu, logvar

    def encode(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> Tensor:
        """The shared code ``z`` (B, latent_dim) from the observed modalities (the mean for ``"kl"`` in eval)."""
        x, mask = self.check_inputs(inputs, present)
        return self._latent(x, mask)[0]

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """Every modality from ``z``: ``{m: (B, *shapes[m])}`` in the data's scale."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z has shape {tuple(z.shape)}; expected (B, {self.latent_dim})")
        return {m: self.destandardize(m, self.decoders[m](z)) for m in self.modalities}

    def forward(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Reconstruct (or, for absent modalities, generate) every modality."""
        return self.decode(self.encode(inputs, present))

    def generate(
        self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None, target_modality: str = "image"
    ) -> Tensor:
        """``target_modality`` decoded from the observed modalities: (B, *shapes[target])."""
        self.check_modality(target_modality, "target modality")
        z = self.encode(inputs, present)
        return self.destandardize(target_modality, self.decoders[target_modality](z))

    # the objective of Eq. (1) -----------------------------------------------------------------
    def objective(
        self,
        inputs: Mapping[str, Tensor],
        present: Mapping[str, Tensor] | None = None,
        y: Tensor | None = None,
        *,
        encode_present: Mapping[str, Tensor] | None = None,
    ) -> dict:
        """``{"loss", "recon": {m: L_m}, "reg": R}`` for one batch; Eq. (1).

        ``present`` says which targets are observed (they are reconstructed);
        ``encode_present`` which of them the encoder sees (default: the same,
        minus ``input_dropout`` while training). ``y`` is unused.
        """
        x, mask = self.check_inputs(inputs, present)
        self.require_rows(mask, f"{type(self).__name__}.objective")
        seen = mask
        if encode_present is not None:
            _, seen = self.check_inputs(inputs, encode_present)
            if bool((seen & ~mask).any()):
                raise ValueError("encode_present marks a modality observed where present says it is absent")
        elif self.training and self.input_dropout > 0:
            # hide observed modalities from the encoder at random, keep >= 1 per row
            keep = {m: seen[:, j] for j, m in enumerate(self.modalities)}
            seed = int(torch.randint(0, 2**31 - 1, (1,)))
            _, keep = drop_modalities(x, self.input_dropout, seed=seed, present=keep)
            seen = torch.stack([keep[m] for m in self.modalities], dim=1)
        x_in = {m: fill_absent(x[m], seen[:, j]) for j, m in enumerate(self.modalities)}
        z, mu, logvar = self._latent(x_in, seen)
        recon = {}
        total = z.new_zeros(())
        for j, m in enumerate(self.modalities):
            rows = mask[:, j]
            if not bool(rows.any()):
                recon[m] = z.new_zeros(())
                continue
            # L_m: mean squared error of D_m(z) against x_m over the rows that observe x_m
            err = (self.decoders[m](z[rows]) - x[m][rows]).pow(2).flatten(1).mean(dim=1)  # (B_m,)
            recon[m] = err.mean()
            total = total + recon[m]
        if self.regularizer == "l1":
            # R(z) = ||z||_1, averaged over the batch
            reg = z.abs().sum(dim=1).mean()
        else:
            # R(z) = KL(q(z|x) || N(0, I)), averaged over the batch
            reg = gaussian_kl(mu, logvar).mean()
        return {"loss": total + self.lam * reg, "recon": recon, "reg": reg}
