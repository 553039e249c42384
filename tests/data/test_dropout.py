"""Modality dropout keeps the protected (gallery) modality and at least `min_modalities` others."""

from __future__ import annotations

import numpy as np
import pytest

from reid_core.data.dropout import modality_dropout, seeded_rng
from reid_core.modality import ALL_MODALITIES, Modality

V, N, C, S, T = Modality.VIS, Modality.NIR, Modality.CP, Modality.SK, Modality.TEXT


def test_p_zero_keeps_everything():
    assert modality_dropout(ALL_MODALITIES, 0.0, 1, seeded_rng(0)) == list(ALL_MODALITIES)


@pytest.mark.parametrize("min_modalities", [0, 1, 2, 3, 4, 6])
def test_p_one_keeps_exactly_the_minimum_and_never_vis(min_modalities):
    for seed in range(30):
        kept = modality_dropout(ALL_MODALITIES, 1.0, min_modalities, seeded_rng(seed))
        assert kept[0] is V
        assert len(kept) - 1 == min(min_modalities, 4)


def test_random_dropout_keeps_minimum_order_and_varies():
    present = [V, N, S, T]
    outcomes = set()
    for seed in range(200):
        kept = modality_dropout(present, 0.5, 2, seeded_rng(seed))
        assert V in kept and len(kept) >= 3
        assert kept == [m for m in present if m in kept]  # order of `present` kept
        outcomes.add(tuple(kept))
    assert len(outcomes) > 2  # different subsets get dropped


def test_minimum_is_capped_by_what_is_present():
    assert modality_dropout([V, T], 1.0, 3, seeded_rng(0)) == [V, T]
    assert modality_dropout([V], 1.0, 2, seeded_rng(0)) == [V]


def test_another_protected_modality_is_never_dropped():
    for seed in range(30):
        kept = modality_dropout([V, N, C], 1.0, 0, seeded_rng(seed), protected=C)
        assert kept == [C]


def test_same_generator_seed_same_result():
    a = [
        modality_dropout(ALL_MODALITIES, 0.5, 1, seeded_rng(3, e, i))
        for e in range(3)
        for i in range(5)
    ]
    b = [
        modality_dropout(ALL_MODALITIES, 0.5, 1, seeded_rng(3, e, i))
        for e in range(3)
        for i in range(5)
    ]
    assert a == b


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="probability"):
        modality_dropout([V, N], 1.5, 1, seeded_rng(0))
    with pytest.raises(ValueError, match="min_modalities"):
        modality_dropout([V, N], 0.5, -1, seeded_rng(0))


def test_seeded_rng_accepts_negative_keys_deterministically():
    a = seeded_rng(-1, 0).integers(1 << 30, size=4)
    assert np.array_equal(a, seeded_rng(-1, 0).integers(1 << 30, size=4))
    assert not np.array_equal(a, seeded_rng(1, 0).integers(1 << 30, size=4))
