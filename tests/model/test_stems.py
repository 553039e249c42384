"""The convolutional stem (`model.stem.kind: conv`) and the grey passes of RGB images."""

from __future__ import annotations

import pytest
import torch

from reid_core.modality import CLIP_MEAN, CLIP_STD, Modality
from reid_core.model import build_model
from reid_core.model.recolour import channel_image, grey_image
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


def test_grey_image_is_the_luma_in_clip_normalisation():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 2)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    pixels = grey_image(x) * std + mean
    torch.testing.assert_close(pixels[:, 0], pixels[:, 2])  # grey: R == G == B
    luma = ((x * std + mean) * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    torch.testing.assert_close(pixels[:, 1], luma)


def test_channel_image_is_one_of_each_image_s_channels_drawn_at_random():
    torch.manual_seed(0)
    x = torch.randn(60, 3, 4, 2)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    pixels, grey = x * std + mean, channel_image(x) * std + mean
    torch.testing.assert_close(grey[:, 0], grey[:, 2])  # grey: R == G == B
    picked = [[c for c in range(3) if torch.allclose(grey[i, 0], pixels[i, c])] for i in range(60)]
    assert all(len(p) == 1 for p in picked)  # exactly one of its own channels
    counts = torch.bincount(torch.tensor([p[0] for p in picked]), minlength=3)
    assert bool((counts > 10).all())  # each channel is drawn
