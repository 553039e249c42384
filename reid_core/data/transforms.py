"""The per-modality train/eval transforms (PIL image -> normalised tensor); decoding is
`reid_core.data.images.load_image`."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
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
        steps.append(T.RandomCrop(size, padding=aug.pad))
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


# ------------------------------------------------------------------- training: host + device
class HostAugment:
    """The random part of one modality's training transform, on the host, from the resized
    uint8 image: flip, pad-and-crop and colour jitter applied (numpy slices; PIL for the
    jitter), random erasing only drawn. It draws from torch's generator exactly the numbers the
    PIL transform of `build_transform` draws, in the same order, so a run with the image cache
    sees the pixels a run decoding every file sees. `finish_batch` does the rest on the device.

    Returns `(image [H, W, C] uint8, erase [5] int64: (on, top, left, height, width))`."""

    def __init__(self, modality: Modality, data_cfg: DataConfig) -> None:
        aug = data_cfg.augment
        self.modality, self.size = modality, (data_cfg.height, data_cfg.width)
        self.flip_p, self.pad, self.erase_p = aug.flip_p, aug.pad, aug.random_erase
        cj = aug.color_jitter
        jitter = cj > 0 and modality in COLOUR_MODALITIES
        self.jitter = T.ColorJitter(brightness=cj, contrast=cj, saturation=cj) if jitter else None

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.size
        if self.flip_p > 0 and torch.rand(1) < self.flip_p:
            image = image[:, ::-1]
        if self.pad > 0:
            p = self.pad
            image = np.pad(image, ((p, p), (p, p), (0, 0)))
            padded = torch.empty(image.shape[2], h + 2 * p, w + 2 * p, device="meta")
            top, left, _, _ = T.RandomCrop.get_params(padded, (h, w))
            image = image[top : top + h, left : left + w]
        if self.jitter is not None:
            image = np.asarray(self.jitter(Image.fromarray(np.ascontiguousarray(image))))
        erase = np.zeros(5, dtype=np.int64)
        if self.erase_p > 0 and torch.rand(1) < self.erase_p:
            shape = torch.empty(self.modality.channels, h, w, device="meta")
            top, left, eh, ew, value = T.RandomErasing.get_params(
                shape, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=[0.0]
            )
            if value.device.type != "meta":  # no box fitted in 10 tries: the image as it is
                erase[:] = (1, top, left, eh, ew)
        return np.ascontiguousarray(image), erase


@functools.cache
def _mean_std(modality: Modality, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The modality's normalisation `[1, C, 1, 1]` on `device`, made once: on CUDA a tensor
    built from Python numbers is a copy that waits for the GPU's queue, once per step here."""
    mean, std = (torch.tensor(v).view(1, -1, 1, 1).to(device) for v in modality.mean_std)
    return mean, std


def finish_batch(
    images: torch.Tensor, erase: torch.Tensor | None, modality: Modality
) -> torch.Tensor:
    """`[N, C, H, W]` uint8 on the training device -> the normalised float batch, randomly
    erased where `erase` `[N, 5]` says: what ToTensor, Normalize and RandomErasing(value=0) do
    to each image, for the whole batch at once."""
    mean, std = _mean_std(modality, images.device)
    x = (images.float() / 255 - mean) / std
    if erase is None:
        return x
    on, top, left, h, w = (erase[:, k].view(-1, 1, 1) for k in range(5))
    rows = torch.arange(x.shape[2], device=x.device).view(1, -1, 1)
    cols = torch.arange(x.shape[3], device=x.device).view(1, 1, -1)
    box = (on > 0) & (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    return x.masked_fill(box[:, None], 0.0)


def to_normalised(image: np.ndarray, modality: Modality) -> torch.Tensor:
    """A resized uint8 image `[H, W, C]` -> the eval transform's `[C, H, W]` float tensor."""
    mean, std = modality.mean_std
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)  # a writable copy
    return T.Normalize(mean, std)(x)
