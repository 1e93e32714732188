"""Uni-modal ensemble (UME) and uni-modal teacher (UMT) of Du et al., "On Uni-Modal Feature
Learning in Supervised Multi-Modal Learning", ICML 2023.

Survey Sec. IV: Du et al. argue for late fusion (Eq. 5) that keeps each
modality's strengths. Joint training under-learns the features that one
modality could learn alone ("modality laziness"). UME avoids joint training: train each unimodal model on
its own, then add their logits. UMT keeps joint (late-fusion) training but
distils each encoder towards a frozen unimodally trained teacher encoder.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .._checks import check_modality_dict, check_number, check_present
from ..data import as_batch
from ..fusion import LateFusion
from ..models import MultimodalClassifier, MultimodalOutput


def unimodal_classifier(modality: str, encoder: nn.Module, n_classes: int) -> MultimodalClassifier:
    """Encoder + linear head for one modality (a one-input late-fusion classifier)."""
    if not hasattr(encoder, "out_dim"):
        raise TypeError(f"the encoder for {modality!r} needs an out_dim attribute, got {type(encoder).__name__}")
    return MultimodalClassifier({modality: encoder}, LateFusion({modality: int(encoder.out_dim)}, n_classes,
                                                                weights="uniform"), n_classes)


class UniModalEnsemble(nn.Module):
    """UME (Du et al., ICML 2023): independently trained unimodal models, logits added::

        f(x) = sum_m present_m * f_m(x_m)            f_m: (B, C)

    ``members``: ``{modality: model}``, each a classifier taking ``{modality: x}``
    (e.g. :func:`unimodal_classifier`), stored in an ``nn.ModuleDict``. An absent
    modality contributes nothing, so with one modality missing the ensemble
    predicts exactly as that modality's model. Train the members separately with
    :meth:`fit_members` (there is no joint training).
    """

    def __init__(self, members: Mapping[str, nn.Module]):
        super().__init__()
        if len(members) < 1:
            raise ValueError("UniModalEnsemble needs at least one member")
        self.members = nn.ModuleDict(dict(members))
        for m, member in self.members.items():
            if not hasattr(member, "forward_all"):
                raise TypeError(f"member {m!r} must be a MultimodalClassifier-like model, got {type(member).__name__}")

    @property
    def modalities(self) -> list[str]:
        return list(self.members)

    @property
    def encoders(self) -> dict[str, nn.Module]:
        """``{modality: encoder}`` of the members (for linear probes)."""
        return {m: member.encoders[m] for m, member in self.members.items()}

    def forward_all(self, inputs: Mapping[str, Tensor], present=None) -> MultimodalOutput:
        batch = check_modality_dict(inputs, self.modalities, what="UniModalEnsemble inputs")
        first = next(iter(inputs.values()))
        mask = check_present(present, self.modalities, batch, first.device)
        unimodal, features = {}, {}
        logits = None
        for m, member in self.members.items():
            sub_present = None if present is None else {m: mask[m]}
            out = member.forward_all({m: inputs[m]}, sub_present)
            unimodal[m], features[m] = out.logits, out.features[m]
            # present_m * f_m(x_m): (B, 1) * (B, C)
            term = out.logits * mask[m][:, None].to(out.logits.dtype)
            logits = term if logits is None else logits + term
        return MultimodalOutput(logits, features, logits, unimodal, present)

    def forward(self, inputs, present=None):
        return self.forward_all(inputs, present).logits

    def fit_members(self, train, eval_data=None, **fit_kwargs) -> dict[str, dict]:
        """Train each member alone on its own modality; returns ``{modality: history}``."""
        from ..train import fit

        train = as_batch(train)
        eval_data = as_batch(eval_data) if eval_data is not None else None
        return {
            m: fit(member, train.select([m]), eval_data.select([m]) if eval_data is not None else None, **fit_kwargs)
            for m, member in self.members.items()
        }


class UniModalTeacher(nn.Module):
    """UMT (Du et al., ICML 2023): feature distillation from frozen unimodal teachers, as an extra loss::

        L = CE(g([phi_1(x_1), ..., phi_M(x_M)]), y) + lambda * sum_m mean_i || phi_m(x_m) - phi_m^T(x_m) ||_2^2

    ``teachers``: ``{modality: encoder}`` trained unimodally (e.g.
    ``UniModalEnsemble.encoders`` after :meth:`UniModalEnsemble.fit_members`);
    copied into an ``nn.ModuleDict`` (registered, frozen, eval mode). Call as an
    extra loss: ``fit(model, data, extra_losses=[umt])``; ``out.features[m]`` is
    the student encoder's ``phi_m(x_m)``, (B, d_m). The exact form of the
    distillation term in Du et al. is not verified here (method notes, Sec. 15):
    this is the squared L2 feature distance of the notes.
    """

    def __init__(self, teachers: Mapping[str, nn.Module], weight: float = 1.0):
        super().__init__()
        weight = check_number(weight, "weight", low=0.0)
        if len(teachers) < 1:
            raise ValueError("UniModalTeacher needs at least one teacher encoder")
        import copy

        self.teachers = nn.ModuleDict({m: copy.deepcopy(t) for m, t in teachers.items()})
        self.teachers.requires_grad_(False)
        self.teachers.eval()
        self.weight = weight

    def train(self, mode: bool = True):  # teachers stay in eval mode
        super().train(mode)
        self.teachers.eval()
        return self

    def fit_kwargs(self) -> dict:
        """Arguments for :func:`mmlearn.train.fit`."""
        return {"extra_losses": [self]}

    def forward(self, model: nn.Module, out, batch) -> Tensor:
        total = None
        for m, teacher in self.teachers.items():
            if m not in out.features:
                raise ValueError(f"teacher for {m!r} but the student has features for {sorted(out.features)}")
            student = out.features[m]  # phi_m(x_m): (B, d_m)
            with torch.no_grad():
                target = teacher(batch.inputs[m]).to(student.dtype)  # phi_m^T(x_m): (B, d_m)
            if target.shape != student.shape:
                raise ValueError(
                    f"teacher features for {m!r} have shape {tuple(target.shape)}; the student's have "
                    f"{tuple(student.shape)}: teacher and student encoders need the same out_dim"
                )
            # || phi_m(x_m) - phi_m^T(x_m) ||^2, averaged over the batch
            term = (student - target).pow(2).sum(dim=1).mean()
            total = term if total is None else total + term
        return self.weight * total
