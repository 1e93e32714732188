"""PromptFuse: Liang, Zhao, Schuetze, "Modular and Parameter-Efficient Multimodal Fusion
with Prompting" (Findings of ACL 2022, arXiv 2203.08055).

A frozen pretrained transformer reads one modality's token sequence; the other
modalities enter as prompt tokens prepended to that sequence. Only the prompts
(and a small projection) train, so adding a modality costs a few thousand
parameters rather than a new model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .._checks import check_number
from .base import Fusion, register_fusion


def freeze_as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` (recursively) into a buffer holding the same values.

    The weights then move with ``.to()`` / ``.double()`` and are saved in the
    ``state_dict``, but they are not parameters: no optimizer sees them and
    ``named_parameters()`` lists only what trains. Returns ``module``.
    """
    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            if p is None:
                continue
            del sub._parameters[name]
            sub.register_buffer(name, p.detach().clone())
    return module


@register_fusion("prompt")
class PromptFusion(Fusion):
    """PromptFuse on the fusion contract: a frozen transformer with trainable prompts.

    One modality, ``sequence`` (default: the first), is a token sequence: its
    feature ``(B, tokens * token_dim)`` is read as ``(B, tokens, token_dim)`` (e.g.
    a 20 x 20 spectrogram flattened by an identity encoder, ``tokens=20``). A
    frozen token embedding ``E`` (with frozen positions) and a frozen
    transformer encoder ``T`` stand for the pretrained language model. Every other
    modality ``m`` is mapped by a trainable projection ``v_m`` to
    ``prompt_tokens`` tokens, and ``n_prompts`` trainable prompt vectors ``P``
    lead the sequence::

        H = T([P ; v_2(x_2) ; ... ; v_M(x_M) ; E(x_1)])        (B, n_prompts + (M-1) prompt_tokens + tokens, d_model)
        out = W mean_t(H_t) + b                                 (B, out_dim)

    Trainable: ``P``, the projections ``v_m`` and the readout ``W, b`` (the
    survey's "prompt" parameters; the paper trains only ``P`` over a frozen
    image encoder whose width already matches, and reads out with the frozen
    language-model head). Frozen: ``E``, the positions and ``T``, stored as
    buffers (:func:`freeze_as_buffers`), so ``named_parameters()`` and the
    optimizer see only what trains. Pass a pretrained ``backbone`` (an
    ``nn.TransformerEncoder`` with ``batch_first=True`` and width ``d_model``) to
    use it; otherwise a randomly initialised one is built with ``seed`` and
    frozen (the teaching stand-in for a pretrained model).
    :meth:`trainable_parameters` reports the counts.

    Missing inputs (``handles_missing``): an absent modality's prompt tokens are
    masked out of attention (``src_key_padding_mask``) and out of the mean, so the
    row is read from what it has, as in PromptFuse's modularity (a modality is
    added or removed with its prompts); an absent sequence is zero-filled (its
    tokens stay, so every row keeps something to attend to).
    ``features[m]``: (B, in_dims[m]) -> (B, out_dim).
    """

    handles_missing = True

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        sequence: str | None = None,
        tokens: int = 1,
        d_model: int = 32,
        n_prompts: int = 4,
        prompt_tokens: int = 1,
        n_layers: int = 2,
        n_heads: int = 4,
        backbone: nn.Module | None = None,
        seed: int = 0,
    ):
        super().__init__(in_dims, out_dim)
        self.sequence = self.modalities[0] if sequence is None else sequence
        if self.sequence not in self.in_dims:
            raise ValueError(f"sequence: unknown modality {self.sequence!r}; expected one of {self.modalities}")
        self.tokens = check_number(tokens, "tokens", low=1, integer=True)
        width = self.in_dims[self.sequence]
        if width % self.tokens:
            raise ValueError(
                f"the {self.sequence!r} features have width {width}, not divisible into tokens={self.tokens} tokens"
            )
        self.token_dim = width // self.tokens
        self.d_model = check_number(d_model, "d_model", low=1, integer=True)
        self.n_prompts = check_number(n_prompts, "n_prompts", low=0, integer=True)
        self.prompt_tokens = check_number(prompt_tokens, "prompt_tokens", low=1, integer=True)
        n_layers = check_number(n_layers, "n_layers", low=1, integer=True)
        n_heads = check_number(n_heads, "n_heads", low=1, integer=True)
        seed = check_number(seed, "seed", integer=True)
        if backbone is None and self.d_model % n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={n_heads}")
        others = [m for m in self.modalities if m != self.sequence]
        if self.n_prompts == 0 and not others:
            raise ValueError("n_prompts=0 and no other modality: there would be nothing to train")

        # frozen part: token embedding, positions and the transformer (built from a fixed seed)
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            embed = nn.Linear(self.token_dim, self.d_model)
            positions = torch.randn(self.tokens, self.d_model) * 0.02
            if backbone is None:
                layer = nn.TransformerEncoderLayer(
                    self.d_model, n_heads, dim_feedforward=2 * self.d_model, dropout=0.0,
                    batch_first=True, norm_first=True,
                )
                backbone = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        finally:
            torch.random.set_rng_state(gen_state)
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
        self.embed = freeze_as_buffers(embed)
        self.register_buffer("positions", positions)
        self.backbone = freeze_as_buffers(backbone)
        self.backbone.eval()

        # trainable part: prompts P, projections v_m, readout
        self.prompts = nn.Parameter(torch.randn(self.n_prompts, self.d_model) * 0.02) if self.n_prompts else None
        self.projections = nn.ModuleDict(
            {m: nn.Linear(self.in_dims[m], self.prompt_tokens * self.d_model) for m in others}
        )
        self.readout = nn.Linear(self.d_model, out_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: no dropout, whatever the mode of the rest
        return self

    def frozen_parameter_count(self) -> int:
        """Weights of the frozen part (embedding, positions, backbone), held as buffers."""
        frozen = sum(b.numel() for b in self.embed.buffers()) + self.positions.numel()
        frozen += sum(b.numel() for b in self.backbone.buffers() if torch.is_floating_point(b))
        return int(frozen)

    def trainable_parameters(self) -> dict[str, int]:
        """``{"trainable": n, "frozen": n, "total": n}``: parameter counts (frozen = the backbone's buffers)."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        frozen = self.frozen_parameter_count()
        return {"trainable": int(trainable), "frozen": frozen, "total": int(trainable + frozen)}

    def forward(self, features, present=None) -> Tensor:
        x, mask = self.check(features, present)
        batch = x[self.sequence].shape[0]
        # E(x_1) + positions: (B, tokens, d_model)
        seq = self.embed(x[self.sequence].reshape(batch, self.tokens, self.token_dim)) + self.positions
        parts, pads = [], []
        if self.prompts is not None:
            parts.append(self.prompts.unsqueeze(0).expand(batch, -1, -1))  # P: (B, n_prompts, d_model)
            pads.append(torch.zeros(batch, self.n_prompts, dtype=torch.bool, device=seq.device))
        for m, proj in self.projections.items():  # v_m(x_m): (B, prompt_tokens, d_model)
            parts.append(proj(x[m]).reshape(batch, self.prompt_tokens, self.d_model))
            # an absent modality's prompt tokens are hidden from attention and from the pooling
            pads.append((~mask[m]).unsqueeze(1).expand(batch, self.prompt_tokens))
        pads.append(torch.zeros(batch, self.tokens, dtype=torch.bool, device=seq.device))
        pad = torch.cat(pads, dim=1)  # (B, S): True = ignore
        tokens = torch.cat([*parts, seq], dim=1)
        if bool(pad.any()):
            h = self.backbone(tokens, src_key_padding_mask=pad)
            keep = (~pad).unsqueeze(-1)
            h = torch.where(keep, h, torch.zeros_like(h))
            pooled = h.sum(dim=1) / keep.sum(dim=1).to(h.dtype)  # mean over the kept positions
        else:
            pooled = self.backbone(tokens).mean(dim=1)
        return self.readout(pooled)
