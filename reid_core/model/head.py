"""BNNeck -> dropout -> linear ID classifier."""

from __future__ import annotations

import functools

import torch
from torch import nn

from reid_core.modality import Modality

# modalities that see colour: a view holding none of them leaves the colour dimensions zero
COLOUR_MODALITIES = (Modality.VIS, Modality.CP, Modality.TEXT)


_COLOUR_COLUMNS = tuple(m.column in {c.column for c in COLOUR_MODALITIES} for m in Modality)


@functools.cache
def _colour_columns(device: torch.device) -> torch.Tensor:
    """The colour columns on `device`, made once (on CUDA, a tensor built from Python values is
    a copy that waits for the GPU's queue)."""
    return torch.tensor(_COLOUR_COLUMNS).to(device)


def colourless_rows(mask: torch.Tensor) -> torch.Tensor:
    """`[batch, modalities]` mask -> `[batch]`: rows holding no modality that sees colour."""
    return ~(mask & _colour_columns(mask.device)).any(dim=1)


class BNNeckHead(nn.Module):
    """BatchNorm1d neck (bias frozen, as in the BNNeck of Luo et al.) whose output is the
    retrieval vector; dropout and a bias-free linear classifier give the ID logits.

    With `colour_dims` > 0 and a modality mask, rows of infrared and/or sketch alone get the
    first `colour_dims` dimensions of their retrieval vector set to zero (`model.head.colour_dims`):
    such a query is compared with an RGB image on what both can see, and the RGB vector keeps its
    colour dimensions for colour pencil and text queries.

    In eval mode the BatchNorm uses its running statistics, so each sample is independent."""

    def __init__(self, dim: int, num_classes: int, dropout: float, colour_dims: int = 0) -> None:
        super().__init__()
        if not 0 <= colour_dims < dim:
            raise ValueError(f"colour_dims must be in [0, {dim}), got {colour_dims}")
        self.colour_dims = colour_dims
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)  # no shift: keeps the neck centred for cosine retrieval
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(
        self,
        fused: torch.Tensor,
        mask: torch.Tensor | None = None,
        colourless: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`[batch, dim]` (and the rows' modality mask) -> (bn_features `[batch, dim]`, logits
        `[batch, num_classes]`). `colourless` (`[batch]` bool) marks more rows whose colour was
        taken away, such as the objective's grey pass of RGB images."""
        bn = self.bn(fused)
        if self.colour_dims and (mask is not None or colourless is not None):
            rows = [colourless_rows(mask)] if mask is not None else []
            rows += [colourless] if colourless is not None else []
            drop = rows[0] if len(rows) == 1 else rows[0] | rows[1]
            # 0 on the colour dimensions of the rows without colour, 1 elsewhere
            colour = torch.arange(bn.shape[1], device=bn.device) < self.colour_dims
            bn = bn * ~(drop[:, None] & colour)
        return bn, self.classifier(self.dropout(bn))
