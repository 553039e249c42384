"""IRRA's similarity distribution matching (SDM), anchored on RGB.

For RGB features R and a query-side feature set X: p = softmax over the batch of cos/temperature,
q = same-identity indicator normalised per row, loss = KL(p || q) for R->X plus the same for X->R.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8


def _kl_rows(logits: torch.Tensor, positives: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Mean over rows of KL(softmax(logits) || target), target = positives / row sum, mixed with
    a uniform row by `smoothing`; rows need >= 1 positive."""
    target = positives / positives.sum(dim=1, keepdim=True)
    if smoothing:
        target = (1 - smoothing) * target + smoothing / target.shape[1]
    pred = logits.softmax(dim=1)
    kl = pred * (logits.log_softmax(dim=1) - torch.log(target + _EPS))
    return kl.sum(dim=1).mean()


def sdm_loss(
    rgb: torch.Tensor,
    other: torch.Tensor,
    rgb_ids: torch.Tensor,
    other_ids: torch.Tensor,
    temperature: float,
    margin: float = 0.0,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """SDM between `rgb` `[N, D]` and `other` `[M, D]` with identity labels.

    `margin` is subtracted from the positive pairs' cosines before the softmax (0: off);
    `smoothing` spreads that share of each row's target uniformly (0: IRRA's target). Rows
    without a positive on the other side are left out of that direction (their target is empty).
    """
    cos = F.normalize(rgb.float(), dim=1) @ F.normalize(other.float(), dim=1).t()  # [N, M]
    positives = (rgb_ids[:, None] == other_ids[None, :]).float()
    if margin:
        cos = cos - margin * positives
    logits = cos / temperature
    zero = logits.sum() * 0.0  # keeps the graph when a direction has no usable row
    r_rows = positives.sum(dim=1) > 0
    x_rows = positives.sum(dim=0) > 0
    r2x = _kl_rows(logits[r_rows], positives[r_rows], smoothing) if bool(r_rows.any()) else zero
    x2r = (
        _kl_rows(logits.t()[x_rows], positives.t()[x_rows], smoothing)
        if bool(x_rows.any())
        else zero
    )
    return r2x + x2r
