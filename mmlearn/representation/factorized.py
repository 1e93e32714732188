"""MFM, the multimodal factorization model (Tsai, Liang, Zadeh, Morency, Salakhutdinov, ICLR 2019).

The representation is split in two kinds of factors:

- one *multimodal discriminative* factor ``Z_y``, inferred from all modalities,
  which alone predicts the label: ``y_hat = MLP(F_y)``, ``F_y = MLP(Z_y)``;
- one *modality-specific generative* factor ``Z_a(m)`` per modality, inferred
  from that modality only: ``F_a(m) = MLP(Z_a(m))``.

Each modality is decoded from both, ``x_hat_m = Dec_m([F_y; F_a(m)])``, and the
factors are pushed toward the prior ``N(0, I)`` with the maximum mean
discrepancy (a Wasserstein-autoencoder-style objective):

    L = CE(y_hat, y) + sum_m lambda_m ||x_hat_m - x_m||^2
        + lambda_mmd sum_{Z in {Z_y, Z_a(1..M)}} MMD(Z, N(0, I))

It is the factorised form of survey Eq. (1): reconstruction terms per modality
plus a regulariser on the latent, here with a supervised term on the shared part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_number, fill_absent
from ..models import MLPEncoder
from .base import LatentModel, MLPDecoder

KERNELS = ("rbf", "linear")


def _kernel(a: Tensor, b: Tensor, kernel: str, bandwidth: float) -> Tensor:
    """Kernel matrix ``K[i, j] = k(a_i, b_j)``: (n, d), (m, d) -> (n, m)."""
    if kernel == "linear":
        return a @ b.T
    # ||a_i - b_j||^2 = ||a_i||^2 + ||b_j||^2 - 2 a_i.b_j, clamped at 0 against rounding
    sq = (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2.0 * a @ b.T).clamp(min=0.0)
    return torch.exp(-sq / (2.0 * bandwidth**2))


def mmd(x: Tensor, y: Tensor, kernel: str = "rbf", bandwidth: float | None = None, *,
        unbiased: bool = False) -> Tensor:
    """Squared maximum mean discrepancy between samples ``x`` (n, d) and ``y`` (m, d); a scalar.

    ``MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y)`` (Gretton et al., JMLR 2012),
    the prior-matching term of MFM (Tsai et al. 2019) with ``y ~ N(0, I)``.

    - ``kernel="rbf"``: ``k(u, v) = exp(-||u - v||^2 / (2 h^2))``. The default
      bandwidth ``h = d / sqrt(2)`` gives ``exp(-||u - v||^2 / d^2)``, the kernel
      of the MFM / WAE code. ``kernel="linear"``: ``k(u, v) = u . v`` (then the
      biased estimate is ``||mean(x) - mean(y)||^2``).
    - ``unbiased=False`` (default, as in the MFM code): the biased V-statistic,
      every mean over all pairs including ``i = j``; always ``>= 0``.
      ``unbiased=True``: the U-statistic, the within-sample means leave out
      ``i = j``; unbiased for ``MMD^2`` but can be slightly negative.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor):
            raise TypeError(f"mmd: {name} must be a Tensor (n, d), got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"mmd: {name} has shape {tuple(t.shape)}; expected (n, d)")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd: x has shape {tuple(x.shape)} and y {tuple(y.shape)}; they must share d")
    n, m = len(x), len(y)
    if unbiased and (n < 2 or m < 2):
        raise ValueError(f"mmd: the unbiased estimate needs at least 2 points per sample, got {n} and {m}")
    d = x.shape[1]
    h = check_number(bandwidth, "mmd: bandwidth", low=0.0, low_open=True) if bandwidth is not None else d / 2**0.5
    kxx, kyy, kxy = _kernel(x, x, kernel, h), _kernel(y, y, kernel, h), _kernel(x, y, kernel, h)
    if unbiased:
        # U-statistic: (1 / (n (n - 1))) sum_{i != j} k(x_i, x_j), same for y
        exx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        eyy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    else:
        # V-statistic: (1 / n^2) sum_{i, j} k(x_i, x_j), same for y
        exx, eyy = kxx.mean(), kyy.mean()
    return exx + eyy - 2.0 * kxy.mean()


