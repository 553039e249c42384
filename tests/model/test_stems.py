"""The convolutional stem (`model.stem.kind: conv`) and the RGB recolouring (`grey_p`, `edge_p`)."""

from __future__ import annotations

import pytest
import torch

from reid_core.errors import ConfigError
from reid_core.modality import CLIP_MEAN, CLIP_STD, GREY_MEAN, GREY_STD, Modality
from reid_core.model import build_model
from reid_core.model.recolour import (
    channel_image,
    edge_drawing,
    pseudo_image,
    random_grey,
    random_recolour,
)
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


def test_edge_drawing_is_dark_outlines_on_white():
    img = torch.zeros(1, 1, 16, 8)
    img[..., 4:12, 2:6] = 1.0  # a white box on black, as luma
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    x = (img.expand(1, 3, 16, 8) - mean) / std
    drawing = (edge_drawing(x) * std + mean)[0]  # [3, H, W] in [0, 1]
    torch.testing.assert_close(drawing[0], drawing[2])  # grey
    assert drawing[0, 8, 4] == pytest.approx(1.0) and drawing[0, 0, 0] == pytest.approx(1.0)
    assert drawing[0, 8, 2] < 0.2 and drawing[0, 4, 4] < 0.2  # the box's outline is ink


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


def test_pseudo_images_are_one_channel_in_the_modality_s_own_normalisation():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 8)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    luma = ((x * std + mean) * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, True)
    nir = pseudo_image(x, Modality.NIR)
    assert nir.shape == (2, 1, 16, 8)
    torch.testing.assert_close(nir * GREY_STD[0] + GREY_MEAN[0], luma)
    sketch = pseudo_image(x, Modality.SK) * GREY_STD[0] + GREY_MEAN[0]
    outline = edge_drawing(x) * std + mean  # the same drawing, 3 channels in CLIP's
    torch.testing.assert_close(sketch[:, 0], outline[:, 0])
    with pytest.raises(ValueError, match="no pseudo rendering for 'cp'"):
        pseudo_image(x, Modality.CP)


def test_random_recolour_draws_grey_and_edges_apart():
    torch.manual_seed(0)
    x = torch.randn(200, 3, 8, 4)
    assert torch.equal(random_recolour(x, 0.0, 0.0), x)
    out = random_recolour(x, 0.3, 0.3)
    edges = torch.isclose(out, edge_drawing(x)).flatten(1).all(1)
    greys = torch.isclose(out, random_grey(x, 1.0)).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert int(edges.sum()) > 30 and int(greys.sum()) > 30 and int(same.sum()) > 50
    assert not bool((edges & greys).any()) and bool((edges | greys | same).all())


def test_grey_and_edge_shares_cannot_exceed_one():
    with pytest.raises(ConfigError, match="edge_p"):
        micro("model.stem.grey_p=0.6", "model.stem.edge_p=0.5")


def test_grey_p_acts_in_training_mode_only():
    torch.manual_seed(0)
    model = build_model(micro("model.stem.grey_p=1.0"), num_classes=3)
    x = {Modality.VIS: torch.randn(2, 3, 32, 16)}
    model.eval()
    with torch.no_grad():
        plain = model.encode(x)[Modality.VIS]
        model.backbone.grey_p = 0.0
        torch.testing.assert_close(model.encode(x)[Modality.VIS], plain)
