"""Masked fusion of per-modality features into one embedding per row."""

from __future__ import annotations

import torch
from torch import nn

from reid_core.errors import ReidError
from reid_core.modality import ALL_MODALITIES, Modality
from reid_core.model.layers import Attention, Mlp

SLOTS = len(ALL_MODALITIES)


def gather_index(
    features: dict[Modality, torch.Tensor], mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fusion inputs of packed features and a mask: the table (every modality's rows, in
    slot order) and `index` `[B, 5]` into it (a row's rank among the rows holding that modality;
    0 where absent). Tensor ops only: no host sync."""
    table, index = [], torch.zeros(mask.shape, dtype=torch.long, device=mask.device)
    offset = 0
    for m in ALL_MODALITIES:
        if m not in features:
            continue
        column = mask[:, m.column]
        rank = column.long().cumsum(0) - 1 + offset
        index[:, m.column] = torch.where(column, rank, 0)
        table.append(features[m])
        offset += features[m].shape[0]
    return torch.cat(table), index


class MaskedFusion(nn.Module):
    """Stack `[rows, 5, dim]` (a learnable null token per modality stands in for absent ones) ->
    multi-head self-attention with `key_padding_mask` -> MLP mixer -> masked weighted mean over the
    present modalities.

    A row's output depends only on its own present modalities: absent slots are never keys and
    get weight 0, so it does not change when another row gains or loses one.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.null = nn.Parameter(torch.randn(SLOTS, dim) * 0.02)  # never zeros
        self.type_embed = nn.Parameter(torch.randn(SLOTS, dim) * 0.02)
        self.norm_attn, self.norm_mlp, self.norm_out = (nn.LayerNorm(dim) for _ in range(3))
        self.attn = Attention(dim, heads, dropout)
        self.mlp = Mlp(dim, mlp_ratio, dropout)
        self.score = nn.Linear(dim, 1)

    def forward(self, features: dict[Modality, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """`features[m]` `[N_m, dim]` packed; `mask` `[batch, 5]` bool -> `[batch, dim]`."""
        _check(features, mask)
        table, index = gather_index(features, mask)
        return self.rows(table, index, mask)

    def rows(self, table: torch.Tensor, index: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """The fused embedding `[rows, dim]` of rows given as `index` `[rows, 5]` into `table`
        `[N, dim]` (read where `present` `[rows, 5]` is True; every row needs one)."""
        dtype = table.dtype
        x = torch.where(present[..., None], table[index], self.null.to(dtype))  # [rows, 5, dim]
        x = x + self.type_embed.to(dtype)
        h = self.norm_attn(x)
        x = x + self.attn(h, h, key_padding_mask=~present)
        x = self.norm_out(x + self.mlp(self.norm_mlp(x)))
        score = self.score(x).squeeze(-1).masked_fill(~present, float("-inf"))
        weight = score.softmax(dim=-1).unsqueeze(-1)  # [rows, 5, 1]; 0 at absent slots
        return (weight * x).sum(dim=1)


def _check(features: dict[Modality, torch.Tensor], mask: torch.Tensor) -> None:
    """The packed features fit the mask (host syncs: for evaluation and serving, not training)."""
    if mask.dtype != torch.bool or mask.dim() != 2 or mask.shape[1] != SLOTS:
        raise ValueError(f"mask must be a [batch, {SLOTS}] bool tensor")
    if not bool(mask.any(dim=1).all()):
        bad = (~mask.any(dim=1)).nonzero().flatten().tolist()
        raise ReidError(f"samples {bad[:5]} have no modality; an embedding needs at least one")
    for m in ALL_MODALITIES:
        n = int(mask[:, m.column].sum())  # 0: the column is off, its features are not read
        if n and m not in features:
            raise ReidError(f"mask marks {m.value} present but no {m.value} features were given")
        if n and features[m].shape[0] != n:
            raise ValueError(f"features[{m.value}] has {features[m].shape[0]} rows, mask says {n}")
