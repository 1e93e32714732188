"""Low-rank Multimodal Fusion (LMF): TFN's linear map in rank-r factored form, never forming the tensor."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .._checks import check_number
from .base import Fusion, register_fusion
from .early import ACTIVATIONS
from .tensor import append_one


@register_fusion("low_rank")
class LowRankFusion(Fusion):
    """Low-rank multimodal fusion (Liu et al., "Efficient Low-rank Multimodal
    Fusion with Modality-Specific Factors", ACL 2018); survey Sec. IV (Table I)::

        z~_m = [1; z_m]                                            (B, d_m + 1)
        h    = ReLU( sum_{i=1}^r  lambda_i  prod_m ( z~_m W_m^(i) )  + b )
               with W_m^(i): (d_m + 1, out_dim), prod_m elementwise   (B, out_dim)

    This is TFN's ``W vec(Z) + b`` with the weight tensor constrained to rank r::

        W = sum_i lambda_i  W_1^(i) (x) W_2^(i) (x) ... (x) W_M^(i)

    (:meth:`full_weight` rebuilds it; a test checks the two agree). The cost is
    ``r * sum_m (d_m + 1) * out_dim`` parameters and multiply-adds per sample
    instead of ``prod_m (d_m + 1) * out_dim``: linear, not exponential, in M.
    ``lambda`` are the learned fusion weights of the official code (the paper
    sums with equal weights; ``learn_lambda=False`` keeps them at 1).

    ``features[m]``: (B, in_dims[m]) -> (B, out_dim). Options: ``rank`` (4),
    ``activation`` (``"relu"``), ``learn_lambda`` (True).
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        rank: int = 4,
        activation: str = "relu",
        learn_lambda: bool = True,
    ):
        super().__init__(in_dims, out_dim)
        rank = check_number(rank, "rank", low=1, integer=True)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        self.rank = rank
        # W_m^(i) for i = 1..r, stacked: (r, d_m + 1, out_dim) per modality
        self.factors = nn.ParameterDict(
            {m: nn.Parameter(torch.empty(rank, d + 1, out_dim)) for m, d in self.in_dims.items()}
        )
        for f in self.factors.values():
            for i in range(rank):
                nn.init.xavier_normal_(f.data[i])
        # lambda: (r,) fusion weights over the rank-one terms
        if learn_lambda:
            self.lambdas = nn.Parameter(torch.full((rank,), 1.0 / rank))
        else:
            self.register_buffer("lambdas", torch.ones(rank))
        # b: (out_dim,)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.act = ACTIVATIONS[activation]()

    def pre_activation(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> Tensor:
        """``sum_i lambda_i prod_m (z~_m W_m^(i)) + b`` before the activation: (B, out_dim)."""
        x, _ = self.check(features, present)
        prod = None
        for m in self.modalities:
            zm = append_one(x[m])  # z~_m: (B, d_m + 1)
            # z~_m W_m^(i) for every i: (B, d_m + 1) x (r, d_m + 1, out) -> (B, r, out)
            proj = torch.einsum("bd,rdo->bro", zm, self.factors[m])
            # prod_m, elementwise over modalities
            prod = proj if prod is None else prod * proj
        # sum_i lambda_i (...) + b: (B, r, out) -> (B, out)
        return torch.einsum("r,bro->bo", self.lambdas, prod) + self.bias

    def forward(self, features, present=None) -> Tensor:
        return self.act(self.pre_activation(features, present))

    def full_weight(self) -> Tensor:
        """Rebuild TFN's weight ``W = sum_i lambda_i W_1^(i) (x) ... (x) W_M^(i)``: (out_dim, prod_m (d_m + 1)).

        Columns are in the row-major order of :meth:`TensorFusion.tensor`, so
        ``relu(F.linear(tfn.tensor(x), lmf.full_weight(), lmf.bias)) == lmf(x)``.
        Only for checking and teaching: this forms the tensor LMF avoids.
        """
        names = self.modalities
        w = self.factors[names[0]]  # (r, d_1 + 1, out)
        for m in names[1:]:
            f = self.factors[m]  # (r, d_m + 1, out)
            # (r, D, 1, out) * (r, 1, d_m + 1, out) -> (r, D * (d_m + 1), out)
            w = (w.unsqueeze(2) * f.unsqueeze(1)).flatten(1, 2)
        # sum_i lambda_i: (r, D, out) -> (out, D)
        return torch.einsum("r,rdo->od", self.lambdas, w)
