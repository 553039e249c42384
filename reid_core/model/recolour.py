"""Grey passes of RGB (vis) images, in CLIP normalisation, for the colour dimensions.

Infrared and sketch keep lightness and shape, not hue. With `model.head.colour_dims`, queries of
those modalities align in training with a grey pass of the RGB images (`channel_image`: one of
each image's R, G, B channels, so the pass cannot name people by hue) and are ranked against a
grey pass of each gallery image (`grey_image`: its luma). docs/MODALITIES.md gives the numbers.
"""

from __future__ import annotations

import torch

from reid_core.modality import CLIP_MEAN, CLIP_STD

_LUMA = (0.299, 0.587, 0.114)


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """CLIP-normalised RGB `[batch, 3, H, W]` -> its pixels in [0, 1]."""
    mean = x.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return x * std + mean


def _normalise(grey: torch.Tensor) -> torch.Tensor:
    """Grey `[batch, 1, H, W]` in [0, 1] -> a CLIP-normalised 3-channel image."""
    mean = grey.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = grey.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return (grey - mean) / std  # broadcast to [batch, 3, H, W]


def grey_image(x: torch.Tensor) -> torch.Tensor:
    """Each CLIP-normalised RGB image `[batch, 3, H, W]` as its luma, 3 channels, CLIP-normalised:
    what an infrared camera keeps of a photo."""
    luma = (_pixels(x) * x.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
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
