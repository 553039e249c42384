"""Small layers shared by SDM and fusion: attention over `F.scaled_dot_product_attention`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention of queries over a key/value sequence with a key padding mask."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)  # one GEMM for keys and values
        self.out = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`x` `[batch, queries, dim]`, `context` `[batch, keys, dim]`, `key_padding_mask`
        `[batch, keys]` (True: ignore) -> `[batch, queries, dim]`."""
        n, t, dim = x.shape
        q = self.q(x).view(n, t, self.heads, -1).transpose(1, 2)  # [batch, heads, queries, hd]
        k, v = self.kv(context).view(n, context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(o.transpose(1, 2).reshape(n, t, dim))


class Mlp(nn.Sequential):
    """Linear -> GELU -> dropout -> Linear (a transformer block's token-wise MLP)."""

    def __init__(self, dim: int, ratio: float, dropout: float = 0.0) -> None:
        hidden = max(1, int(dim * ratio))
        super().__init__(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
