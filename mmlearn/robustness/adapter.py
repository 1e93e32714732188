"""Scale-and-shift adapters for one missing-modality pattern (Reza, Prater-Bennette, Asif 2023).

A multimodal network trained with every modality is kept frozen. For one
pattern of missing modalities, a few per-channel affine maps are learned on
intermediate features (SSF-style)::

    h' = gamma ⊙ h + beta          (per channel; gamma = 1, beta = 0 at the start)

and the missing inputs are filled with a constant (zeros) and marked absent.
Only ``gamma`` and ``beta`` are trained: ``2 x sum of channel widths`` parameters.

Differences from the paper (method-notes section 11; no official code was
found): adapters are placed after whole modules chosen by name (by default the
output of each encoder and of the fusion), not after every linear, conv and
norm layer; they start exactly at the identity (no N(1, 0.02) jitter), so the
adapted model reproduces the frozen one bit for bit before training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .._checks import check_modality_dict, check_present


def _channels(module: nn.Module, name: str) -> int:
    for attr in ("out_dim", "out_features", "out_channels", "num_features", "normalized_shape"):
        v = getattr(module, attr, None)
        if isinstance(v, int):
            return v
        if isinstance(v, (tuple, list)) and len(v) == 1 and isinstance(v[0], int):
            return int(v[0])
    raise ValueError(
        f"ScaleShiftAdapter: cannot tell the channel width of layer {name!r} ({type(module).__name__}); "
        "choose a Linear, Conv, norm layer, encoder or fusion module"
    )


class ScaleShiftAdapter(nn.Module):
    """A frozen :class:`~mmlearn.models.MultimodalClassifier` with per-channel scale and shift at chosen layers.

    ``model``: the trained classifier; its parameters are frozen in place
    (``requires_grad = False``) and it is kept in eval mode, so several
    adapters (one per missing pattern) can share it. ``missing``: the
    modalities this adapter is for; they are zero-filled and marked absent in
    every row it sees. ``layers``: names of submodules (as in
    ``model.named_modules()``) after whose output ``h' = gamma ⊙ h + beta`` is
    applied, per channel (the last axis for ``(B, C)`` outputs, axis 1 for
    ``(B, C, ...)`` conv outputs); default each encoder and the fusion.

    The adapters act only while the adapter itself runs (forward hooks added
    and removed around each call): calling ``model`` directly gives the frozen
    network. :meth:`parameter_counts` reports trainable vs total parameters.
    """

    def __init__(self, model: nn.Module, missing: Sequence[str] = (), layers: Sequence[str] | None = None):
        super().__init__()
        self.model = model
        names = list(model.modalities)
        missing = [missing] if isinstance(missing, str) else list(missing)
        for m in missing:
            if m not in names:
                raise ValueError(f"ScaleShiftAdapter: unknown missing modality {m!r}; the model has {names}")
        if len(missing) == len(names):
            raise ValueError(f"ScaleShiftAdapter: every modality {names} is missing; at least one must remain")
        self.missing = missing
        if layers is None:
            layers = [f"encoders.{m}" for m in names] + ["fusion"]
        modules = dict(model.named_modules())
        self.layers = list(layers)
        gammas, betas = {}, {}
        for name in self.layers:
            if name not in modules or name == "":
                raise ValueError(f"ScaleShiftAdapter: the model has no layer {name!r}; "
                                 f"layers are e.g. {[n for n in modules if n][:8]}")
            c = _channels(modules[name], name)
            key = name.replace(".", "__")
            gammas[key] = nn.Parameter(torch.ones(c))  # gamma = 1
            betas[key] = nn.Parameter(torch.zeros(c))  # beta = 0
        self.gamma = nn.ParameterDict(gammas)
        self.beta = nn.ParameterDict(betas)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()

    # the backbone stays frozen and in eval mode whatever fit() asks
    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        return self

    @property
    def modalities(self) -> list[str]:
        return self.model.modalities

    def parameter_counts(self) -> dict[str, float]:
        """``{"trainable", "total", "fraction"}``: adapter parameters vs all parameters (backbone included)."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return {"trainable": trainable, "total": total, "fraction": trainable / total}

    def _hook(self, key: str):
        def hook(module, args, output):
            if not isinstance(output, Tensor):
                raise TypeError(f"ScaleShiftAdapter: layer {key!r} returned {type(output).__name__}, not a tensor")
            c = self.gamma[key].numel()
            # channels on axis 1: (B, C) features and (B, C, ...) conv maps; (B, ..., C) if only the last fits
            axis = 1 if output.dim() >= 2 and output.shape[1] == c else output.dim() - 1
            shape = [1] * output.dim()
            shape[axis] = c
            if output.shape[axis] != c:
                raise ValueError(f"ScaleShiftAdapter: layer {key!r} output has shape {tuple(output.shape)}; "
                                 f"expected {c} channels")
            # h' = gamma * h + beta, per channel
            return output * self.gamma[key].reshape(shape) + self.beta[key].reshape(shape)

        return hook

    def apply_pattern(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None):
        """``(inputs, present)`` with this adapter's missing modalities zero-filled and absent in every row."""
        n = check_modality_dict(inputs, self.model.expected_shapes(), what="ScaleShiftAdapter inputs")
        mask = check_present(present, self.modalities, n, next(iter(inputs.values())).device)
        if not self.missing:
            return dict(inputs), (None if present is None else mask)
        out = dict(inputs)
        for m in self.missing:
            out[m] = torch.zeros_like(inputs[m])
            mask[m] = torch.zeros_like(mask[m])
        return out, mask

    def forward_all(self, inputs: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None):
        inputs, present = self.apply_pattern(inputs, present)
        modules = dict(self.model.named_modules())
        handles = [modules[name].register_forward_hook(self._hook(name.replace(".", "__"))) for name in self.layers]
        try:
            return self.model.forward_all(inputs, present)
        finally:
            for h in handles:
                h.remove()

    def forward(self, inputs, present=None):
        return self.forward_all(inputs, present).logits
