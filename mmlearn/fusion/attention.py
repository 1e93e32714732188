"""Cross-modal attention fusion: each modality's tokens attend to the other modalities' tokens (MulT-style)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .base import Fusion, register_fusion


class CrossModalBlock(nn.Module):
    """One cross-modal transformer layer (post-norm, as in MulT's crossmodal attention)::

        h   = LN( q + MHA(Q = q, K = V = kv, key_padding_mask) )     (B, T_q, dim)
        out = LN( h + FFN(h) )                                       (B, T_q, dim)
    """

    def __init__(self, dim: int, heads: int, ffn_mult: int = 2, dropout: float = 0.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.ReLU(), nn.Linear(ffn_mult * dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, q: Tensor, kv: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        if key_padding_mask is None:
            attended, _ = self.attn(q, kv, kv, need_weights=False)
        else:
            # rows whose every key is masked would give NaN: unmask them, then drop their update
            empty = key_padding_mask.all(dim=1)  # (B,)
            mask = key_padding_mask & ~empty.unsqueeze(1)
            attended, _ = self.attn(q, kv, kv, key_padding_mask=mask, need_weights=False)
            attended = attended * (~empty).to(attended.dtype).view(-1, 1, 1)
        h = self.norm1(q + attended)
        return self.norm2(h + self.ffn(h))


@register_fusion("cross_attention")
class CrossAttentionFusion(Fusion):
    """Cross-modal attention fusion in the style of the Multimodal Transformer
    (Tsai et al., "Multimodal Transformer for Unaligned Multimodal Language
    Sequences" (MulT), ACL 2019); survey Sec. IV (attention-based intermediate fusion)::

        X_m  = tokens of modality m + e_m                        (B, T_m, dim)  e_m: modality embedding
        X_~m = [X_j for j != m]                                  (B, sum_{j!=m} T_j, dim)
        H_m  = CrossModalBlock_m( Q = X_m, K = V = X_~m )          (B, T_m, dim)  softmax(Q K^T / sqrt(dim/heads)) V, + LN, FFN
        h    = ReLU( W [mean_t H_1; ...; mean_t H_M] + b )       (B, out_dim)

    Tokens: a feature vector ``(B, d_m)`` is projected into ``tokens`` tokens
    of width ``dim`` (``Linear(d_m, tokens * dim)``, reshaped) so that
    attention has something to attend over; with ``sequence=True`` every input
    is a sequence ``(B, T, d_m)`` (any T) and each step is projected to ``dim``.
    (No positional encoding is added: put it in the encoder if order matters.)

    MulT has one crossmodal transformer per ordered pair ``(j -> m)`` and
    stacks several layers; here each target modality has one layer that
    attends to the concatenated tokens of all the others, which is the same
    thing for two modalities and lets ``key_padding_mask`` drop the tokens of
    absent modalities per sample. Missing-aware: a sample without modality j
    has j's tokens masked out of every key set; an absent target contributes
    zeros to the pooled vector; a sample with no other modality skips the
    attention update.

    ``features[m]``: (B, in_dims[m]) or, with ``sequence=True``, (B, T_m, in_dims[m]) -> (B, out_dim).
    Options: ``dim`` (32), ``heads`` (4), ``tokens`` (4, vectors only), ``ffn_mult`` (2),
    ``dropout`` (0), ``sequence`` (False).
    """

    handles_missing = True

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        dim: int = 32,
        heads: int = 4,
        tokens: int = 4,
        ffn_mult: int = 2,
        dropout: float = 0.0,
        sequence: bool = False,
    ):
        super().__init__(in_dims, out_dim)
        if len(self.in_dims) < 2:
            raise ValueError(f"cross-modal attention needs at least two modalities, got {self.modalities}")
        if dim % heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if tokens < 1:
            raise ValueError(f"tokens must be >= 1, got {tokens}")
        self.dim, self.heads, self.sequence = dim, heads, bool(sequence)
        self.tokens = 1 if self.sequence else tokens
        # token projection per modality: d_m -> tokens * dim (vectors) or d_m -> dim per step (sequences)
        self.to_tokens = nn.ModuleDict(
            {m: nn.Linear(d, self.tokens * dim) for m, d in self.in_dims.items()}
        )
        # e_m: a learned modality-type embedding added to every token of m
        self.modality_embedding = nn.Parameter(0.02 * torch.randn(len(self.in_dims), dim))
        # one cross-modal block per target modality
        self.blocks = nn.ModuleDict({m: CrossModalBlock(dim, heads, ffn_mult, dropout) for m in self.in_dims})
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
        all_present = present is None
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
            # mean over the target's tokens, zero when the target itself is absent: (B, dim)
            pooled.append(h.mean(dim=1) * mask[m].to(h.dtype).unsqueeze(1))
        # h = ReLU(W [pool H_1; ...; pool H_M] + b): (B, out_dim)
        return torch.relu(self.out(torch.cat(pooled, dim=1)))
