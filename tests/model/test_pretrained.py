"""Pretrained weights: a saved open_clip ViT loads at the ReID grid; offline tags fail clearly."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

from reid_core.errors import ReidError
from reid_core.modality import CLIP_MEAN, CLIP_STD, GREY_MEAN, GREY_STD
from reid_core.model import build_model
from reid_core.model import pretrained as pretrained_mod
from tests.model.conftest import micro


def _source_clip() -> open_clip.CLIP:
    """A random open_clip ViT shaped like the micro preset, at a square 14x14 patch grid."""
    torch.manual_seed(3)
    vision = {"layers": 1, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 112}
    text = {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
    return open_clip.CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text)


@pytest.mark.parametrize("wrapped", [True, False])
def test_round_trip_resizes_positions_and_copies_stems(tmp_path, wrapped):
    src = _source_clip().state_dict()
    path = tmp_path / "clip.pt"
    if wrapped:  # an open_clip training checkpoint from DDP
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in src.items()}}, path)
    else:
        torch.save(src, path)
    cfg = micro(
        "model.clip.custom.vision_layers=1",
        "data.height=128",
        "data.width=64",
        f"model.clip.pretrained={path}",
    )
    model = build_model(cfg, num_classes=4)
    bb = model.backbone
    assert bb.grid_size == (16, 8) and bb.positional_embedding.shape == (1 + 16 * 8, 32)
    old = src["visual.positional_embedding"]
    torch.testing.assert_close(bb.positional_embedding[0], old[0], rtol=0, atol=0)
    grid = old[1:].reshape(1, 14, 14, 32).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(16, 8), mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(
        bb.positional_embedding[1:], grid.permute(0, 2, 3, 1).reshape(128, 32)
    )
    conv1 = src["visual.conv1.weight"]
    for name in ("vis", "cp"):
        torch.testing.assert_close(bb.stems[name].weight, conv1, rtol=0, atol=0)
    for name in ("nir", "sk"):
        stem = bb.stems[name]
        torch.testing.assert_close(stem.conv.weight, conv1, rtol=0, atol=0)
        for c in range(3):
            assert stem.adapter.weight[c].item() == pytest.approx(GREY_STD[0] / CLIP_STD[c])
            assert stem.adapter.bias[c].item() == pytest.approx(
                (GREY_MEAN[0] - CLIP_MEAN[c]) / CLIP_STD[c]
            )
    blk = bb.blocks[0]
    torch.testing.assert_close(
        blk.attn.in_proj_weight, src["visual.transformer.resblocks.0.attn.in_proj_weight"]
    )
    torch.testing.assert_close(model.text.token_embedding.weight, src["token_embedding.weight"])
    torch.testing.assert_close(bb.proj, src["visual.proj"])


def test_load_pretrained_false_reads_nothing(tmp_path):
    cfg = micro(f"model.clip.pretrained={tmp_path / 'missing.pt'}")
    build_model(cfg, num_classes=2, load_pretrained=False)
    with pytest.raises(ReidError, match="not found"):
        build_model(cfg, num_classes=2)


def test_file_of_another_architecture_is_rejected(tmp_path):
    path = tmp_path / "clip.pt"
    torch.save(_source_clip().state_dict(), path)
    cfg = micro(
        f"model.clip.pretrained={path}",
        "model.clip.custom.width=64",
        "model.clip.custom.vision_layers=1",
    )
    with pytest.raises(ReidError, match="does not fit the configured architecture"):
        build_model(cfg, num_classes=2)


def test_not_a_weights_file(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ReidError, match="not a readable weights file"):
        build_model(micro(f"model.clip.pretrained={path}"), num_classes=2)


def test_uncached_tag_is_a_clear_offline_error(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained_mod, "URL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(pretrained_mod, "HF_CACHE_DIR", str(tmp_path))
    with pytest.raises(ReidError) as info:
        pretrained_mod.resolve_tag("ViT-B-16", "openai")
    message = str(info.value)
    assert "ViT-B-16/openai" in message and "model.clip.pretrained=/path/to/weights.pt" in message


def test_cached_url_file_is_used_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained_mod, "URL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(pretrained_mod, "HF_CACHE_DIR", str(tmp_path))
    url = open_clip.get_pretrained_cfg("ViT-B-16", "openai")["url"]
    cached = tmp_path / url.rsplit("/", 1)[1]
    cached.write_bytes(b"")
    assert pretrained_mod.resolve_tag("ViT-B-16", "openai") == cached


def test_unknown_tag_and_custom_tag():
    with pytest.raises(ReidError, match=r"tags: .*openai"):
        pretrained_mod.resolve_tag("ViT-B-16", "no-such-tag")
    with pytest.raises(ReidError, match="custom CLIP takes a local weights file"):
        build_model(micro("model.clip.pretrained=openai"), num_classes=2)


def test_openai_tag_implies_quick_gelu():
    from open_clip.transformer import QuickGELU

    from reid_core.model.backbone import clip_model_config

    base = micro(
        "model.clip.name=ViT-B-16", "model.clip.custom=null", "data.height=64", "data.width=32"
    )
    assert not clip_model_config(base.model.clip, 64, 32)["quick_gelu"]
    tagged = micro(
        "model.clip.name=ViT-B-16", "model.clip.custom=null", "model.clip.pretrained=openai"
    )
    assert clip_model_config(tagged.model.clip, 64, 32)["quick_gelu"]
    forced = micro("model.clip.quick_gelu=true")
    model = build_model(forced, num_classes=2, load_pretrained=False)
    assert isinstance(model.backbone.blocks[0].mlp.gelu, QuickGELU)
