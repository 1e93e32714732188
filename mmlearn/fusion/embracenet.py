"""EmbraceNet: docking layers, then each output component taken from one randomly chosen modality."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_number
from .base import Fusion, check_weights, register_fusion, stack_present

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
    - ``eval_selection``: what happens in ``eval()`` mode. Training always
      samples ``j_{b,k}`` independently per sample and component (from the
      global torch generator, so ``torch.manual_seed`` fixes it), as the paper
      and the official code do. The official code samples at inference too, from
      the global generator, so a sample's prediction there depends on the draws
      spent on the rows before it (batch size and row order); here an eval
      output depends on its own row only:

      - ``"sample"`` (default): still a draw ``j_{b,k} ~ Categorical(p_b)``, but
        a deterministic one, by inverse CDF from uniforms ``u_k`` fixed by
        ``seed`` and the component index ``k`` alone::

            u_k ~ U[0, 1)  (k = 1..c, from a generator seeded with ``seed``)
            j_{b,k} = min { j : sum_{i <= j} p_{b,i} > u_k }

        Per sample and component this is exactly the paper's distribution, and
        the components are independent; it differs from the paper in that the
        draw is the same on every call (reproducible) and that two samples with
        the same ``p_b`` (the same modalities present) use the same selection.
        A row's output is therefore the same alone, in any batch, at any position.
      - ``"expectation"``: the draw replaced by its mean, ``e_{b,k} = sum_m
        p_{b,m} d_{m,b,k}`` (deterministic, smooth, not in the paper).

    - ``seed``: the seed of the eval-mode uniforms ``u_k``.

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
        self.seed = check_number(seed, "seed", integer=True)
        # W_m, b_m: docking layers d_m -> c
        self.docking = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in self.in_dims.items()})
        if probabilities is None:
            prior = torch.ones(len(self.in_dims))
        else:
            # each p_m finite and >= 0, positive sum (NaN rejected)
            prior = check_weights(probabilities, self.modalities, "probabilities")
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
        avail = stack_present(mask, self.modalities, torch.bool)  # (B, M)
        prior = self.prior.expand(avail.shape)
        p = torch.where(avail, prior, torch.zeros_like(prior))
        total = p.sum(dim=1, keepdim=True)
        return torch.where(total > 0, p / total.clamp_min(1e-12), prior)

    def eval_uniforms(self, device: torch.device | None = None) -> Tensor:
        """The fixed uniforms ``u_k`` (c,) of eval-mode ``"sample"`` selection, from ``seed`` alone (float64)."""
        generator = torch.Generator().manual_seed(self.seed)  # on the CPU: the same numbers on every device
        return torch.rand(self.out_dim, generator=generator, dtype=torch.float64).to(device)

    def _indices(self, p: Tensor) -> Tensor:
        """Selected modality ``j_{b,k}`` per sample and component: (B, c)."""
        if self.training:
            # j_{b,k} ~ Categorical(p_b), k = 1..c, with replacement, independent draws (the paper's)
            return torch.multinomial(p, self.out_dim, replacement=True)
        # eval: inverse CDF at the fixed u_k, j = min { j : cdf_j > u_k }; row b uses only p_b and u
        cdf = p.to(torch.float64).cumsum(dim=1)  # (B, M)
        # the last modality with p > 0 gets cdf = inf: rounding can never select past it (nor an absent one)
        positive = p > 0
        M = p.shape[1]
        last = (M - 1) - positive.flip(1).to(torch.int64).argmax(dim=1, keepdim=True)  # (B, 1)
        cdf = torch.where(torch.arange(M, device=p.device) >= last, torch.full_like(cdf, float("inf")), cdf)
        u = self.eval_uniforms(p.device).expand(p.shape[0], -1).contiguous()  # (B, c)
        return torch.searchsorted(cdf, u, right=True)

    def _toggles(self, p: Tensor) -> Tensor:
        """One-hot modality choice per component: (B, c, M); the mean over c for "expectation"."""
        if not self.training and self.eval_selection == "expectation":
            return p.unsqueeze(1).expand(-1, self.out_dim, -1)
        return F.one_hot(self._indices(p), len(self.in_dims)).to(p.dtype)

    def _embrace(self, features, present):
        x, mask = self.check(features, present)
        # d_m: stacked (B, c, M)
        docked = torch.stack([F.relu(self.docking[m](x[m])) for m in self.modalities], dim=-1)
        p = self.selection_probabilities(mask).to(docked.dtype)  # (B, M)
        toggles = self._toggles(p)  # (B, c, M)
        # e_{b,k} = sum_m toggle_{b,k,m} d_{m,b,k}: (B, c); an unselected (or absent) modality is dropped by
        # selection, so nothing it holds can reach e
        e = torch.where(toggles > 0, toggles * docked, torch.zeros_like(docked)).sum(dim=-1)
        anything = stack_present(mask, self.modalities, torch.bool).any(dim=1, keepdim=True)
        return torch.where(anything, e, torch.zeros_like(e)), toggles

    def selection_shares(self, features, present=None) -> Tensor:
        """Fraction of the c components taken from each modality, per sample: (B, M), rows sum to 1.

        Uses the same selection as a forward pass in the current mode (in
        training mode: a fresh random draw).
        """
        _, toggles = self._embrace(features, present)
        return toggles.mean(dim=1)

    def forward(self, features, present=None) -> Tensor:
        return self._embrace(features, present)[0]
