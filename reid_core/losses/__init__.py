"""Losses: ID cross-entropy, RGB-anchored SDM alignment, feature-norm band penalty."""

from reid_core.losses.objective import (
    LossParts,
    ReidObjective,
    alignment_weight,
    norm_band_penalty,
)
from reid_core.losses.plan import make_plan, query_combinations
from reid_core.losses.sdm import sdm_loss, sdm_terms

__all__ = [
    "LossParts",
    "ReidObjective",
    "alignment_weight",
    "make_plan",
    "norm_band_penalty",
    "query_combinations",
    "sdm_loss",
    "sdm_terms",
]
