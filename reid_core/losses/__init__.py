"""Losses: ID cross-entropy, RGB-anchored SDM alignment, feature-norm band penalty."""

from reid_core.losses.objective import (
    LossParts,
    ReidObjective,
    alignment_weight,
    norm_band_penalty,
    query_combinations,
    select_rows,
)
from reid_core.losses.sdm import sdm_loss

__all__ = [
    "LossParts",
    "ReidObjective",
    "alignment_weight",
    "norm_band_penalty",
    "query_combinations",
    "sdm_loss",
    "select_rows",
]
