"""A saved state dict loads into a fresh model and gives identical outputs."""

from __future__ import annotations

import torch

from reid_core.modality import ALL_MODALITIES
from reid_core.model import build_model
from tests.model.conftest import make_batch, micro, randomise_lora


def test_state_dict_round_trip(tmp_path):
    cfg = micro()
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=6)
    randomise_lora(model)
    model.train()
    mask = torch.ones(4, len(ALL_MODALITIES), dtype=torch.bool)
    mask[1, 2:] = False
    inputs = make_batch(model, mask)
    model(inputs, mask)  # update BatchNorm running statistics
    torch.save(model.state_dict(), tmp_path / "model.pt")

    torch.manual_seed(1)
    other = build_model(cfg, num_classes=6)
    other.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    model.eval()
    other.eval()
    with torch.no_grad():
        a, b = model(inputs, mask), other(inputs, mask)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    torch.testing.assert_close(a.bn_features, b.bn_features, rtol=0, atol=0)
    assert not any(".conv1." in k for k in model.state_dict())  # CLIP's stem lives in the stems