class FactorizedModel(LatentModel):
    """MFM (Tsai et al., ICLR 2019): a shared discriminative factor and modality-specific generative factors.

    Factors (all deterministic, matched to ``N(0, I)`` by MMD):

    - ``Z_y`` (B, shared_dim): from every modality, ``Linear([h_1; ...; h_M])``
      over per-modality features ``h_m`` (absent modalities zero-filled);
      the paper uses a multimodal recurrent encoder (MFN) here;
    - ``Z_a(m)`` (B, specific_dim): from modality ``m`` alone (an MLP; the
      paper uses a unimodal LSTM).

    Maps: ``F_y = ReLU(Linear(Z_y))``, ``F_a(m) = ReLU(Linear(Z_a(m)))`` (B, factor_dim);
    label ``y_hat = Linear(F_y)`` (B, n_classes), a function of ``Z_y`` only;
    reconstruction ``x_hat_m = Dec_m([F_y; F_a(m)])`` (B, *shapes[m]).

    Loss (:meth:`objective`): ``CE(y_hat, y) + sum_m lambda_recon * L_m +
    lambda_mmd * sum_Z MMD(Z, N(0, I))``, with ``L_m`` the mean squared error
    of the standardised modality over the rows that observe it (the paper uses
    a sum of squares with per-modality weights) and a fresh prior sample
    ``N(0, I)`` of the batch size at every step. :meth:`forward` returns the
    logits, so :func:`mmlearn.train.evaluate` works on the trained model.
    """

    def __init__(
        self,
        shapes: Mapping[str, Sequence[int]],
        n_classes: int,
        *,
        shared_dim: int = 16,
        specific_dim: int = 4,
        factor_dim: int = 32,
        hidden: int = 128,
        lambda_recon: float | Mapping[str, float] = 1.0,
        lambda_mmd: float = 1.0,
        stats: Mapping[str, tuple[float, float]] | None = None,
    ):
        super().__init__(shapes, stats)
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
        for name, v in (("shared_dim", shared_dim), ("specific_dim", specific_dim), ("factor_dim", factor_dim),
                        ("hidden", hidden)):
            check_number(v, name, low=1, integer=True)
        if isinstance(lambda_recon, Mapping):
            for m in lambda_recon:
                if m not in self.shapes:
                    raise ValueError(f"lambda_recon: unknown modality {m!r}; expected one of {self.modalities}")
            lambdas = {m: check_number(lambda_recon.get(m, 1.0), f"lambda_recon[{m!r}]", low=0.0) for m in self.shapes}
        else:
            value = check_number(lambda_recon, "lambda_recon", low=0.0)
            lambdas = {m: value for m in self.shapes}
        self.lambda_recon = lambdas
        self.lambda_mmd = check_number(lambda_mmd, "lambda_mmd", low=0.0)
        self.n_classes = n_classes
        self.shared_dim, self.specific_dim = int(shared_dim), int(specific_dim)
        # encoder of Z_y: per-modality features h_m (B, hidden), then Linear over [h_1; ...; h_M]
        self.shared_encoders = self._encoder_backbones(None, hidden, hidden)
        self.shared_head = nn.Linear(hidden * len(self.shapes), self.shared_dim)
        # encoders of Z_a(m): modality m alone -> (B, specific_dim), linear output (a free latent)
        self.specific_encoders = nn.ModuleDict(
            {m: MLPEncoder(s, self.specific_dim, hidden=(hidden,), activation=False) for m, s in self.shapes.items()}
        )
        # F_y = MLP(Z_y), F_a(m) = MLP(Z_a(m))
        self.shared_map = nn.Sequential(nn.Linear(self.shared_dim, factor_dim), nn.ReLU())
        self.specific_maps = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(self.specific_dim, factor_dim), nn.ReLU()) for m in self.shapes}
        )
        # Dec_m([F_y; F_a(m)]) -> x_hat_m
        self.decoders = nn.ModuleDict({m: MLPDecoder(2 * factor_dim, s, hidden=(hidden,)) for m, s in self.shapes.items()})
        # y_hat = MLP(F_y): the label sees the shared factor only
        self.classifier = nn.Linear(factor_dim, n_classes)

    def _factors(self, x: dict[str, Tensor], mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        feats = []
        for j, m in enumerate(self.modalities):
            h = self.shared_encoders[m](x[m])  # (B, hidden)
            feats.append(fill_absent(h, mask[:, j]))  # absent modality: zero features (selected, not multiplied)
        z_y = self.shared_head(torch.cat(feats, dim=1))  # (B, M * hidden) -> (B, shared_dim)
        z_a = {m: self.specific_encoders[m](x[m]) for m in self.modalities}  # (B, specific_dim) each
        return z_y, z_a

    def factors(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> dict:
        """``{"shared": Z_y (B, shared_dim), "specific": {m: Z_a(m) (B, specific_dim)}}``."""
        x, mask = self.check_inputs(inputs, present)
        self.require_some(mask, f"{type(self).__name__} inputs")
        z_y, z_a = self._factors(x, mask)
        return {"shared": z_y, "specific": z_a}

    def predict_from_factors(self, shared: Tensor) -> Tensor:
        """``y_hat = Linear(F_y(Z_y))``: logits (B, n_classes) from the shared factor alone."""
        if shared.dim() != 2 or shared.shape[1] != self.shared_dim:
            raise ValueError(f"shared factor has shape {tuple(shared.shape)}; expected (B, {self.shared_dim})")
        return self.classifier(self.shared_map(shared))

    def decode_from_factors(self, shared: Tensor, specific: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``x_hat_m = Dec_m([F_y; F_a(m)])`` for every modality, in the data's scale."""
        f_y = self.shared_map(shared)
        out = {}
        for m in self.modalities:
            if m not in specific:
                raise ValueError(f"specific factors: missing modality {m!r}; got {sorted(specific)}")
            f_a = self.specific_maps[m](specific[m])
            out[m] = self.destandardize(m, self.decoders[m](torch.cat([f_y, f_a], dim=1)))
        return out

    def forward(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> Tensor:
        """Logits (B, n_classes), computed from the shared factor ``Z_y`` only."""
        return self.predict_from_factors(self.factors(inputs, present)["shared"])

    def reconstruct(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        f = self.factors(inputs, present)
        return self.decode_from_factors(f["shared"], f["specific"])

    def objective(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None,
                  y: Tensor | None = None) -> dict:
        """``{"loss", "ce", "recon": {m: L_m}, "mmd": {factor: MMD}}`` for one batch."""
        if y is None:
            raise ValueError("FactorizedModel.objective needs the labels y (B,): the shared factor is discriminative")
        x, mask = self.check_inputs(inputs, present)
        self.require_rows(mask, f"{type(self).__name__}.objective")
        self.require_some(mask, f"{type(self).__name__} inputs")
        if not isinstance(y, Tensor):
            raise TypeError(f"labels y must be a LongTensor ({len(mask)},), got {type(y).__name__}")
        if tuple(y.shape) != (len(mask),):
            raise ValueError(f"labels y have shape {tuple(y.shape)}; expected ({len(mask)},)")
        if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise TypeError(f"labels y must be integer class indices, got dtype {y.dtype}")
        if bool(((y < 0) | (y >= self.n_classes)).any()):
            raise ValueError(f"labels y must lie in [0, {self.n_classes}), got values in [{int(y.min())}, {int(y.max())}]")
        y = y.to(device=mask.device, dtype=torch.long)
        z_y, z_a = self._factors(x, mask)
        f_y = self.shared_map(z_y)
        # CE(y_hat, y) with y_hat = MLP(F_y)
        ce = F.cross_entropy(self.classifier(f_y), y)
        loss = ce
        recon = {}
        for j, m in enumerate(self.modalities):
            rows = mask[:, j]
            if not bool(rows.any()):
                recon[m] = ce.new_zeros(())
                continue
            # L_m = ||Dec_m([F_y; F_a(m)]) - x_m||^2 (mean over elements) on the rows that observe x_m
            x_hat = self.decoders[m](torch.cat([f_y[rows], self.specific_maps[m](z_a[m][rows])], dim=1))
            recon[m] = (x_hat - x[m][rows]).pow(2).mean()
            loss = loss + self.lambda_recon[m] * recon[m]
        # lambda_mmd * sum_Z MMD(Z, N(0, I)), a fresh prior sample each step
        mmds = {"shared": mmd(z_y, torch.randn_like(z_y))}
        for j, m in enumerate(self.modalities):
            rows = mask[:, j]
            if int(rows.sum()) > 1:
                mmds[m] = mmd(z_a[m][rows], torch.randn_like(z_a[m][rows]))
        loss = loss + self.lambda_mmd * sum(mmds.values())
        return {"loss": loss, "ce": ce, "recon": recon, "mmd": mmds}
