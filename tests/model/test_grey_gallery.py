"""Colour dimensions at retrieval (`model.head.colour_dims`): gallery images are also encoded grey;
infrared and sketch queries rank against that grey pass, every other query against the colour
pass."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reid_core.config import load_config
from reid_core.errors import ConfigError
from reid_core.modality import Modality
from reid_core.model import build_model
from reid_core.model.recolour import grey_image
from tests.model.conftest import make_batch, modality_mask

DIM, COLOUR = 32, 16  # the micro preset's fusion width, and the colour dims set below


class _Plain:
    """The model's one-block retrieval vector: the BNNeck output of the colour pass, gated by
    the rows' mask, normalised (what a model without colour dimensions would rank by)."""

    def __init__(self, model):
        self.model = model

    def embed(self, inputs, mask):
        m = self.model
        return F.normalize(m.head(m.fuse(m.encode(inputs), mask), mask)[0], dim=-1)

    def encode(self, inputs):
        return self.model.encode(inputs)

    def fuse(self, features, mask):
        return self.model.fuse(features, mask)

    def head(self, *args):
        return self.model.head(*args)


def _models():
    """A model with colour dimensions in eval mode, and its one-block (plain) view."""
    cfg = load_config(preset="micro", overrides=[f"model.head.colour_dims={COLOUR}"])
    torch.manual_seed(0)
    grey = build_model(cfg, num_classes=4, load_pretrained=False).eval()
    bn = grey.head.bn  # running statistics that are not the identity
    bn.running_mean.copy_(torch.linspace(-1, 1, DIM))
    bn.running_var.copy_(torch.linspace(0.5, 2, DIM))
    return _Plain(grey), grey


def test_the_retrieval_vector_grows_a_grey_block_past_the_colour_dims():
    _, grey = _models()
    assert grey.feature_dim == DIM and grey.embed_dim == DIM + DIM - COLOUR
    no_colour = build_model(load_config(preset="micro"), num_classes=4, load_pretrained=False)
    assert no_colour.embed_dim == DIM and no_colour.item_dim(Modality.VIS) == DIM
    assert grey.item_dim(Modality.VIS) == 2 * DIM and grey.item_dim(Modality.SK) == DIM


def test_queries_fill_one_block_and_gallery_images_both():
    plain, grey = _models()
    rows = ((Modality.VIS,), (Modality.SK,), (Modality.NIR, Modality.SK), (Modality.CP,))
    mask = modality_mask(*rows)
    inputs = make_batch(grey, mask)
    with torch.no_grad():
        ref = plain.embed(inputs, mask)
        out = grey.embed(inputs, mask)
        # the gallery image's grey pass, fused and gated as a colourless row
        grey_pass = plain.encode({Modality.VIS: grey_image(inputs[Modality.VIS])})
        grey_bn, _ = plain.head(plain.fuse(grey_pass, mask[:1]), mask[:1], torch.tensor([True]))
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)
    # colour pencil: the colour block alone, as without the option
    torch.testing.assert_close(out[3, :DIM], ref[3])
    assert torch.equal(out[3, DIM:], torch.zeros(DIM - COLOUR))
    # infrared and/or sketch: the grey block alone, their shared dimensions
    assert torch.equal(out[1:3, :DIM], torch.zeros(2, DIM))
    torch.testing.assert_close(out[1:3, DIM:], F.normalize(ref[1:3, COLOUR:], dim=1))
    # the gallery image: its colour vector and its grey pass, each scaled by 1/sqrt(2)
    half = 1 / math.sqrt(2)
    torch.testing.assert_close(out[0, :DIM], ref[0] * half)
    torch.testing.assert_close(out[0, DIM:], F.normalize(grey_bn[0, COLOUR:], dim=0) * half)
    # so a sketch query ranks gallery images by its cosine to their grey pass
    expected = F.normalize(ref[1, COLOUR:], dim=0) @ F.normalize(grey_bn[0, COLOUR:], dim=0)
    assert float(out[1] @ out[0]) == pytest.approx(float(expected) * half, abs=1e-5)


def test_a_gallery_image_among_other_rows_gets_its_grey_pass():
    _, grey = _models()
    mask = modality_mask(
        (Modality.CP,), (Modality.VIS,), (Modality.VIS, Modality.CP), (Modality.VIS,)
    )
    inputs = make_batch(grey, mask)
    with torch.no_grad():
        out = grey.embed(inputs, mask)
        alone = grey.embed({Modality.VIS: inputs[Modality.VIS][[0, 2]]}, mask[[1, 3]])
    torch.testing.assert_close(out[[1, 3]], alone)  # rows of RGB alone: both blocks
    assert torch.equal(out[[0, 2], DIM:], torch.zeros(2, DIM - COLOUR))  # with colour pencil


def test_the_grey_gallery_options_are_one_option_now():
    for key in ("model.grey_gallery=true", "loss.sdm.anchor=grey", "loss.sdm.grey=channel"):
        with pytest.raises(ConfigError, match=r"implied by model\.head\.colour_dims > 0"):
            load_config(preset="micro", overrides=[key])
