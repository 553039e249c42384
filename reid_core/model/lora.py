"""MER: modality-routed LoRA on open_clip's vision blocks, with an attention forward of our own.

open_clip 3.x attention is `nn.MultiheadAttention`: q, k and v live in one packed `in_proj_weight`
and the functional call reads `out_proj.weight` directly, so a hook or wrapper on `out_proj` never
runs. `MerBlock` therefore reuses open_clip's block weights (same parameter names) and runs its own
forward over them with `F.scaled_dot_product_attention`.

The images of every modality go through the blocks together, as 2-D token rows: each shared
weight is one GEMM over all rows, and each row gets the update of its own modality's adapters. An
adapter group is every adapter that shares one GEMM (q, k and v share `in_proj_weight`; out, c_fc
and c_proj have one each). Its adapters are stored stacked (`LoraGroup`), so the update of a mixed
batch is two skinny GEMMs whatever the number of modalities: `u = x A^T` for every modality's A at
once, `u` masked to the columns of the row's own modality (`Route`), then `u B^T` with the B of
each target placed at the rows it owns. The extra work is the other modalities' columns of both
skinny GEMMs (`M x rank` next to the weight's `in` and `out`): a few percent of a ViT-B/16 GEMM,
~15 % of a width-128 `cpu-tiny` step at one thread (docs/BENCHMARKS.md, "Training throughput").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reid_core.errors import ReidError
from reid_core.modality import Modality

TARGETS: tuple[str, ...] = ("q", "k", "v", "out", "c_fc", "c_proj")
# The GEMM each target adapts (q, k and v own the thirds of the packed in_proj_weight, in order).
GROUP_OF = {"q": "qkv", "k": "qkv", "v": "qkv", "out": "out", "c_fc": "c_fc", "c_proj": "c_proj"}


class Route:
    """Which modality each token row of a forward belongs to: a one-hot `[N, M]` over the
    backbone's modalities, built on the host from the segment sizes (no device sync), and its
    column masks per adapter group, built once per forward."""

    def __init__(self, onehot: torch.Tensor, tokens: int) -> None:
        self.onehot = onehot  # [N, M] bool, one row per image
        self.tokens = tokens
        self._columns: dict[tuple[int, int, float, torch.dtype], torch.Tensor] = {}

    @classmethod
    def of(
        cls, sizes: Sequence[tuple[int, int]], modalities: int, tokens: int, device: Any
    ) -> Route:
        """`sizes`: (modality position, rows) per segment, in row order; `tokens` per image."""
        onehot = np.zeros((sum(n for _, n in sizes), modalities), dtype=bool)
        start = 0
        for position, n in sizes:
            onehot[start : start + n, position] = True
            start += n
        host = torch.from_numpy(onehot)
        if torch.device(device).type == "cuda":  # pinned: the copy does not wait for the GPU
            host = host.pin_memory()
        return cls(host.to(device, non_blocking=True), tokens)

    def columns(self, targets: int, rank: int, scale: float, dtype: torch.dtype) -> torch.Tensor:
        """`[N * tokens, targets * M * rank]`, columns ordered (target, modality, rank): the
        adapters' scale in the columns of the token row's own modality, 0 elsewhere (the scale
        rides on the mask, so the update's GEMM and its backward need no extra multiply)."""
        key = (targets, rank, scale, dtype)
        if key not in self._columns:
            per_image = self.onehot.repeat_interleave(rank, dim=1).repeat(1, targets)
            mask = per_image.repeat_interleave(self.tokens, dim=0)
            self._columns[key] = mask.to(dtype) * scale
        return self._columns[key]


class LoraGroup(nn.Module):
    """The adapters of one GEMM for every modality, stored as the two matrices of the routed
    update so a step builds nothing: `down` `[n M r, in]` (A, rows ordered target, modality,
    rank; kaiming-uniform as nn.Linear and PEFT) and `up` (B, zero: an adapter starts as the
    identity), `[out, M r]` for a group of one target that owns the whole GEMM, else
    `[n, out, M r]`, placed block-diagonally at the rows each target owns (q, k and v share one
    packed weight; a target left out of the group keeps a zero block)."""

    def __init__(
        self, modalities: int, targets: Sequence[str], in_f: int, out_f: int, rank: int
    ) -> None:
        super().__init__()
        self.targets = tuple(targets)
        self.modalities, self.rank = modalities, rank
        packed = GROUP_OF[self.targets[0]] == "qkv"
        self.single = len(self.targets) == 1 and not packed
        n, m = len(self.targets), modalities
        self.down = nn.Parameter(torch.empty(n * m * rank, in_f))
        up_shape = (out_f, m * rank) if self.single else (n, out_f, m * rank)
        self.up = nn.Parameter(torch.zeros(up_shape))
        # each packed row third in order: the index of its target in `up`, or None (a zero block)
        self._thirds = (
            [self.targets.index(t) if t in self.targets else None for t in ("q", "k", "v")]
            if packed
            else []
        )
        self.register_buffer("_gap", torch.zeros(out_f, 0), persistent=False)

    def down_rows(self, modality: int, target: str) -> slice:
        """The rows of `down` holding one adapter's A."""
        start = (self.targets.index(target) * self.modalities + modality) * self.rank
        return slice(start, start + self.rank)

    def adapter(self, modality: int, target: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One adapter: views of (A `[r, in]`, B `[out, r]`)."""
        return self._slices(self.down, self.up, modality, target)

    def adapter_grads(self, modality: int, target: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The gradients of one adapter's (A, B), after a backward pass."""
        if self.down.grad is None or self.up.grad is None:
            raise ValueError("no gradients: run a backward pass first")
        return self._slices(self.down.grad, self.up.grad, modality, target)

    def _slices(
        self, down: torch.Tensor, up: torch.Tensor, modality: int, target: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cols = slice(modality * self.rank, (modality + 1) * self.rank)
        up = up if self.single else up[self.targets.index(target)]
        return down[self.down_rows(modality, target)], up[:, cols]

    def init_adapter(self, modality: int, target: str) -> None:
        """Initialise one adapter's A (in the order the adapters were always drawn)."""
        a = self.down.data[self.down_rows(modality, target)]  # [r, in]
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))

    def up_matrix(self) -> torch.Tensor:
        """Every adapter's B at the rows its target owns: `[out_total, n M r]`."""
        if self.single:
            return self.up
        ups = self.up.unbind(0)  # one op (and one stack back), where indexing costs one per block
        return torch.block_diag(*(self._gap if j is None else ups[j] for j in self._thirds))


def adapted_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    group: LoraGroup | None,
    route: Route | None,
    scale: float,
    dropout: nn.Module,
) -> torch.Tensor:
    """`F.linear(x, weight, bias)` plus each row's own modality's adapters; `x` `[rows, in]`."""
    y = F.linear(x, weight, bias)  # [rows, out]
    if group is None or route is None:
        return y
    u = F.linear(dropout(x), group.down)  # [rows, n M r]
    u = u * route.columns(len(group.targets), group.rank, scale, u.dtype)
    return torch.addmm(y, u, group.up_matrix().t())


