"""MER: zero-init equals open_clip, adapters equal merged weights, routing and freezing."""

from __future__ import annotations

import copy

import pytest
import torch

from reid_core.modality import CLIP_MEAN, CLIP_STD, GREY_MEAN, GREY_STD, Modality
from reid_core.model.backbone import build_clip
from reid_core.model.lora import TARGETS, _MergedLinear
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
            for target, a in block.lora[modality.value].items():
                delta = block.scale * a.up @ a.down
                if target in ("q", "k", "v"):
                    row = "qkv".index(target) * d
                    rblock.attn.in_proj_weight[row : row + d] += delta
                elif target == "out":
                    rblock.attn.out_proj.weight += delta
                else:
                    getattr(rblock.mlp, target).weight += delta


def _set_mode(model, mode: str) -> None:
    for block in model.backbone.blocks:
        block.mode = mode


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


@pytest.mark.parametrize("mode", ["side", "merged"])
def test_adapters_equal_merged_weights_and_all_get_gradients(mode):
    model, ref = _pair()
    _set_mode(model, mode)
    randomise_lora(model)
    _merge_into(ref, model, VIS)
    x = torch.randn(3, 3, 32, 16)
    _, pooled = model.backbone(x, VIS)
    torch.testing.assert_close(pooled, ref.encode_image(x), atol=1e-5, rtol=0)
    pooled.square().sum().backward()
    for i, block in enumerate(model.backbone.blocks):
        for target in TARGETS:
            for part in ("down", "up"):
                grad = getattr(block.lora["vis"][target], part).grad
                assert grad is not None and grad.abs().sum() > 0, (i, target, part)
                other = getattr(block.lora["nir"][target], part).grad
                assert other is None or not other.any(), ("nir touched", i, target)


def test_side_and_merged_agree_on_outputs_and_gradients_frozen_or_not():
    grads = {}
    for freeze in ("false", "true"):
        for mode in ("side", "merged"):
            model, _ = _pair(f"model.backbone.freeze={freeze}")
            _set_mode(model, mode)
            randomise_lora(model)
            torch.manual_seed(1)
            tokens, _ = model.backbone(torch.randn(2, 1, 32, 16), NIR)
            tokens.square().mean().backward()
            grads[freeze, mode] = {
                n: p.grad.clone() for n, p in model.named_parameters() if ".lora.nir." in n
            }
            frozen = [
                p
                for n, p in model.named_parameters()
                if n.startswith("backbone.blocks") and ".lora." not in n
            ]
            if freeze == "true":
                assert all(p.grad is None for p in frozen)
                assert model.param_groups()["backbone"] == []
    ref = grads["false", "merged"]
    for key, g in grads.items():
        assert g.keys() == ref.keys()
        for name in ref:
            torch.testing.assert_close(
                g[name], ref[name], atol=1e-6, rtol=1e-4, msg=f"{key} {name}"
            )


@pytest.mark.parametrize("weight_grad", [True, False])
def test_merged_linear_gradcheck(weight_grad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 6, dtype=torch.double, generator=g, requires_grad=True)
    w = torch.randn(4, 6, dtype=torch.double, generator=g, requires_grad=weight_grad)
    b = torch.randn(4, dtype=torch.double, generator=g, requires_grad=True)
    down = torch.randn(2, 6, dtype=torch.double, generator=g, requires_grad=True)
    up = torch.randn(4, 2, dtype=torch.double, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *a: _MergedLinear.apply(*a, 0.5), (x, w, b, down, up), eps=1e-6
    )


def test_mer_blocks_and_targets_select_adapters():
    model, _ = _pair("model.lora.blocks=[1]", "model.lora.targets=[q,v,c_proj]")
    assert not len(model.backbone.blocks[0].lora)
    assert set(model.backbone.blocks[1].lora["sk"]) == {"q", "v", "c_proj"}
    randomise_lora(model)
    x = torch.randn(2, 3, 32, 16)
    model.backbone(x, Modality.CP)[1].sum().backward()
    assert model.backbone.blocks[1].lora["cp"]["v"].down.grad.abs().sum() > 0


def test_disabled_mer_has_no_adapters():
    model, ref = _pair("model.lora.targets=[]")
    assert model.param_groups()["lora"] == []
    x = torch.randn(2, 3, 32, 16)
    torch.testing.assert_close(model.backbone(x, VIS)[1], ref.encode_image(x), atol=1e-6, rtol=0)


def test_adapters_merge_into_the_weight_unless_they_have_dropout():
    for freeze in ("false", "true"):
        model, _ = _pair(f"model.backbone.freeze={freeze}")
        assert {b.mode for b in model.backbone.blocks} == {"merged"}
    model, _ = _pair("model.lora.dropout=0.1")
    assert {b.mode for b in model.backbone.blocks} == {"side"}


def test_side_dropout_only_in_training():
    model, _ = _pair("model.lora.dropout=0.5")
    assert model.backbone.mode == "side"
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
    ids = model.tokenize(["a man in a blue coat with a bag", "a woman"])
    _, pooled, padding = model.text(ids)
    torch.testing.assert_close(pooled, ref.encode_text(ids), atol=1e-6, rtol=0)
    assert padding.shape == (2, 11) and padding[1].sum() == 7  # "a woman": sot a woman eot
