"""The convolutional stem (`model.stem.kind: conv`) and the random grey RGB input (`grey_p`)."""

from __future__ import annotations

import pytest
import torch

from reid_core.modality import CLIP_MEAN, CLIP_STD, Modality
from reid_core.model import build_model
from reid_core.model.backbone import random_grey
from reid_core.model.stems import ConvStem
from tests.model.conftest import make_batch, micro


@pytest.mark.parametrize("channels", [1, 3])
def test_conv_stem_reaches_the_patch_grid(channels):
    stem = ConvStem(channels, width=48, patch=8, base=8)
    assert stem(torch.randn(2, channels, 32, 16)).shape == (2, 48, 4, 2)
    with pytest.raises(ValueError, match="power-of-two"):
        ConvStem(channels, 48, 12, 8)


def test_model_with_conv_stems_reads_one_channel_and_keeps_shapes():
    torch.manual_seed(0)
    model = build_model(micro("model.stem.kind=conv"), num_classes=3)
    assert isinstance(model.backbone.stem(Modality.SK), ConvStem)
    assert model.backbone.stem(Modality.SK).body[0].in_channels == 1
    mask = torch.ones(4, len(Modality), dtype=torch.bool)
    out = model(make_batch(model, mask), mask)
    assert out.bn_features.shape == (4, model.embed_dim)
    names = [n for n, _ in model.named_param_groups()["head"]]
    assert any(n.startswith("backbone.stems.sk.body.") for n in names)  # trains with the head


def test_random_grey_is_luma_in_clip_normalisation_and_only_where_drawn():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 4, 2)
    assert torch.equal(random_grey(x, 0.0), x)
    out = random_grey(x, 0.5)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    pixels = out * std + mean
    grey = (pixels[:, 0] - pixels[:, 1]).abs().amax(dim=(1, 2)) < 1e-5  # R == G: a grey image
    same = (out == x).flatten(1).all(dim=1)
    assert bool((grey ^ same).all()) and 10 < int(grey.sum()) < 54
    luma = ((x * std + mean) * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    torch.testing.assert_close(pixels[grey][:, 2], luma[grey])


def test_grey_p_acts_in_training_mode_only():
    torch.manual_seed(0)
    model = build_model(micro("model.stem.grey_p=1.0"), num_classes=3)
    x = {Modality.VIS: torch.randn(2, 3, 32, 16)}
    model.eval()
    with torch.no_grad():
        plain = model.encode(x)[Modality.VIS]
        model.backbone.grey_p = 0.0
        torch.testing.assert_close(model.encode(x)[Modality.VIS], plain)
