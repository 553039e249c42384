"""MER: zero-init equals open_clip, adapters equal merged weights, routing of mixed batches,
freezing."""

from __future__ import annotations

import copy

import torch

from reid_core.modality import CLIP_MEAN, CLIP_STD, GREY_MEAN, GREY_STD, Modality
from reid_core.model.backbone import build_clip
from reid_core.model.lora import TARGETS
from reid_core.model.omnireid import from_clip
from tests.model.conftest import micro, randomise_lora

VIS, NIR = Modality.VIS, Modality.NIR


def _pair(*overrides: str):
    """Our model and a plain open_clip CLIP with the same weights (a deep copy before assembly)."""
    torch.manual_seed(0)
    cfg = micro(*overrides)
    clip = build_clip(cfg.model.clip, cfg.data.height, cfg.data.width)
    ref = copy.deepcopy(clip).eval()
    return from_clip(cfg, clip, num_classes=5), ref


def _merge_into(ref, model, modality: Modality) -> None:
    """Fold `W + s B A` of `modality`'s adapters into the reference open_clip blocks."""
    with torch.no_grad():
        for block, rblock in zip(
            model.backbone.blocks, ref.visual.transformer.resblocks, strict=True
        ):
            if not len(block.lora):
                continue
            d = block.attn.embed_dim
            for target in TARGETS:
                down, up = block.adapter(modality, target)
                delta = block.scale * up @ down
                if target in ("q", "k", "v"):
                    row = "qkv".index(target) * d
                    rblock.attn.in_proj_weight[row : row + d] += delta
                elif target == "out":
                    rblock.attn.out_proj.weight += delta
                else:
                    getattr(rblock.mlp, target).weight += delta


def test_zero_init_equals_open_clip():
    model, ref = _pair()
    x = torch.randn(3, 3, 32, 16)
    _, pooled = model.backbone(x, VIS)
    torch.testing.assert_close(pooled, ref.encode_image(x), atol=1e-6, rtol=0)


def test_grey_stem_sees_grey_as_clip_sees_rgb():
    model, ref = _pair()
    grey = torch.rand(2, 1, 32, 16)
    ours = (grey - GREY_MEAN[0]) / GREY_STD[0]
    rgb = torch.cat([(grey - CLIP_MEAN[c]) / CLIP_STD[c] for c in range(3)], dim=1)
    _, pooled = model.backbone(ours, NIR)
    torch.testing.assert_close(pooled, ref.encode_image(rgb), atol=1e-5, rtol=0)


def test_adapters_equal_merged_weights_and_only_the_routed_ones_get_gradients():
    model, ref = _pair()
    randomise_lora(model)
    _merge_into(ref, model, VIS)
    x = torch.randn(3, 3, 32, 16)
    _, pooled = model.backbone(x, VIS)
    torch.testing.assert_close(pooled, ref.encode_image(x), atol=1e-5, rtol=0)
    pooled.square().sum().backward()
    for i, block in enumerate(model.backbone.blocks):
        for target in TARGETS:
            group = block.group_of(target)
            vis, nir = block.modalities.index(VIS), block.modalities.index(NIR)
            for part, (g_vis, g_nir) in enumerate(
                zip(group.adapter_grads(vis, target), group.adapter_grads(nir, target), strict=True)
            ):
                assert g_vis.abs().sum() > 0, (i, target, part)
                assert not g_nir.any(), ("nir touched", i, target)


