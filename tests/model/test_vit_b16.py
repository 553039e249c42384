"""The real architecture: ViT-B/16 at 256x128 (random weights, nothing downloaded)."""

from __future__ import annotations

import pytest
import torch

from reid_core.config import load_config
from reid_core.modality import Modality
from reid_core.model import build_model


@pytest.mark.slow
def test_vit_b16_builds_at_reid_size():
    cfg = load_config(preset="vit-b16")
    model = build_model(cfg, num_classes=10, load_pretrained=False).eval()
    bb = model.backbone
    assert bb.grid_size == (16, 8) and bb.positional_embedding.shape == (129, 768)
    assert len(bb.blocks) == 12
    d, r = 768, 4
    per_block = 4 * r * (d + d) + 2 * r * (d + 4 * d)
    targets = ("q", "k", "v", "out", "c_fc", "c_proj")
    lora = sum(
        a.numel() + b.numel()
        for block in bb.blocks
        for a, b in (block.adapter(Modality.SK, t) for t in targets)
    )
    assert lora == 12 * per_block == 663_552
    assert type(bb.blocks[0].mlp.gelu).__name__ == "QuickGELU"  # the 'openai' tag
    with torch.no_grad():
        feats = model.encode(
            {
                Modality.SK: torch.randn(1, 1, 256, 128),
                Modality.TEXT: model.tokenize(["a woman in a white shirt"]),
            }
        )
    assert {m: f.shape for m, f in feats.items()} == {
        Modality.SK: (1, 512),
        Modality.TEXT: (1, 512),
    }
    assert model.param_groups()["text"] == []  # the preset freezes the text tower
