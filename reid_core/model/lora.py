"""MER: modality-routed LoRA on open_clip's vision blocks, with an attention forward of our own.

open_clip 3.x attention is `nn.MultiheadAttention`: q, k and v live in one packed `in_proj_weight`
and the functional call reads `out_proj.weight` directly, so a hook or wrapper on `out_proj` never
runs. `MerBlock` therefore reuses open_clip's block weights (same parameter names) and runs its own
forward over them with `F.scaled_dot_product_attention`.

The images of every modality go through the blocks together: each shared weight is one GEMM over
all rows, and each row gets the update of its own modality's adapters. An adapter group is every
adapter that shares one GEMM (q, k and v share `in_proj_weight`; out, c_fc and c_proj have one
each). Its adapters are stacked over modalities (`down` `[M, n, r, in]`, `up` `[M, n, out, r]`),
so the update of a mixed batch is two skinny GEMMs whatever the number of modalities:
`u = x A^T` for every modality's A at once, `u` masked to the columns of the row's own modality
(`Route`), then `u B^T` with the B of each target placed at the rows it owns. The extra work is
the down-projection for the other modalities' columns: `M x rank` columns next to the weight's
`out`, a few percent of the GEMM.
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
# The GEMM each target adapts, and which third of a packed in_proj_weight it owns.
GROUP_OF = {"q": "qkv", "k": "qkv", "v": "qkv", "out": "out", "c_fc": "c_fc", "c_proj": "c_proj"}
_QKV_ROW = {"q": 0, "k": 1, "v": 2}


class Route:
    """Which modality each image row of a forward belongs to: a one-hot `[N, M]` over the
    backbone's modalities, built on the host from the segment sizes (no device sync), and its
    column masks per group width, built once per forward."""

    def __init__(self, onehot: torch.Tensor) -> None:
        self.onehot = onehot  # [N, M] bool
        self._columns: dict[int, torch.Tensor] = {}

    @classmethod
    def of(cls, sizes: Sequence[tuple[int, int]], modalities: int, device: Any) -> Route:
        """`sizes`: (modality position, rows) per segment, in row order."""
        onehot = np.zeros((sum(n for _, n in sizes), modalities), dtype=bool)
        start = 0
        for position, n in sizes:
            onehot[start : start + n, position] = True
            start += n
        return cls(torch.from_numpy(onehot).to(device, non_blocking=True))

    def columns(self, width: int) -> torch.Tensor:
        """`[N, 1, M * width]` bool: True in the `width` columns of the row's own modality."""
        if width not in self._columns:
            self._columns[width] = self.onehot.repeat_interleave(width, dim=1)[:, None, :]
        return self._columns[width]


class LoraGroup(nn.Module):
    """The adapters of one GEMM for every modality: `down` `[M, n, r, in]` (A, kaiming-uniform as
    nn.Linear and PEFT), `up` `[M, n, out, r]` (B, zero: an adapter starts as the identity).
    `starts[j]` is the first output row target j owns (q, k and v share one packed weight)."""

    def __init__(
        self, modalities: int, targets: Sequence[str], in_f: int, out_f: int, rank: int
    ) -> None:
        super().__init__()
        self.targets = tuple(targets)
        self.starts = tuple(_QKV_ROW.get(t, 0) * out_f for t in self.targets)
        self.out_total = 3 * out_f if GROUP_OF[self.targets[0]] == "qkv" else out_f
        n = len(self.targets)
        self.down = nn.Parameter(torch.empty(modalities, n, rank, in_f))
        self.up = nn.Parameter(torch.zeros(modalities, n, out_f, rank))

    def init_adapter(self, modality: int, target: str) -> None:
        """Initialise one adapter's A (in the order the adapters were always drawn)."""
        a = self.down.data[modality, self.targets.index(target)]  # [r, in]
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))

    def up_matrix(self) -> torch.Tensor:
        """Every modality's B placed at its target's rows: `[out_total, M * n * r]`."""
        m, n, out, r = self.up.shape
        if n == 1 and out == self.out_total:
            return self.up[:, 0].permute(1, 0, 2).reshape(out, m * r)
        full = self.up.new_zeros(self.out_total, m, n, r)
        for j, start in enumerate(self.starts):
            full[start : start + out, :, j] = self.up[:, j].permute(1, 0, 2)
        return full.view(self.out_total, m * n * r)


def adapted_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    group: LoraGroup | None,
    route: Route | None,
    scale: float,
    dropout: nn.Module,
) -> torch.Tensor:
    """`F.linear(x, weight, bias)` plus each row's own modality's adapters; `x` `[N, T, in]`."""
    y = F.linear(x, weight, bias)  # [N, T, out]
    if group is None or route is None:
        return y
    n, t, width = x.shape
    u = F.linear(dropout(x), group.down.reshape(-1, width))  # [N, T, M n r]
    u = u * route.columns(u.shape[-1] // route.onehot.shape[1])
    y = torch.addmm(y.view(n * t, -1), u.view(n * t, -1), group.up_matrix().t(), alpha=scale)
    return y.view(n, t, -1)


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
        group, m = self.group_of(target), self.modalities.index(modality)
        j = group.targets.index(target)
        return group.down[m, j], group.up[m, j]

    def _linear(self, x: torch.Tensor, layer: Any, name: str, route: Route | None) -> Any:
        weight = layer.in_proj_weight if name == "qkv" else layer.weight
        bias = layer.in_proj_bias if name == "qkv" else layer.bias
        group = self._groups_by_name.get(name)
        return adapted_linear(x, weight, bias, group, route, self.scale, self.lora_dropout)

    def attention(self, x: torch.Tensor, route: Route | None) -> torch.Tensor:
        n, t, width = x.shape  # [batch, tokens, width]
        qkv = self._linear(x, self.attn, "qkv", route)
        q, k, v = qkv.view(n, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # [batch, heads, t, hd]
        o = F.scaled_dot_product_attention(q, k, v)  # [batch, heads, tokens, head_dim]
        o = o.transpose(1, 2).reshape(n, t, width)
        return self._linear(o, self.attn.out_proj, "out", route)

    def mlp_forward(self, x: torch.Tensor, route: Route | None) -> torch.Tensor:
        h = self.mlp.gelu(self._linear(x, self.mlp.c_fc, "c_fc", route))
        return self._linear(h, self.mlp.c_proj, "c_proj", route)

    def forward(self, x: torch.Tensor, route: Route | None) -> torch.Tensor:
        """`x` `[N, T, width]`; `route` says which modality's adapters each row uses."""
        x = x + self.ls_1(self.attention(self.ln_1(x), route))
        return x + self.ls_2(self.mlp_forward(self.ln_2(x), route))
