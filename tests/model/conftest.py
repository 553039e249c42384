"""Tiny OmniReID models for the model tests (micro preset, random init, nothing downloaded)."""

from __future__ import annotations

import pytest
import torch

from reid_core.config import load_config
from reid_core.modality import ALL_MODALITIES, Modality


def micro(*overrides: str):
    """The micro preset with two vision blocks (so "every block" means more than one)."""
    return load_config(preset="micro", overrides=["model.clip.custom.vision_layers=2", *overrides])


def modality_mask(*rows: tuple[Modality, ...]) -> torch.Tensor:
    """A `[len(rows), 5]` modality mask: row i holds the modalities of `rows[i]`."""
    mask = torch.zeros(len(rows), len(ALL_MODALITIES), dtype=torch.bool)
    for i, row in enumerate(rows):
        mask[i, [m.column for m in row]] = True
    return mask


def make_batch(model, mask: torch.Tensor, seed: int = 0) -> dict[Modality, torch.Tensor]:
    """Packed inputs for `mask` `[B, 5]`: rows only for the samples that have the modality."""
    g = torch.Generator().manual_seed(seed)
    height, width = model.backbone.image_size
    inputs = {}
    for m in ALL_MODALITIES:
        n = int(mask[:, m.column].sum())
        if n == 0:
            continue
        if m is Modality.TEXT:
            words = ["red", "coat", "man", "bag", "walking", "blue", "jeans"]
            inputs[m] = model.tokenize([" ".join(words[: 2 + i % 5]) for i in range(n)])
        else:
            inputs[m] = torch.randn(n, m.channels, height, width, generator=g)
    return inputs


def randomise_lora(model, seed: int = 0, std: float = 0.2) -> None:
    """Non-zero up-projections, so the adapters change the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora." in name and name.endswith(".up"):
                p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.fixture
def micro2():
    return micro()
