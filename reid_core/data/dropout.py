"""Modality dropout for training samples, and the keyed generators the data layer draws from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reid_core.modality import Modality

_UINT64 = (1 << 64) - 1


def seeded_rng(*keys: int) -> np.random.Generator:
    """A generator determined by `keys` alone (e.g. seed, epoch, sample, stream), so a draw is
    the same in the main process and in any DataLoader worker. Negative keys are allowed (numpy's
    SeedSequence is not): they are taken modulo 2**64."""
    return np.random.default_rng([k & _UINT64 for k in keys])


def modality_dropout(
    present: Sequence[Modality],
    p: float,
    min_modalities: int,
    rng: np.random.Generator,
    protected: Modality = Modality.VIS,
) -> list[Modality]:
    """Drop each present modality except `protected` with probability `p`, keeping at least
    `min(min_modalities, number of non-protected present)` of them.

    When too many are dropped, randomly chosen dropped ones are restored. Returns the kept
    modalities in the order of `present`; `protected` is kept whenever it is present.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if min_modalities < 0:
        raise ValueError(f"min_modalities must be >= 0, got {min_modalities}")
    candidates = [m for m in present if m is not protected]
    if p == 0.0 or not candidates:
        return list(present)
    dropped_flags = rng.random(len(candidates)) < p
    dropped = [m for m, d in zip(candidates, dropped_flags, strict=True) if d]
    shortfall = min(min_modalities, len(candidates)) - (len(candidates) - len(dropped))
    if shortfall > 0:
        restore = set(rng.choice(len(dropped), size=shortfall, replace=False).tolist())
        dropped = [m for j, m in enumerate(dropped) if j not in restore]
    return [m for m in present if m not in dropped]
