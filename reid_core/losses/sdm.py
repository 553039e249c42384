"""IRRA's similarity distribution matching (SDM), anchored on RGB.

For RGB features R and a query-side feature set X: p = softmax over the batch of cos/temperature,
q = same-identity indicator normalised per row, loss = KL(p || q) for R->X plus the same for X->R.

`sdm_terms` computes many such terms at once: every view of a batch is a `[B, D]` matrix over the
batch's samples with a presence mask, and each term (an anchor view against a query view) is one
slice of a batched matrix product, so the cost in operators does not grow with the number of
views. `sdm_loss` is the single-pair form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8


def _kl_rows(
    logits: torch.Tensor, positives: torch.Tensor, cols: torch.Tensor, smoothing: float
) -> torch.Tensor:
    """Per row, KL(softmax(logits) || target) over the valid columns `cols`, target = positives
    / row sum mixed with a uniform row by `smoothing`; rows without a positive give 0.
    `logits`, `positives` `[..., N, M]`; `cols` `[..., 1, M]` bool. Returns `[..., N]`."""
    count = positives.sum(dim=-1, keepdim=True)  # [..., N, 1]
    width = cols.sum(dim=-1, keepdim=True).clamp_min(1)  # valid columns
    target = positives / count.clamp_min(1)
    if smoothing:
        target = (1 - smoothing) * target + smoothing / width
    log_pred = logits.masked_fill(~cols, float("-inf")).log_softmax(dim=-1)
    # finite everywhere before the product, so no NaN reaches the gradient of a masked entry
    log_pred = torch.where(cols, log_pred, 0.0)
    kl = log_pred.exp() * (log_pred - torch.log(target + _EPS))
    return torch.where(cols, kl, 0.0).sum(dim=-1)


def _direction(
    logits: torch.Tensor,
    positives: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    smoothing: float,
) -> torch.Tensor:
    """Mean over the valid rows that have a positive of their KL: `[..., N, M]` -> `[...]`."""
    kl = _kl_rows(logits, positives, cols[..., None, :], smoothing)
    used = rows & (positives.sum(dim=-1) > 0)
    return (kl * used).sum(dim=-1) / used.sum(dim=-1).clamp_min(1)


def _both_directions(
    cos: torch.Tensor,
    positives: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    temperature: float,
    margin: float,
    smoothing: float,
) -> torch.Tensor:
    """R->X plus X->R from the cosines `[..., N, M]`: the margin off the positive pairs, the
    temperature, then each direction over its valid rows and columns."""
    if margin:
        cos = cos - margin * positives
    logits = cos / temperature
    r2x = _direction(logits, positives, rows, cols, smoothing)
    x2r = _direction(logits.transpose(-1, -2), positives.transpose(-1, -2), cols, rows, smoothing)
    return r2x + x2r


def sdm_terms(
    anchors: torch.Tensor,
    queries: torch.Tensor,
    anchor_rows: torch.Tensor,
    query_rows: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    margin: float = 0.0,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """SDM of `T` terms at once: `anchors`, `queries` `[T, B, D]` (rows absent from a view are
    anything finite), `anchor_rows`, `query_rows` `[T, B]` bool presence, `labels` `[B]`.
    Returns `[T]`: each term's R->X plus X->R loss, rows without a positive on the other side
    left out of that direction (0 when no row has one)."""
    a = F.normalize(anchors.float(), dim=-1)
    q = F.normalize(queries.float(), dim=-1)
    cos = a @ q.transpose(1, 2)  # [T, B, B]
    same = labels[:, None] == labels[None, :]  # [B, B]
    pair = anchor_rows[:, :, None] & query_rows[:, None, :]  # [T, B, B]
    positives = (same & pair).float()
    return _both_directions(cos, positives, anchor_rows, query_rows, temperature, margin, smoothing)


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
    rows = torch.ones(cos.shape[0], dtype=torch.bool, device=cos.device)
    cols = torch.ones(cos.shape[1], dtype=torch.bool, device=cos.device)
    return _both_directions(cos, positives, rows, cols, temperature, margin, smoothing)
