"""Masked fusion of per-modality features into one embedding per sample."""

from __future__ import annotations

import torch
from torch import nn

from reid_core.errors import ReidError
from reid_core.modality import ALL_MODALITIES, Modality
from reid_core.model.layers import Attention, Mlp


class MaskedFusion(nn.Module):
    """Stack `[batch, M, dim]` (a learnable null token per modality stands in for absent ones) ->
    multi-head self-attention with `key_padding_mask` -> MLP mixer -> masked weighted mean over the
    present modalities.

    A sample's output depends only on its own present modalities: absent slots are never keys and
    get weight 0, so it does not change when another sample in the batch gains or loses one.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        n = len(ALL_MODALITIES)
        self.null = nn.Parameter(torch.randn(n, dim) * 0.02)  # never zeros
        self.type_embed = nn.Parameter(torch.randn(n, dim) * 0.02)
        self.norm_attn, self.norm_mlp, self.norm_out = (nn.LayerNorm(dim) for _ in range(3))
        self.attn = Attention(dim, heads, dropout)
        self.mlp = Mlp(dim, mlp_ratio, dropout)
        self.score = nn.Linear(dim, 1)

    def _stack(
        self, features: dict[Modality, torch.Tensor], mask: torch.Tensor, cols: list[Modality]
    ) -> torch.Tensor:
        """Scatter the packed `features[m]` `[N_m, dim]` into `[batch, M, dim]` over null tokens."""
        ref = features[cols[0]]
        index = torch.tensor([m.column for m in cols], device=ref.device)
        x = self.null[index].to(ref.dtype).unsqueeze(0).repeat(mask.shape[0], 1, 1)
        # nonzero() is a host sync on GPU; one per modality per batch
        rows = torch.cat([mask[:, m.column].nonzero().squeeze(1) for m in cols])
        slots = torch.cat(
            [torch.full((features[m].shape[0],), j, device=ref.device) for j, m in enumerate(cols)]
        )
        values = torch.cat([features[m] for m in cols])
        return x.index_put((rows, slots), values) + self.type_embed[index].to(ref.dtype)

    def forward(self, features: dict[Modality, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """`features[m]` `[N_m, dim]` packed; `mask` `[batch, 5]` bool -> `[batch, dim]`."""
        cols = [m for m in ALL_MODALITIES if bool(mask[:, m.column].any())]
        _check(features, mask, cols)
        present = mask[:, [m.column for m in cols]]  # [batch, M]
        x = self._stack(features, mask, cols)  # [batch, M, dim]
        h = self.norm_attn(x)
        x = x + self.attn(h, h, key_padding_mask=~present)
        x = self.norm_out(x + self.mlp(self.norm_mlp(x)))
        score = self.score(x).squeeze(-1).masked_fill(~present, float("-inf"))
        weight = score.softmax(dim=-1).unsqueeze(-1)  # [batch, M, 1]; 0 at absent slots
        return (weight * x).sum(dim=1)


def _check(
    features: dict[Modality, torch.Tensor], mask: torch.Tensor, cols: list[Modality]
) -> None:
    if mask.dtype != torch.bool or mask.dim() != 2 or mask.shape[1] != len(ALL_MODALITIES):
        raise ValueError(f"mask must be a [batch, {len(ALL_MODALITIES)}] bool tensor")
    if not bool(mask.any(dim=1).all()):
        bad = (~mask.any(dim=1)).nonzero().flatten().tolist()
        raise ReidError(f"samples {bad[:5]} have no modality; an embedding needs at least one")
    for m in cols:
        if m not in features:
            raise ReidError(f"mask marks {m.value} present but no {m.value} features were given")
        n = int(mask[:, m.column].sum())
        if features[m].shape[0] != n:
            raise ValueError(f"features[{m.value}] has {features[m].shape[0]} rows, mask says {n}")
