"""EmbraceNet: docking layers, then each output component taken from one randomly chosen modality."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Fusion, register_fusion, stack_present

EVAL_SELECTION = ("sample", "expectation")


@register_fusion("embracenet")
class EmbraceNetFusion(Fusion):
    """EmbraceNet (Choi & Lee, "EmbraceNet: A robust deep learning architecture
    for multimodal classification", Information Fusion 2019); survey Sec. IV
    and XI (missing modalities)::

        d_m      = ReLU( W_m z_m + b_m )                          (B, c)   docking, c = out_dim
        p_{b,m}  = p_m avail_{b,m} / sum_j p_j avail_{b,j}        (B, M)   selection probabilities
        j_{b,k}  ~ Categorical(p_b)   for every component k        (B, c)   with replacement
        e_{b,k}  = d_{j_{b,k}, b, k}                              (B, c)   one-hot mask times stack, summed

    Every output component comes from exactly one modality, so no component
    can rely on the joint presence of two: the network learns to work with
    whatever subset is available. Missing-aware by design: an absent modality
    has ``avail = 0`` and is never selected, so with one modality available
    the output is exactly its docking output.

    Options:

    - ``probabilities``: ``{modality: p_m}``, a fixed prior (default uniform);
    - ``eval_selection``: what happens in ``eval()`` mode. ``"sample"``
      (default) follows the paper and the official code, which sample at
      inference too; to make evaluation reproducible the draw uses a
      generator seeded with ``seed`` on every call (same batch, same output).
      ``"expectation"`` replaces the draw by its mean, ``e_{b,k} = sum_m
      p_{b,m} d_{m,b,k}`` (deterministic, not in the paper). Training always samples
      (from the global torch generator, so ``torch.manual_seed`` fixes it).

    The official example also trains with modality dropout (each sample keeps
    one random modality half of the time): use
    :func:`mmlearn.data.drop_modalities` in ``fit(train_transform=...)``.
    :meth:`selection_shares` gives the fraction of components each modality
    supplied per sample.

    ``features[m]``: (B, in_dims[m]) -> (B, out_dim).
    """

    handles_missing = True

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        probabilities: Mapping[str, float] | None = None,
        eval_selection: str = "sample",
        seed: int = 0,
    ):
        super().__init__(in_dims, out_dim)
        if eval_selection not in EVAL_SELECTION:
            raise ValueError(f"eval_selection must be one of {EVAL_SELECTION}, got {eval_selection!r}")
        self.eval_selection = eval_selection
        self.seed = int(seed)
        # W_m, b_m: docking layers d_m -> c
        self.docking = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in self.in_dims.items()})
        if probabilities is None:
            prior = torch.ones(len(self.in_dims))
        else:
            for m in probabilities:
                if m not in self.in_dims:
                    raise ValueError(f"probabilities: unknown modality {m!r}; expected one of {self.modalities}")
            prior = torch.tensor([float(probabilities.get(m, 0.0)) for m in self.modalities])
            if (prior < 0).any() or prior.sum() <= 0:
                raise ValueError(f"probabilities must be non-negative with a positive sum, got {dict(probabilities)}")
        # p_m, a fixed prior (a buffer: it moves with .to(device) but is not trained)
        self.register_buffer("prior", prior / prior.sum())

    def dock(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Docking outputs ``d_m = ReLU(W_m z_m + b_m)``, each (B, c)."""
        x, _ = self.check(features, present)
        return {m: F.relu(self.docking[m](x[m])) for m in self.modalities}

    def selection_probabilities(self, mask: Mapping[str, Tensor]) -> Tensor:
        """``p_{b,m}`` renormalised over the available modalities: (B, M).

        A sample with no modality available gets the prior (its output is zeroed in forward).
        """
        avail = stack_present(mask, self.modalities, self.prior.dtype)  # (B, M)
        p = self.prior * avail
        total = p.sum(dim=1, keepdim=True)
        return torch.where(total > 0, p / total.clamp_min(1e-12), self.prior.expand_as(p))

    def _toggles(self, p: Tensor) -> Tensor:
        """One-hot modality choice per component: (B, c, M); the mean over c for "expectation"."""
        if not self.training and self.eval_selection == "expectation":
            return p.unsqueeze(1).expand(-1, self.out_dim, -1)
        generator = None
        if not self.training:
            generator = torch.Generator(device=p.device)
            generator.manual_seed(self.seed)
        # j_{b,k} ~ Categorical(p_b), k = 1..c, with replacement: (B, c)
        idx = torch.multinomial(p, self.out_dim, replacement=True, generator=generator)
        return F.one_hot(idx, len(self.in_dims)).to(p.dtype)

    def _embrace(self, features, present):
        x, mask = self.check(features, present)
        # d_m: stacked (B, c, M)
        docked = torch.stack([F.relu(self.docking[m](x[m])) for m in self.modalities], dim=-1)
        p = self.selection_probabilities(mask)  # (B, M)
        toggles = self._toggles(p)  # (B, c, M)
        # e_{b,k} = sum_m toggle_{b,k,m} d_{m,b,k}: (B, c)
        e = (docked * toggles).sum(dim=-1)
        anything = stack_present(mask, self.modalities, torch.bool).any(dim=1, keepdim=True)
        return e * anything.to(e.dtype), toggles

    def selection_shares(self, features, present=None) -> Tensor:
        """Fraction of the c components taken from each modality, per sample: (B, M), rows sum to 1.

        Uses the same selection as a forward pass in the current mode (in
        training mode: a fresh random draw).
        """
        _, toggles = self._embrace(features, present)
        return toggles.mean(dim=1)

    def forward(self, features, present=None) -> Tensor:
        return self._embrace(features, present)[0]
