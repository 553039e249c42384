"""MER: modality-routed LoRA on open_clip's vision blocks, with an attention forward of our own.

open_clip 3.x attention is `nn.MultiheadAttention`: q, k and v live in one packed `in_proj_weight`
and the functional call reads `out_proj.weight` directly, so a hook or wrapper on `out_proj` never
runs. `MerBlock` therefore reuses open_clip's block weights (same parameter names) and runs its own
forward over them with `F.scaled_dot_product_attention`.

An adapter group is every adapter that shares one GEMM: q, k and v share `in_proj_weight`, the
others have a GEMM each. A group is applied as one low-rank pair (`down` = the adapters' A stacked
`[n * rank, in]`, `up` = their B placed block-diagonally at their rows `[out, n * rank]`), so q, k
and v make one pass over x, not three. Two forms (the backbone picks merged unless the adapters
have dropout; docs/BENCHMARKS.md measures both):

- merged: `y = x (W + s up down)^T + b` in one GEMM. Its backward (`_MergedLinear`) takes the
  adapters' gradients from the weight gradient when W trains (it is computed anyway, so LoRA is
  nearly free) and from skinny GEMMs over x and dy when W is frozen (no weight-gradient GEMM).
- side: `y = x W^T + b + s (drop(x) down^T) up^T`, the only form that can apply adapter dropout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from reid_core.errors import ReidError
from reid_core.modality import Modality

TARGETS: tuple[str, ...] = ("q", "k", "v", "out", "c_fc", "c_proj")
# The GEMM each target adapts, and which third of a packed in_proj_weight it owns.
_GROUP = {"q": "qkv", "k": "qkv", "v": "qkv", "out": "out", "c_fc": "c_fc", "c_proj": "c_proj"}
_QKV_ROW = {"q": 0, "k": 1, "v": 2}


class LoraAdapter(nn.Module):
    """One low-rank update `s * up @ down` of a `[out, in]` weight; `up` starts at zero."""

    def __init__(self, in_features: int, out_features: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.empty(rank, in_features))  # A [rank, in]
        self.up = nn.Parameter(torch.zeros(out_features, rank))  # B [out, rank]
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))  # as nn.Linear (and PEFT) init A


def _merged_autocast(rows, weight, bias, down, up, scale) -> torch.Tensor:
    """`_MergedLinear` under autocast: a custom Function is not autocast itself, so its inputs
    are cast to the autocast dtype here and it runs with autocast off (its backward then sees
    one dtype, as `F.linear` under autocast would)."""
    dev = rows.device.type
    if not torch.is_autocast_enabled(dev):
        return _MergedLinear.apply(rows, weight, bias, down, up, scale)
    dt = torch.get_autocast_dtype(dev)
    cast = [t if t is None else t.to(dt) for t in (rows, weight, bias, down, up)]
    with torch.autocast(dev, enabled=False):
        return _MergedLinear.apply(*cast, scale)


class _MergedLinear(torch.autograd.Function):
    """`x (W + s up down)^T + b`, one GEMM; the backward never forms dW when W is frozen.

    W trains: dW = dy^T x is computed anyway and the adapters' gradients are tiny GEMMs on it.
    W frozen: the forward appends `down`'s rows to the weight, so the same GEMM also yields
    `u = x down^T`; the backward adds three skinny GEMMs (dy up, dy^T u, (dy up)^T x), each one
    pass over an activation, instead of the full weight-gradient GEMM autograd would run.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, down, up, scale):  # x [rows, in]
        need_w, need_down, need_up = (ctx.needs_input_grad[i] for i in (1, 3, 4))
        ctx.scale, ctx.frozen = scale, not need_w and (need_down or need_up)
        if not ctx.frozen:
            w_eff = torch.addmm(weight, up, down, alpha=scale)  # [out, in]
            ctx.save_for_backward(x, w_eff, down, up)
            return F.linear(x, w_eff, bias)
        out, rank = weight.shape[0], down.shape[0]
        w_cat = weight.new_empty(out + rank, weight.shape[1])  # [W_eff; down], built in place
        torch.addmm(weight, up, down, alpha=scale, out=w_cat[:out])
        w_cat[out:] = down
        b_cat = None if bias is None else torch.cat([bias, bias.new_zeros(rank)])
        yu = F.linear(x, w_cat, b_cat)  # [rows, out + n r]: y and u = x down^T in one GEMM
        ctx.save_for_backward(x, w_cat[:out], down, up, yu[:, out:])
        return yu[:, :out]

    @staticmethod
    def backward(ctx, gy):  # gy [rows, out]
        s = ctx.scale
        need_x, need_w, need_b, need_down, need_up, _ = ctx.needs_input_grad
        gb = gy.sum(0) if need_b else None
        if ctx.frozen:
            x, w_eff, down, up, u = ctx.saved_tensors
            gx = gy @ w_eff if need_x else None  # the GEMM the frozen base model runs too
            gu = gy @ up  # [rows, n r]
            gup = (gy.t() @ u).mul_(s) if need_up else None  # [out, n r]
            gdown = (gu.t() @ x).mul_(s) if need_down else None  # [n r, in]
            return gx, None, gb, gdown, gup, None
        x, w_eff, down, up = ctx.saved_tensors
        gx = gy @ w_eff if need_x else None
        gw = gy.t() @ x if need_w else None  # [out, in]
        gup = (gw @ down.t()).mul_(s) if gw is not None and need_up else None
        gdown = (up.t() @ gw).mul_(s) if gw is not None and need_down else None
        return gx, gw, gb, gdown, gup, None


