"""Multimodal Information Bottleneck (MIB): Mai, Zeng, Hu, IEEE TMM 2022.

An information bottleneck keeps what predicts the label and squeezes out the
rest: a Gaussian encoder ``q(z|h) = N(mu(h), diag(sigma^2(h)))`` is trained with
the task loss plus ``beta * KL(q(z|h) || N(0, I))``. MIB puts the bottleneck
before fusion, after it, or both.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .._checks import check_number
from .base import Fusion, register_fusion

VARIANTS = ("early", "late", "full")


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` per row, (B, d) -> (B,)::

        KL = 0.5 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


class GaussianBottleneck(nn.Module):
    """``h -> ReLU(W h) -> (mu, logvar)``; ``z = mu + sigma * eps`` in training, ``z = mu`` in eval.

    ``forward`` returns ``(z, kl)`` with ``kl`` the per-row KL to ``N(0, I)``, (B,).
    """

    def __init__(self, in_dim: int, latent_dim: int, hidden: int):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        a = self.hidden(h)
        mu, logvar = self.mu(a), self.logvar(a).clamp(-20.0, 20.0)
        if self.training:
            # reparameterisation: z = mu + sigma * eps, eps ~ N(0, I); gradients reach mu and logvar
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        else:
            z = mu  # eval: the mean, deterministic
        return z, gaussian_kl(mu, logvar)


@register_fusion("information_bottleneck")
class InformationBottleneckFusion(Fusion):
    """MIB (Mai, Zeng, Hu, IEEE TMM 2022) on the fusion contract, three variants::

        early (E-MIB): z = IB([x_1; ...; x_M])                              -> (B, out_dim)
        late  (L-MIB): z_m = IB_m(x_m);  out = W [z_1; ...; z_M] + b         -> (B, out_dim)
        full  (C-MIB): z_m = IB_m(x_m);  out = IB([z_1; ...; z_M])           -> (B, out_dim)

    each ``IB`` a :class:`GaussianBottleneck` (hidden width ``hidden``; the
    per-modality latents have width ``latent_dim``, default ``out_dim``).
    The forward pass stores ``self.kl``: the sum over the variant's bottlenecks
    of the batch mean of the per-sample KL (summed over latent dimensions).
    Train with ``fit(model, ..., extra_losses=[mib_loss(beta)])``, i.e.
    ``loss = CE + beta * kl``; ``beta`` defaults to the module's ``beta``.
    Eval mode uses the means (deterministic).

    Where this differs from the authors' code (``TmacMai/Multimodal-Information-Bottleneck``,
    ``emib.py``/``lmib.py``/``cmib.py``):

    - they parameterise ``sigma = softplus(W_sigma a - 5)``; here ``logvar = W a``
      (the usual VAE form; sigma starts near 1, not near 0.0067);
    - their KL takes the mean over latent dimensions and batch; here it is summed
      over dimensions and averaged over the batch (the closed form of the KL of one
      sample), so ``beta`` is not on the same scale as their 1e-3;
    - each of their bottlenecks has its own prediction head and L1 (regression)
      loss added to the total; here only the final output is supervised (the
      classifier's cross-entropy), the bottlenecks through ``beta * kl``;
    - they also sample ``z`` at test time; here eval uses the mean;
    - fusion of the latents is concatenation only (theirs also offers tensor,
      low-rank, graph, addition and multiplication).

    ``features[m]``: (B, in_dims[m]) -> (B, out_dim).
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        variant: str = "early",
        latent_dim: int | None = None,
        hidden: int = 64,
        beta: float = 1e-3,
    ):
        super().__init__(in_dims, out_dim)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        hidden = check_number(hidden, "hidden", low=1, integer=True)
        latent = out_dim if latent_dim is None else check_number(latent_dim, "latent_dim", low=1, integer=True)
        self.beta = check_number(beta, "beta", low=0.0)
        self.variant = variant
        total = sum(self.in_dims.values())
        if variant == "early":
            self.fused_ib = GaussianBottleneck(total, out_dim, hidden)
        else:
            self.modality_ib = nn.ModuleDict({m: GaussianBottleneck(d, latent, hidden) for m, d in self.in_dims.items()})
            width = latent * len(self.in_dims)
            if variant == "late":
                self.fuse = nn.Linear(width, out_dim)
            else:
                self.fused_ib = GaussianBottleneck(width, out_dim, hidden)
        self.kl: Tensor | None = None

    def forward(self, features, present=None) -> Tensor:
        x, _ = self.check(features, present)
        kls = []
        if self.variant == "early":
            # E-MIB: one bottleneck on [x_1; ...; x_M]
            out, kl = self.fused_ib(torch.cat([x[m] for m in self.modalities], dim=-1))
            kls.append(kl)
        else:
            zs = []
            for m in self.modalities:  # z_m = IB_m(x_m)
                z, kl = self.modality_ib[m](x[m])
                zs.append(z)
                kls.append(kl)
            zcat = torch.cat(zs, dim=-1)
            if self.variant == "late":
                out = self.fuse(zcat)
            else:
                out, kl = self.fused_ib(zcat)
                kls.append(kl)
        # sum over bottlenecks of the batch-mean KL
        self.kl = torch.stack([k.mean() for k in kls]).sum()
        return out

    def regularizer(self) -> Tensor | None:
        """``beta * kl`` of the last training forward pass (``None`` before any or in eval mode)."""
        return self.kl_loss() if self.training and self.kl is not None else None

    def kl_loss(self, beta: float | None = None) -> Tensor:
        """``beta * kl`` of the last forward pass (``beta`` defaults to ``self.beta``)."""
        if self.kl is None:
            raise RuntimeError("kl_loss: call the fusion (forward) first; no KL has been computed yet")
        b = self.beta if beta is None else check_number(beta, "beta", low=0.0)
        return b * self.kl


def mib_loss(beta: float | None = None):
    """An ``extra_losses`` term for :func:`mmlearn.train.fit`: ``beta * model.fusion.kl``.

    ``beta`` defaults to the fusion's own ``beta``.
    """
    if beta is not None:
        beta = check_number(beta, "beta", low=0.0)

    def term(model, out, batch) -> Tensor:
        fusion = getattr(model, "fusion", None)
        if not isinstance(fusion, InformationBottleneckFusion):
            raise TypeError(f"mib_loss needs a model whose .fusion is an InformationBottleneckFusion, "
                            f"got {type(fusion).__name__}")
        return fusion.kl_loss(beta)

    return term
