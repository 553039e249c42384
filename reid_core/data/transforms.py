"""The per-modality train/eval transforms (PIL image -> normalised tensor); decoding is
`reid_core.data.images.load_image`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms as T

from reid_core.config.schema import DataConfig
from reid_core.modality import Modality

ImageTransform = Callable[[Image.Image], torch.Tensor]

# Colour jitter only makes sense where hue and saturation carry identity: RGB and colour pencil.
# Infrared and sketch are grey by nature; jittering their (replicated) channels would be noise.
COLOUR_MODALITIES: frozenset[Modality] = frozenset({Modality.VIS, Modality.CP})


class ConvertMode:
    """Convert a PIL image to `mode` ("RGB" or "L"); a class, not a lambda, so spawned
    DataLoader workers can pickle it."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, img: Image.Image) -> Image.Image:
        return img if img.mode == self.mode else img.convert(self.mode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r})"


def _mode(modality: Modality) -> str:
    return "RGB" if modality.channels == 3 else "L"


def _train_augment(modality: Modality, data_cfg: DataConfig) -> list[Callable]:
    """Geometric and photometric augmentation applied to the resized PIL image."""
    aug = data_cfg.augment
    size = (data_cfg.height, data_cfg.width)
    steps: list[Callable] = []
    if aug.flip_p > 0:
        steps.append(T.RandomHorizontalFlip(p=aug.flip_p))
    if aug.pad > 0:
        steps.append(T.RandomCrop(size, padding=aug.pad, padding_mode=aug.pad_mode))
    if aug.color_jitter > 0 and modality in COLOUR_MODALITIES:
        cj = aug.color_jitter
        steps.append(T.ColorJitter(brightness=cj, contrast=cj, saturation=cj))
    return steps


def build_transform(modality: Modality, data_cfg: DataConfig, train: bool) -> ImageTransform:
    """The transform of one image modality: convert to its channel count, resize to
    `data.height x data.width`, (train only: flip, pad-crop, colour jitter), to tensor, normalise
    with `Modality.mean_std`, (train only: random erasing, which expects normalised values).

    Returns a picklable callable mapping a PIL image to a `[C, H, W]` float tensor.
    """
    if not modality.is_image:
        raise ValueError(f"modality {modality.value!r} has no image transform")
    mean, std = modality.mean_std
    steps: list[Callable] = [
        ConvertMode(_mode(modality)),
        T.Resize((data_cfg.height, data_cfg.width), interpolation=T.InterpolationMode.BICUBIC),
    ]
    if train:
        steps += _train_augment(modality, data_cfg)
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    if train and data_cfg.augment.random_erase > 0:
        steps.append(T.RandomErasing(p=data_cfg.augment.random_erase, value=0))
    return T.Compose(steps)
