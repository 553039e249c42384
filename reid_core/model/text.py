"""CLIP's text tower and open_clip's bundled BPE tokenizer (no download)."""

from __future__ import annotations

import functools
from typing import Any, cast

import torch
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import text_global_pool
from torch import nn


class TextEncoder(nn.Module):
    """open_clip's CLIP text tower (same parameter names), returning tokens for SDM as well."""

    def __init__(self, clip: Any) -> None:  # open_clip CLIP
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.context_length = clip.context_length
        self.pool_type, self.eos_id = clip.text_pool_type, clip.text_eos_id
        self.width = self.transformer.width
        self.output_dim = self.width  # without a projection the pooled token is the output
        if isinstance(self.text_projection, nn.Parameter):
            self.output_dim = self.text_projection.shape[1]
        elif isinstance(self.text_projection, nn.Linear):
            self.output_dim = self.text_projection.out_features

    def trim(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids `[batch, context]` cut after the longest caption's end token. Under causal
        attention the tokens after it never reach a kept token, so the cut is exact, and it
        saves most of the text cost. Call it on the host, where the ids are made: reading the
        length of device ids would be a sync."""
        if self.attn_mask is None or self.pool_type != "argmax" or ids.shape[0] == 0:
            return ids
        return ids[:, : int(ids.argmax(dim=-1).max()) + 1]

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token ids `[batch, L]` (trimmed or not: `trim`) -> (tokens `[batch, L, width]`,
        pooled `[batch, embed]`, padding `[batch, L]`, True after each caption's end token)."""
        ends = ids.argmax(dim=-1)  # the end-of-text token has the highest id
        length = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:length]  # [batch, L', width]
        causal = cast(torch.Tensor | None, self.attn_mask)
        mask = None if causal is None else causal[:length, :length]
        x = self.ln_final(self.transformer(x, attn_mask=mask))
        pooled = text_global_pool(x, ids, self.pool_type, eos_token_id=self.eos_id)
        if isinstance(self.text_projection, nn.Linear):
            pooled = self.text_projection(pooled)
        elif self.text_projection is not None:
            pooled = pooled @ self.text_projection  # [batch, embed]
        padding = torch.arange(length, device=ids.device)[None, :] > ends[:, None]
        return x, pooled, padding


@functools.lru_cache(maxsize=4)
def build_tokenizer(context_length: int) -> SimpleTokenizer:
    """open_clip's CLIP BPE tokenizer; the vocabulary ships inside the package. Cached: reading
    the vocabulary takes a few hundred milliseconds and the tokenizer holds no per-model state."""
    return SimpleTokenizer(context_length=context_length)
