"""Cross-modal attention fusion: each modality's tokens attend to the other modalities' tokens (MulT's crossmodal layer)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_number
from .base import Fusion, register_fusion

NORMS = ("pre", "post")


class CrossModalBlock(nn.Module):
    """One crossmodal transformer layer of MulT (Tsai et al., ACL 2019; official code
    ``yaohungt/Multimodal-Transformer``, ``modules/transformer.py``: ``TransformerEncoderLayer``,
    whose ``normalize_before`` is hard-wired to ``True``, followed by the encoder's final LayerNorm).

    ``norm="pre"`` (default, as in MulT): the *same* LayerNorm ``LN_1`` is applied to the
    query and to the keys/values before attention, residual on the raw query; ``LN_2``
    before the feed-forward block; a final ``LN_out`` after the layer (MulT's
    ``TransformerEncoder.layer_norm``, applied once after its stack of layers)::

        h   = q + Drop( MHA( Q = LN_1(q), K = V = LN_1(kv), key_padding_mask ) )    (B, T_q, dim)
        h   = h + Drop( W_2 Drop( ReLU( W_1 LN_2(h) + b_1 ) ) + b_2 )               W_1: (ffn_mult dim, dim)
        out = LN_out( h )

    ``norm="post"`` (the original Transformer's order, this module's earlier default)::

        h   = LN_1( q + Drop( MHA( Q = q, K = V = kv, key_padding_mask ) ) )
        out = LN_2( h + Drop( FFN(h) ) )

    As in MulT: MHA scales ``Q K^T`` by ``(dim / heads)^-1/2``; ``dropout`` acts
    where MulT puts its ``attn_dropout`` (on the attention weights), ``relu_dropout``
    (after the ReLU) and ``res_dropout`` (on each branch before its residual add),
    here one rate for all three; the FFN is ``4 * dim`` wide (``ffn_mult=4``);
    linear layers start Xavier-uniform with zero bias. Left out (they belong to
    MulT's ``TransformerEncoder`` around the layers, see
    :class:`CrossAttentionFusion`): the input scaling by ``sqrt(dim)``, the
    sinusoidal positional embeddings and the embedding dropout; and MulT stacks
    several such layers, here there is one per target modality.

    A row whose every key is masked (no other modality present) gets no
    attention update (``h = q``); MulT never meets this case.
    """

    def __init__(self, dim: int, heads: int, ffn_mult: int = 4, dropout: float = 0.0, norm: str = "pre"):
        super().__init__()
        dim = check_number(dim, "dim", low=1, integer=True)
        heads = check_number(heads, "heads", low=1, integer=True)
        ffn_mult = check_number(ffn_mult, "ffn_mult", low=1, integer=True)
        dropout = check_number(dropout, "dropout", low=0.0, high=1.0, high_open=True)
        if dim % heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.norm = norm
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_mult * dim, dim)
        )
        self.norm2 = nn.LayerNorm(dim)
        # MulT's final LayerNorm after the stack (pre-norm only: post-norm already ends with one)
        self.norm_out = nn.LayerNorm(dim) if norm == "pre" else None
        self.drop = nn.Dropout(dropout)  # MulT's res_dropout
        # MulT's init: Xavier-uniform weights, zero biases (nn.MultiheadAttention does this for in_proj already)
        for lin in (self.ffn[0], self.ffn[-1], self.attn.out_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _attend(self, q: Tensor, kv: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        if key_padding_mask is None:
            return self.attn(q, kv, kv, need_weights=False)[0]
        # rows whose every key is masked would give NaN: unmask them, then drop their update (selected, not multiplied)
        empty = key_padding_mask.all(dim=1)  # (B,)
        mask = key_padding_mask & ~empty.unsqueeze(1)
        attended = self.attn(q, kv, kv, key_padding_mask=mask, need_weights=False)[0]
        return torch.where(empty.view(-1, 1, 1), torch.zeros_like(attended), attended)

    def forward(self, q: Tensor, kv: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        if self.norm == "post":
            h = self.norm1(q + self.drop(self._attend(q, kv, key_padding_mask)))
            return self.norm2(h + self.drop(self.ffn(h)))
        # pre-norm, MulT: one LayerNorm for the query and the keys/values
        h = q + self.drop(self._attend(self.norm1(q), self.norm1(kv), key_padding_mask))
        h = h + self.drop(self.ffn(self.norm2(h)))
        return self.norm_out(h)


@register_fusion("cross_attention")
class CrossAttentionFusion(Fusion):
    """Cross-modal attention fusion after the Multimodal Transformer
    (Tsai et al., "Multimodal Transformer for Unaligned Multimodal Language
    Sequences" (MulT), ACL 2019); survey Sec. IV (attention-based intermediate fusion)::

        X_m  = tokens of modality m + e_m                        (B, T_m, dim)  e_m: modality embedding
        X_~m = [X_j for j != m]                                  (B, sum_{j!=m} T_j, dim)
        H_m  = CrossModalBlock_m( Q = X_m, K = V = X_~m )        (B, T_m, dim)
        h    = ReLU( W [mean_t H_1; ...; mean_t H_M] + b )       (B, out_dim)

    ``CrossModalBlock`` is MulT's crossmodal layer: pre-norm by default
    (``norm="pre"``: one LayerNorm on query and keys/values, attention
    ``softmax(Q K^T / sqrt(dim/heads)) V``, residual; LayerNorm, FFN of width
    ``4 dim`` with ReLU, residual; a final LayerNorm), as in the official
    code's ``TransformerEncoderLayer``; ``norm="post"`` gives the original
    Transformer's post-norm order (this module's earlier default).

    Tokens: a feature vector ``(B, d_m)`` is projected into ``tokens`` tokens
    of width ``dim`` (``Linear(d_m, tokens * dim)``, reshaped) so that
    attention has something to attend over; with ``sequence=True`` every input
    is a sequence ``(B, T, d_m)`` (any T) and each step is projected to ``dim``
    (MulT: a 1-d convolution of kernel 1, the same map).
    Left out from MulT's encoder: the scaling of its inputs by ``sqrt(dim)``
    (the learned token projection absorbs any scale), the sinusoidal positional
    embeddings (the tokens of a feature vector have no order, and each gets its
    own projection; for sequences put them in the encoder if order matters) and
    the embedding dropout. The learned modality embedding ``e_m`` is ours.

    MulT has one crossmodal transformer per ordered pair ``(j -> m)``, stacks
    several layers, then a self-attention transformer per target and predicts
    from the last time step; here each target modality has one layer that
    attends to the concatenated tokens of all the others, which is the same
    thing for two modalities and lets ``key_padding_mask`` drop the tokens of
    absent modalities per sample, and the targets' outputs are mean-pooled.
    Missing-aware: a sample without modality j has j's tokens masked out of
    every key set; an absent target contributes zeros to the pooled vector; a
    sample with no other modality skips the attention update.

    ``features[m]``: (B, in_dims[m]) or, with ``sequence=True``, (B, T_m, in_dims[m]) -> (B, out_dim).
    Options: ``dim`` (32), ``heads`` (4), ``tokens`` (4, vectors only), ``ffn_mult`` (4, MulT's),
    ``dropout`` (0), ``sequence`` (False), ``norm`` (``"pre"``, MulT's, or ``"post"``).
    """

    handles_missing = True

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        dim: int = 32,
        heads: int = 4,
        tokens: int = 4,
        ffn_mult: int = 4,
        dropout: float = 0.0,
        sequence: bool = False,
        norm: str = "pre",
    ):
        super().__init__(in_dims, out_dim)
        if len(self.in_dims) < 2:
            raise ValueError(f"cross-modal attention needs at least two modalities, got {self.modalities}")
        dim = check_number(dim, "dim", low=1, integer=True)
        heads = check_number(heads, "heads", low=1, integer=True)
        tokens = check_number(tokens, "tokens", low=1, integer=True)
        if dim % heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.dim, self.heads, self.sequence, self.norm = dim, heads, bool(sequence), norm
        self.tokens = 1 if self.sequence else tokens
        # token projection per modality: d_m -> tokens * dim (vectors) or d_m -> dim per step (sequences)
        self.to_tokens = nn.ModuleDict(
            {m: nn.Linear(d, self.tokens * dim) for m, d in self.in_dims.items()}
        )
        # e_m: a learned modality-type embedding added to every token of m
        self.modality_embedding = nn.Parameter(0.02 * torch.randn(len(self.in_dims), dim))
        # one cross-modal block per target modality
        self.blocks = nn.ModuleDict({m: CrossModalBlock(dim, heads, ffn_mult, dropout, norm) for m in self.in_dims})
        # W, b: pooled per-modality outputs -> out_dim
        self.out = nn.Linear(len(self.in_dims) * dim, out_dim)

    def expected_shapes(self) -> dict[str, tuple]:
        if self.sequence:
            return {m: (None, d) for m, d in self.in_dims.items()}
        return super().expected_shapes()

    def embed(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None):
        """Tokens ``X_m`` per modality, each (B, T_m, dim), and the full presence mask."""
        x, mask = self.check(features, present)
        out = {}
        for i, m in enumerate(self.modalities):
            t = self.to_tokens[m](x[m])
            if not self.sequence:
                t = t.view(t.shape[0], self.tokens, self.dim)  # (B, tokens * dim) -> (B, tokens, dim)
            out[m] = t + self.modality_embedding[i]
        return out, mask

    def forward(self, features, present=None) -> Tensor:
        tokens, mask = self.embed(features, present)
        all_present = all(bool(v.all()) for v in mask.values())
        pooled = []
        for m in self.modalities:
            others = [j for j in self.modalities if j != m]
            # X_~m: (B, sum_{j != m} T_j, dim)
            kv = torch.cat([tokens[j] for j in others], dim=1)
            padding = None
            if not all_present:
                # True = ignore this key: the tokens of absent modalities, (B, sum T_j)
                padding = torch.cat(
                    [(~mask[j]).unsqueeze(1).expand(-1, tokens[j].shape[1]) for j in others], dim=1
                )
            h = self.blocks[m](tokens[m], kv, padding)  # H_m: (B, T_m, dim)
            # mean over the target's tokens, zero when the target itself is absent (selected): (B, dim)
            hm = h.mean(dim=1)
            pooled.append(torch.where(mask[m].unsqueeze(1), hm, torch.zeros_like(hm)))
        # h = ReLU(W [pool H_1; ...; pool H_M] + b): (B, out_dim)
        return torch.relu(self.out(torch.cat(pooled, dim=1)))
