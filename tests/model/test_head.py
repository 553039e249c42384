from __future__ import annotations

import pytest
import torch

from reid_core.modality import Modality
from reid_core.model.head import BNNeckHead, colourless_rows
from tests.model.conftest import modality_mask


def test_colourless_rows_are_those_without_rgb_colour_pencil_or_text():
    mask = modality_mask(
        (Modality.NIR,), (Modality.SK,), (Modality.NIR, Modality.SK), (Modality.VIS,),
        (Modality.CP,), (Modality.TEXT, Modality.SK), (Modality.NIR, Modality.CP),
    )  # fmt: skip
    assert colourless_rows(mask).tolist() == [True, True, True, False, False, False, False]


def test_colour_dims_are_zero_for_infrared_and_sketch_queries_only():
    torch.manual_seed(0)
    head = BNNeckHead(8, 3, 0.0, colour_dims=3).eval()
    fused = torch.randn(4, 8)
    mask = modality_mask(
        (Modality.SK,), (Modality.VIS,), (Modality.NIR, Modality.SK), (Modality.CP,)
    )
    bn, logits = head(fused, mask)
    plain, _ = head(fused)  # no mask: nothing is gated
    assert torch.equal(bn[[0, 2], :3], torch.zeros(2, 3))
    assert torch.equal(bn[[0, 2], 3:], plain[[0, 2], 3:])
    assert torch.equal(bn[[1, 3]], plain[[1, 3]])
    assert torch.allclose(logits, head.classifier(bn))
    off = BNNeckHead(8, 3, 0.0).eval()
    off.load_state_dict(head.state_dict())
    assert torch.equal(off(fused, mask)[0], plain)  # colour_dims 0: the seed's head
    # rows marked colourless (a grey or outline pass of RGB images) lose them too
    marked, _ = head(fused, mask, colourless=torch.tensor([False, True, False, False]))
    assert torch.equal(marked[[0, 1, 2], :3], torch.zeros(3, 3))
    assert torch.equal(marked[3], plain[3]) and torch.equal(marked[1, 3:], plain[1, 3:])
    with pytest.raises(ValueError, match="colour_dims"):
        BNNeckHead(8, 3, 0.0, colour_dims=8)


def test_a_sketch_query_embedding_leaves_the_colour_dims_empty():
    from reid_core.config import load_config
    from reid_core.errors import ConfigError
    from reid_core.model import build_model
    from tests.model.conftest import make_batch

    cfg = load_config(preset="micro", overrides=["model.head.colour_dims=16"])
    model = build_model(cfg, num_classes=4, load_pretrained=False).eval()
    mask = modality_mask((Modality.SK,), (Modality.SK,), (Modality.VIS,), (Modality.VIS,))
    with torch.no_grad():
        emb = model.embed(make_batch(model, mask), mask)
    assert torch.equal(emb[:2, :16], torch.zeros(2, 16)) and bool(emb[2:, :16].abs().sum() > 0)
    assert torch.allclose(emb.norm(dim=1), torch.ones(4))
    dim = cfg.model.fusion.dim
    with pytest.raises(ConfigError, match=r"model\.head\.colour_dims \d+ must be below"):
        load_config(preset="micro", overrides=[f"model.head.colour_dims={dim}"])
