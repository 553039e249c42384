"""Image decoding and per-modality transforms: channels, sizes, augmentation order, bad files."""

from __future__ import annotations

import io
import pickle

import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from reid_core.config.schema import AugmentConfig, DataConfig
from reid_core.data.images import load_image
from reid_core.data.transforms import build_transform
from reid_core.errors import DataError
from reid_core.modality import IMAGE_MODALITIES, Modality

H, W = 32, 16


def _cfg(**augment) -> DataConfig:
    return DataConfig(height=H, width=W, p=2, k=2, augment=AugmentConfig(**augment))


def _image(mode: str) -> Image.Image:
    img = Image.new("RGB", (10, 20), (200, 30, 90))
    img.paste((10, 220, 40), (0, 0, 5, 10))
    return img.convert(mode)


@pytest.mark.parametrize("modality", IMAGE_MODALITIES)
@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK", "P", "RGBA", "1"])
@pytest.mark.parametrize("train", [False, True])
def test_output_has_modality_channels_for_any_input_mode(modality, mode, train):
    x = build_transform(modality, _cfg(color_jitter=0.3), train=train)(_image(mode))
    assert x.shape == (modality.channels, H, W)
    assert x.dtype == torch.float32


def test_eval_is_deterministic_and_normalised():
    tf = build_transform(Modality.NIR, _cfg(), train=False)
    (mean,), (std,) = Modality.NIR.mean_std
    grey = Image.new("L", (8, 16), round(mean * 255))
    x = tf(grey)
    assert torch.equal(x, tf(grey))
    assert x.abs().max() < 1.0 / 255 / std + 1e-6


def test_train_flip_without_other_augmentation_mirrors_eval():
    img = _image("RGB")
    train = build_transform(Modality.VIS, _cfg(flip_p=1.0, pad=0, random_erase=0.0), train=True)
    evaluate = build_transform(Modality.VIS, _cfg(), train=False)
    assert torch.allclose(train(img), evaluate(img).flip(-1), atol=1e-6)


def _steps(modality: Modality, train: bool, **augment) -> list[type]:
    return [type(t) for t in build_transform(modality, _cfg(**augment), train).transforms]


def test_colour_jitter_only_for_rgb_and_colour_pencil():
    for m in IMAGE_MODALITIES:
        has_jitter = T.ColorJitter in _steps(m, True, color_jitter=0.2)
        assert has_jitter == (m in (Modality.VIS, Modality.CP))
    assert T.ColorJitter not in _steps(Modality.VIS, True, color_jitter=0.0)


def test_augmentation_order_and_switches():
    steps = _steps(Modality.VIS, True, flip_p=0.5, pad=4, random_erase=0.5)
    assert steps.index(T.Normalize) < steps.index(T.RandomErasing)  # erasing sees normalised x
    assert {T.RandomHorizontalFlip, T.RandomCrop} <= set(steps)
    off = _steps(Modality.VIS, True, flip_p=0.0, pad=0, random_erase=0.0)
    assert not {T.RandomHorizontalFlip, T.RandomCrop, T.RandomErasing} & set(off)
    assert not {T.RandomHorizontalFlip, T.RandomCrop, T.RandomErasing} & set(
        _steps(Modality.VIS, False, flip_p=0.5, pad=4, random_erase=0.5)
    )


def test_transform_pickles_for_spawned_workers():
    tf = build_transform(Modality.SK, _cfg(), train=True)
    assert pickle.loads(pickle.dumps(tf))(_image("RGB")).shape == (1, H, W)


def test_text_has_no_image_transform():
    with pytest.raises(ValueError, match="text"):
        build_transform(Modality.TEXT, _cfg(), train=False)


def test_load_image_reads_png_bytes_under_jpg_name_and_non_ascii_names(tmp_path):
    path = tmp_path / "größe_画像.jpg"
    _image("RGB").save(path, format="PNG")
    img = load_image(path)
    assert img.format == "PNG"
    assert img.size == (10, 20)


def _truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="JPEG")
    return buf.getvalue()[:200]


@pytest.mark.parametrize(
    "content", [b"", b"definitely not an image", _truncated_jpeg()], ids=["empty", "junk", "cut"]
)
def test_load_image_names_undecodable_file(tmp_path, content):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"bad\.jpg"):
        load_image(path)


def test_load_image_names_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.png"):
        load_image(tmp_path / "nothere.png")
