"""A convolutional patch embedding: the `model.stem.kind: conv` alternative to CLIP's linear one.

A stack of 3x3 stride-2 convolutions (BatchNorm, GELU) reaching the patch grid, then a 1x1
projection to the ViT width (Xiao et al., "Early convolutions help transformers see better").
For a random-init ViT it learns edges and outlines, what infrared and sketch carry, far faster
than one linear map of each patch. It reads the modality's own channels (1 for infrared and
sketch), so no grey adapter is needed; it has no CLIP weights to load.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ConvStem(nn.Module):
    """`[batch, channels, H, W]` -> `[batch, width, H / patch, W / patch]`."""

    def __init__(self, channels: int, width: int, patch: int, base: int) -> None:
        super().__init__()
        if patch < 2 or patch & (patch - 1):
            raise ValueError(f"a conv stem needs a power-of-two patch size, got {patch}")
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(int(math.log2(patch))):
            c_out = min(width, base * 2**i)
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.GELU(),
            ]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(x))
