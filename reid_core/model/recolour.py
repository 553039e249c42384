"""Grey passes of RGB (vis) images, in CLIP normalisation, for the colour dimensions.

Infrared and sketch keep lightness and shape, not hue. With `model.head.colour_dims`, queries of
those modalities align in training with a grey pass of the RGB images (`channel_image`: one of
each image's R, G, B channels, so the pass cannot name people by hue) and are ranked against a
grey pass of each gallery image (`grey_image`: its luma). docs/MODALITIES.md gives the numbers.
"""

from __future__ import annotations

import functools

import torch

from reid_core.modality import CLIP_MEAN, CLIP_STD

_LUMA = (0.299, 0.587, 0.114)


@functools.cache
def _constants(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """CLIP's mean and std and the luma weights, `[1, 3, 1, 1]` on `device`: made once, since
    a tensor built from Python numbers on a CUDA device is a host-to-device copy that waits for
    the GPU's queue, which the training step must not do."""
    return tuple(
        torch.tensor(v, dtype=dtype).view(1, 3, 1, 1).to(device)
        for v in (CLIP_MEAN, CLIP_STD, _LUMA)
    )


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """CLIP-normalised RGB `[batch, 3, H, W]` -> its pixels in [0, 1]."""
    mean, std, _ = _constants(x.device, x.dtype)
    return x * std + mean


def _normalise(grey: torch.Tensor) -> torch.Tensor:
    """Grey `[batch, 1, H, W]` in [0, 1] -> a CLIP-normalised 3-channel image."""
    mean, std, _ = _constants(grey.device, grey.dtype)
    return (grey - mean) / std  # broadcast to [batch, 3, H, W]


def grey_image(x: torch.Tensor) -> torch.Tensor:
    """Each CLIP-normalised RGB image `[batch, 3, H, W]` as its luma, 3 channels, CLIP-normalised:
    what an infrared camera keeps of a photo."""
    luma = (_pixels(x) * _constants(x.device, x.dtype)[2]).sum(1, keepdim=True)
    return _normalise(luma).to(x.dtype)


def channel_image(x: torch.Tensor) -> torch.Tensor:
    """Each CLIP-normalised RGB image `[batch, 3, H, W]` as one of its R, G, B channels, drawn at
    random per image (the channel augmentation of Ye et al., ICCV 2021), 3 channels,
    CLIP-normalised: a grey image whose grey levels no longer tell the hues apart, as an infrared
    camera's do not. Draws from torch's global generator."""
    pixels = _pixels(x.float())
    pick = torch.randint(0, 3, (x.shape[0],), device=x.device)  # [batch]
    grey = pixels.gather(1, pick.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:]))
    return _normalise(grey).to(x.dtype)
