"""Semantic separation: multi-head attention that splits a modality's encoder tokens into a few
semantic slots (the seed's "SDM module"; the alignment loss `loss.sdm` is another thing)."""

from __future__ import annotations

import torch
from torch import nn

from reid_core.model.layers import Attention, Mlp

SEPARATION_PARTS = 4  # learnable part queries; with the pooled token, 1 + 4 slots per feature


class SemanticSeparation(nn.Module):
    """The pooled CLIP embedding and `parts` learnable queries attend (multi-head) to one
    modality's encoder tokens; each slot separates one semantic aspect, and the slots are
    projected together to `dim`.

    The part queries are shared by every modality, so slot i means the same thing for RGB, sketch
    and text; only the token projection differs per tower (`vision`, `text`), whose widths differ.
    """

    def __init__(
        self,
        token_widths: dict[str, int],
        embed_dim: int,
        dim: int,
        heads: int,
        parts: int = SEPARATION_PARTS,
    ) -> None:
        super().__init__()
        self.token_proj = nn.ModuleDict({t: nn.Linear(w, dim) for t, w in token_widths.items()})
        self.pooled_proj = nn.Linear(embed_dim, dim)
        self.parts = nn.Parameter(torch.randn(parts, dim) * 0.02)
        self.norm_tokens, self.norm_q, self.norm_mlp = (nn.LayerNorm(dim) for _ in range(3))
        self.attn = Attention(dim, heads)
        self.mlp = Mlp(dim, 2.0)
        self.out = nn.Linear((1 + parts) * dim, dim)

    def forward(
        self,
        tokens: torch.Tensor,
        pooled: torch.Tensor,
        tower: str,
        padding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """tokens `[batch, T, width]`, pooled `[batch, embed]`, padding `[batch, T]` (True: pad)
        -> `[batch, dim]`."""
        kv = self.norm_tokens(self.token_proj[tower](tokens))  # [batch, T, dim]
        parts = self.parts.to(kv.dtype).expand(kv.shape[0], -1, -1)
        q = torch.cat([self.pooled_proj(pooled)[:, None], parts], dim=1)  # [batch, 1 + parts, dim]
        q = q + self.attn(self.norm_q(q), kv, padding)
        q = q + self.mlp(self.norm_mlp(q))
        return self.out(q.flatten(1))  # [batch, dim]
