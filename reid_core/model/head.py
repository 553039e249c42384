"""BNNeck -> dropout -> linear ID classifier."""

from __future__ import annotations

import torch
from torch import nn


class BNNeckHead(nn.Module):
    """BatchNorm1d neck (bias frozen, as in the BNNeck of Luo et al.) whose output is the
    retrieval vector; dropout and a bias-free linear classifier give the ID logits.

    In eval mode the BatchNorm uses its running statistics, so each sample is independent."""

    def __init__(self, dim: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)  # no shift: keeps the neck centred for cosine retrieval
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`[batch, dim]` -> (bn_features `[batch, dim]`, logits `[batch, num_classes]`)."""
        bn = self.bn(fused)
        return bn, self.classifier(self.dropout(bn))