def _lowrank_pair(
    adapters: Sequence[tuple[int, LoraAdapter]], out_features: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a group's adapters: `down` `[n r, in]`, `up` `[out, n r]` block-diagonal at the rows
    each adapter owns (zero rows for targets without one)."""
    if len(adapters) == 1 and adapters[0][1].up.shape[0] == out_features:
        return adapters[0][1].down, adapters[0][1].up
    total = sum(a.up.shape[1] for _, a in adapters)
    blocks, col, row = [], 0, 0
    for start, adapter in adapters:
        rows, rank = adapter.up.shape
        if start > row:
            blocks.append(adapter.up.new_zeros(start - row, total))
        blocks.append(F.pad(adapter.up, (col, total - col - rank)))
        col, row = col + rank, start + rows
    if row < out_features:
        blocks.append(blocks[-1].new_zeros(out_features - row, total))
    return torch.cat([a.down for _, a in adapters]), torch.cat(blocks)


def adapted_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    adapters: Sequence[tuple[int, LoraAdapter]],
    scale: float,
    mode: str,
    dropout: nn.Module,
) -> torch.Tensor:
    """`F.linear(x, weight, bias)` plus the group's adapters; `x` `[..., in]` -> `[..., out]`."""
    if not adapters:
        return F.linear(x, weight, bias)
    down, up = _lowrank_pair(adapters, weight.shape[0])
    rows = x.reshape(-1, x.shape[-1])  # [tokens, in]; a view: x comes from LayerNorm or a GEMM
    if mode == "merged":
        y = _merged_autocast(rows, weight, bias, down, up, scale)
    else:
        y = torch.addmm(
            F.linear(rows, weight, bias), F.linear(dropout(rows), down), up.t(), alpha=scale
        )
    return y.view(*x.shape[:-1], weight.shape[0])


def build_adapters(width: int, mlp_width: int, targets: Sequence[str], rank: int) -> nn.ModuleDict:
    """One modality's adapters for one block, keyed by target name."""
    shapes = {
        "q": (width, width),
        "k": (width, width),
        "v": (width, width),
        "out": (width, width),
        "c_fc": (width, mlp_width),
        "c_proj": (mlp_width, width),
    }
    return nn.ModuleDict({t: LoraAdapter(*shapes[t], rank) for t in TARGETS if t in targets})


class MerBlock(nn.Module):
    """open_clip's `ResidualAttentionBlock` weights with a forward routed by modality."""

    def __init__(
        self,
        block: Any,  # open_clip ResidualAttentionBlock
        lora: dict[Modality, nn.ModuleDict],
        scale: float,
        mode: str,
        dropout: float,
    ) -> None:
        super().__init__()
        if not isinstance(block.attn, nn.MultiheadAttention) or block.attn.in_proj_weight is None:
            raise ReidError(
                "MER needs open_clip's default ViT block (packed nn.MultiheadAttention)"
            )
        # the same submodules (and so the same state-dict names) as open_clip's block
        self.ln_1, self.attn, self.ls_1 = block.ln_1, block.attn, block.ls_1
        self.ln_2, self.mlp, self.ls_2 = block.ln_2, block.mlp, block.ls_2
        self.heads = block.attn.num_heads
        self.lora = nn.ModuleDict({m.value: a for m, a in lora.items()})
        self.scale, self.mode = scale, mode
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self._groups = {m: self._group(a) for m, a in lora.items()}

    def _group(self, adapters: nn.ModuleDict) -> dict[str, list[tuple[int, LoraAdapter]]]:
        width = self.attn.embed_dim
        groups: dict[str, list[tuple[int, LoraAdapter]]] = {}
        for target in adapters:
            adapter = cast(LoraAdapter, adapters[target])
            start = _QKV_ROW.get(target, 0) * width
            groups.setdefault(_GROUP[target], []).append((start, adapter))
        return {g: sorted(a, key=lambda p: p[0]) for g, a in groups.items()}

    def _route(self, modality: Modality) -> dict[str, list[tuple[int, LoraAdapter]]]:
        if not self._groups:  # a block outside model.lora.blocks (or no targets)
            return {}
        try:
            return self._groups[modality]
        except KeyError:
            raise ReidError(f"no MER adapters for modality {modality!r}") from None

    def _linear(self, x: torch.Tensor, layer_w, layer_b, group: list) -> torch.Tensor:
        return adapted_linear(x, layer_w, layer_b, group, self.scale, self.mode, self.lora_dropout)

    def attention(self, x: torch.Tensor, groups: dict) -> torch.Tensor:
        n, t, width = x.shape  # [batch, tokens, width]
        attn = self.attn
        qkv = self._linear(x, attn.in_proj_weight, attn.in_proj_bias, groups.get("qkv", []))
        q, k, v = qkv.view(n, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # [batch, heads, t, hd]
        o = F.scaled_dot_product_attention(q, k, v)  # [batch, heads, tokens, head_dim]
        o = o.transpose(1, 2).reshape(n, t, width)
        out = attn.out_proj
        return self._linear(o, out.weight, out.bias, groups.get("out", []))

    def mlp_forward(self, x: torch.Tensor, groups: dict) -> torch.Tensor:
        fc, proj = self.mlp.c_fc, self.mlp.c_proj
        h = self.mlp.gelu(self._linear(x, fc.weight, fc.bias, groups.get("c_fc", [])))
        return self._linear(h, proj.weight, proj.bias, groups.get("c_proj", []))

    def forward(self, x: torch.Tensor, modality: Modality) -> torch.Tensor:
        groups = self._route(modality)
        x = x + self.ls_1(self.attention(self.ln_1(x), groups))
        return x + self.ls_2(self.mlp_forward(self.ln_2(x), groups))
