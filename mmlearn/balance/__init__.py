"""Modality competition and its remedies (survey Sec. IV, Eq. 6; Sec. VII, Eq. 7).

Joint training lets the modality that is easiest to learn from crowd out the
others: their encoders learn less than they would alone. This package measures
that (linear probes, AGM's competition strength) and implements the surveyed
remedies on the one training loop :func:`mmlearn.train.fit`:

- :class:`OGMGE`: on-the-fly gradient modulation with generalization enhancement (grad hook);
- :class:`AGM`: adaptive gradient modulation with Shapley-style responses, Eq. (6);
- :class:`UniModalEnsemble` / :class:`UniModalTeacher`: UME and UMT (Du et al. 2023);
- :class:`MMPareto`: multimodal/unimodal gradient combination, MGDA min-norm on conflict;
- :func:`attribution_penalty` / :class:`AttributionRegularizer`: Eq. (7) and attribution shares;
- :class:`CompetitionRegularizer`: the MCR competition game (Kontras et al. 2024), simplified.

Every method has ``fit_kwargs()`` giving the arguments to pass to ``fit``.
"""

from .agm import AGM
from .attribution import (
    AttributionRegularizer,
    attribution_penalty,
    attribution_shares,
    input_gradient_penalty,
    share_penalty,
)
from .mcr import CompetitionRegularizer, jensen_shannon
from .mmpareto import MMPareto, min_norm_2, pareto_combine, pareto_weights
from .ogm_ge import OGMGE, ogm_coefficients
from .probes import (
    competition_strength,
    competition_strength_from_features,
    encoder_features,
    linear_probe_accuracy,
    probe_accuracies,
    probe_accuracy_from_features,
)
from .responses import removed_logits, shapley_responses, split_logits
from .unimodal import UniModalEnsemble, UniModalTeacher, unimodal_classifier

__all__ = [
    "AGM",
    "OGMGE",
    "AttributionRegularizer",
    "CompetitionRegularizer",
    "MMPareto",
    "UniModalEnsemble",
    "UniModalTeacher",
    "attribution_penalty",
    "attribution_shares",
    "competition_strength",
    "competition_strength_from_features",
    "encoder_features",
    "input_gradient_penalty",
    "jensen_shannon",
    "linear_probe_accuracy",
    "min_norm_2",
    "ogm_coefficients",
    "pareto_combine",
    "pareto_weights",
    "probe_accuracies",
    "probe_accuracy_from_features",
    "removed_logits",
    "shapley_responses",
    "share_penalty",
    "split_logits",
    "unimodal_classifier",
]