class MerBlock(nn.Module):
    """open_clip's `ResidualAttentionBlock` weights with a forward routed by modality.

    `lora` holds one `LoraGroup` per adapted GEMM (empty: a block without adapters)."""

    def __init__(
        self,
        block: Any,  # open_clip ResidualAttentionBlock
        modalities: Sequence[Modality],
        targets: Sequence[str],
        rank: int,
        alpha: float,
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
        self.modalities = tuple(modalities)
        self.scale = alpha / rank
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora = nn.ModuleDict(self._groups(targets, rank) if modalities else {})
        self._groups_by_name: dict[str, LoraGroup] = dict(self.lora.items())  # type: ignore[arg-type]
        for m in range(len(self.modalities)):  # A drawn modality by modality, target by target
            for target in TARGETS:
                if target in targets:
                    self.group_of(target).init_adapter(m, target)

    def _groups(self, targets: Sequence[str], rank: int) -> dict[str, LoraGroup]:
        width, mlp_width = self.attn.embed_dim, self.mlp.c_fc.out_features
        shapes = {"qkv": (width, width), "out": (width, width)}
        shapes |= {"c_fc": (width, mlp_width), "c_proj": (mlp_width, width)}
        groups: dict[str, list[str]] = {}
        for target in TARGETS:
            if target in targets:
                groups.setdefault(GROUP_OF[target], []).append(target)
        m = len(self.modalities)
        return {g: LoraGroup(m, ts, *shapes[g], rank) for g, ts in groups.items()}

    def group_of(self, target: str) -> LoraGroup:
        return self.lora[GROUP_OF[target]]  # type: ignore[return-value]

    def adapter(self, modality: Modality, target: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One modality's adapter of one target: views of (A `[r, in]`, B `[out, r]`)."""
        return self.group_of(target).adapter(self.modalities.index(modality), target)

    def _linear(self, x: torch.Tensor, layer: Any, name: str, route: Route | None) -> Any:
        weight = layer.in_proj_weight if name == "qkv" else layer.weight
        bias = layer.in_proj_bias if name == "qkv" else layer.bias
        group = self._groups_by_name.get(name)
        return adapted_linear(x, weight, bias, group, route, self.scale, self.lora_dropout)

    def attention(self, x: torch.Tensor, tokens: int, route: Route | None) -> torch.Tensor:
        rows, width = x.shape  # [batch * tokens, width]
        qkv = self._linear(x, self.attn, "qkv", route)
        q, k, v = qkv.view(-1, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)  # [batch, heads, tokens, head_dim]
        o = o.transpose(1, 2).reshape(rows, width)
        return self._linear(o, self.attn.out_proj, "out", route)

    def mlp_forward(self, x: torch.Tensor, route: Route | None) -> torch.Tensor:
        h = self.mlp.gelu(self._linear(x, self.mlp.c_fc, "c_fc", route))
        return self._linear(h, self.mlp.c_proj, "c_proj", route)

    def forward(self, x: torch.Tensor, tokens: int, route: Route | None) -> torch.Tensor:
        """`x` `[N * tokens, width]` (the token rows of N images, kept 2-D so every GEMM is one
        `addmm` without reshapes); `route` says which modality's adapters each row uses."""
        x = x + self.ls_1(self.attention(self.ln_1(x), tokens, route))
        return x + self.ls_2(self.mlp_forward(self.ln_2(x), route))