def test_a_mixed_batch_equals_each_modality_alone():
    model, _ = _pair()
    randomise_lora(model)
    model.eval()
    torch.manual_seed(3)
    segments = [
        (VIS, torch.randn(2, 3, 32, 16)),
        (NIR, torch.randn(3, 1, 32, 16)),
        (VIS, torch.randn(1, 3, 32, 16)),  # a modality twice, as the objective's grey pass
        (Modality.SK, torch.randn(2, 1, 32, 16)),
    ]
    with torch.no_grad():
        tokens, pooled = model.backbone.forward_segments(segments)
        alone = [model.backbone(x, m) for m, x in segments]
    torch.testing.assert_close(tokens, torch.cat([t for t, _ in alone]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, torch.cat([p for _, p in alone]), atol=1e-5, rtol=1e-5)
    feats = model.encode_segments(segments)
    for (m, x), f in zip(segments, feats, strict=True):
        torch.testing.assert_close(f, model.encode_one(m, x), atol=1e-5, rtol=1e-5)


def test_a_frozen_backbone_trains_only_the_adapters():
    model, _ = _pair("model.backbone.freeze=true")
    randomise_lora(model)
    tokens, _ = model.backbone(torch.randn(2, 1, 32, 16), NIR)
    tokens.square().mean().backward()
    frozen = [
        p
        for n, p in model.named_parameters()
        if n.startswith("backbone.blocks") and ".lora." not in n
    ]
    assert frozen and all(p.grad is None for p in frozen)
    assert model.param_groups()["backbone"] == []
    assert all(p.grad is not None for p in model.param_groups()["lora"])


def test_mer_blocks_and_targets_select_adapters():
    model, _ = _pair("model.lora.blocks=[1]", "model.lora.targets=[q,v,c_proj]")
    assert not len(model.backbone.blocks[0].lora)
    block = model.backbone.blocks[1]
    assert set(block.lora) == {"qkv", "c_proj"} and block.group_of("q").targets == ("q", "v")
    randomise_lora(model)
    x = torch.randn(2, 3, 32, 16)
    model.backbone(x, Modality.CP)[1].sum().backward()
    group = block.group_of("v")
    rows = group.down_rows(block.modalities.index(Modality.CP), "v")
    assert group.down.grad[rows].abs().sum() > 0


def test_disabled_mer_has_no_adapters():
    model, ref = _pair("model.lora.targets=[]")
    assert model.param_groups()["lora"] == []
    x = torch.randn(2, 3, 32, 16)
    torch.testing.assert_close(model.backbone(x, VIS)[1], ref.encode_image(x), atol=1e-6, rtol=0)


def test_side_dropout_only_in_training():
    model, _ = _pair("model.lora.dropout=0.5")
    randomise_lora(model)
    x = torch.randn(2, 3, 32, 16)
    with torch.no_grad():
        assert not torch.allclose(model.backbone(x, VIS)[1], model.backbone(x, VIS)[1])
        model.eval()
        torch.testing.assert_close(model.backbone(x, VIS)[1], model.backbone(x, VIS)[1])


def test_frozen_text_tower_gets_no_gradient_and_stays_in_eval():
    model, _ = _pair("model.clip.freeze_text=true")
    model.train()
    assert not model.text.training and model.backbone.training
    ids = model.tokenize(["a man in a blue coat", "a woman"])
    model.encode({Modality.TEXT: ids})[Modality.TEXT].sum().backward()
    assert all(p.grad is None for p in model.text.parameters())
    assert model.param_groups()["text"] == []
    assert model.separation.pooled_proj.weight.grad is not None


def test_trainable_text_tower_gets_gradient():
    model, _ = _pair("model.clip.freeze_text=false")
    ids = model.tokenize(["a man in a blue coat", "a woman"])
    model.encode({Modality.TEXT: ids})[Modality.TEXT].sum().backward()
    assert model.text.token_embedding.weight.grad.abs().sum() > 0


def test_text_trimming_is_exact():
    model, ref = _pair()
    texts = ["a man in a blue coat with a bag", "a woman"]
    ids = model.tokenize(texts)  # cut after the longest caption's end token
    _, pooled, padding = model.text(ids)
    full = model._tokenizer(texts)  # the whole context, as open_clip reads it
    assert full.shape[1] > ids.shape[1] and torch.equal(full[:, : ids.shape[1]], ids)
    torch.testing.assert_close(pooled, ref.encode_text(full), atol=1e-6, rtol=0)
    assert padding.shape == (2, 11) and padding[1].sum() == 7  # "a woman": sot a woman eot
