"""Shapes for every modality subset, per-sample independence, masking and routing errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from reid_core.errors import ReidError
from reid_core.modality import ALL_MODALITIES, Modality
from reid_core.model import OmniReID, ReIDOutput, build_model
from tests.model.conftest import make_batch, micro

SUBSETS = [
    s for r in range(1, len(ALL_MODALITIES) + 1) for s in itertools.combinations(ALL_MODALITIES, r)
]


@pytest.fixture(scope="module")
def model() -> OmniReID:
    torch.manual_seed(0)
    return build_model(micro(), num_classes=7)


@pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: "+".join(m.value for m in s))
def test_shapes_every_subset(model, subset):
    model.train()
    mask = torch.zeros(3, len(ALL_MODALITIES), dtype=torch.bool)
    for m in subset:
        mask[:, m.column] = True
    if len(subset) > 1:
        mask[1, subset[0].column] = False  # sample 1 lacks the first one
    inputs = make_batch(model, mask)
    out = model(inputs, mask)
    assert isinstance(out, ReIDOutput)
    d = model.embed_dim
    assert {m: f.shape for m, f in out.features.items()} == {
        m: torch.Size([int(mask[:, m.column].sum()), d]) for m in inputs
    }
    assert out.fused.shape == out.bn_features.shape == (3, d)
    assert out.logits.shape == (3, model.num_classes)
    assert torch.isfinite(out.logits).all()


def test_api_attributes(model):
    assert model.embed_dim == 32 and model.num_classes == 7
    ids = model.tokenize(["a man in a red coat", "b"])
    # cut after the longest caption's end token (exact under causal attention)
    assert ids.dtype == torch.long and ids.shape[0] == 2 and ids.shape[1] < model.context_length
    assert int(ids.argmax(dim=-1).max()) == ids.shape[1] - 1
    groups = model.param_groups()
    assert set(groups) == {"backbone", "text", "lora", "head"}
    flat = [id(p) for ps in groups.values() for p in ps]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(flat) == sorted(trainable)  # each trainable parameter in exactly one group


def test_eval_sample_independent_of_others(model):
    model.eval()
    base = torch.tensor([[1, 1, 0, 0, 1], [1, 0, 1, 1, 0], [0, 1, 1, 0, 1]], dtype=torch.bool)
    inputs = make_batch(model, base, seed=1)
    with torch.no_grad():
        ref = model.embed(inputs, base)
        # sample 2 gains vis and sk and loses text; samples 0 and 1 must not move
        other = base.clone()
        other[2] = torch.tensor([1, 1, 1, 1, 0])
        changed = make_batch(model, other, seed=2)
        for m in (Modality.VIS, Modality.NIR, Modality.CP, Modality.SK):  # samples 0, 1 unchanged
            keep = base[:2, m.column].sum()
            changed[m][:keep] = inputs[m][:keep]
        changed[Modality.TEXT] = inputs[Modality.TEXT][:1]
        out = model.embed(changed, other)
    torch.testing.assert_close(out[:2], ref[:2], atol=1e-6, rtol=0)
    assert not torch.allclose(out[2], ref[2])


def test_masked_columns_and_absent_positions_are_ignored(model):
    model.eval()
    mask = torch.tensor([[1, 1, 0, 0, 1], [1, 0, 0, 0, 1]], dtype=torch.bool)
    inputs = make_batch(model, mask, seed=3)
    with torch.no_grad():
        features = model.encode(inputs)
        full = model.fuse(features, mask)
        vis_only = mask.clone()
        vis_only[:, 1:] = False
        alone = model.fuse(features, vis_only)  # nir/text features exist but columns are off
        just_vis = model.fuse({Modality.VIS: features[Modality.VIS]}, vis_only)
        noisy = dict(features)
        noisy[Modality.NIR] = features[Modality.NIR] + 100.0
        masked_noise = model.fuse(noisy, vis_only)
    torch.testing.assert_close(alone, just_vis, atol=1e-6, rtol=0)
    torch.testing.assert_close(masked_noise, just_vis, atol=1e-6, rtol=0)
    assert not torch.allclose(full, alone)


def test_single_modality_gallery_embedding(model):
    model.eval()
    mask = torch.zeros(4, len(ALL_MODALITIES), dtype=torch.bool)
    mask[:, Modality.VIS.column] = True
    with torch.no_grad():
        emb = model.embed(make_batch(model, mask), mask)
    assert emb.shape == (4, model.embed_dim)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))


def test_null_tokens_follow_feature_dtype(model):
    model.eval()
    mask = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        features = {m: f.double() for m, f in model.encode(make_batch(model, mask)).items()}
        model.fusion.double()
        try:
            assert model.fuse(features, mask).dtype == torch.float64
        finally:
            model.fusion.float()


def test_sample_without_modality_raises(model):
    mask = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    features = model.encode(make_batch(model, mask))
    with pytest.raises(ReidError, match="no modality"):
        model.fuse(features, mask)


def test_unknown_modality_raises(model):
    x = torch.randn(1, 3, *model.backbone.image_size)
    with pytest.raises(ReidError, match="unknown modality"):
        model.encode({"vis": x})  # a plain string is not a Modality
    narrow = build_model(micro("data.modalities=[vis,nir]"), num_classes=3)
    with pytest.raises(ReidError, match="unknown modality"):
        narrow.encode({Modality.SK: torch.randn(1, 1, *model.backbone.image_size)})
    with pytest.raises(ReidError, match="no modality"):
        narrow.backbone(torch.randn(1, 1, *model.backbone.image_size), Modality.SK)
    x = torch.randn(1, 3, *model.backbone.image_size)
    with pytest.raises(ReidError, match="no modality"):
        narrow.backbone.forward_segments([(Modality.VIS, x), (Modality.CP, x)])


def test_wrong_image_shape_raises(model):
    with pytest.raises(ValueError, match=r"nir images must be \[batch, 1, 32, 16\]"):
        model.encode({Modality.NIR: torch.randn(2, 3, 32, 16)})


def test_caption_padding_is_ignored(model):
    model.eval()
    short = model.tokenize(["a man"])
    both = model.tokenize(["a man", "a tall man in a long dark coat carrying a red bag"])
    with torch.no_grad():
        alone = model.encode({Modality.TEXT: short})[Modality.TEXT]
        batched = model.encode({Modality.TEXT: both})[Modality.TEXT]
    torch.testing.assert_close(batched[:1], alone, atol=1e-6, rtol=0)


def test_empty_modality_is_skipped(model):
    model.eval()  # BatchNorm: a batch of one
    mask = torch.tensor([[1, 0, 0, 0, 0]], dtype=torch.bool)
    inputs = make_batch(model, mask) | {Modality.NIR: torch.randn(0, 1, 32, 16)}
    out = model(inputs, mask)
    assert out.features[Modality.NIR].shape == (0, model.embed_dim)
    assert out.fused.shape == (1, model.embed_dim)
