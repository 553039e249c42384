"""Training-time recolouring of RGB (vis) inputs, in CLIP normalisation, before their stem.

Infrared keeps lightness and shape, a sketch keeps outlines only. RGB features trained on colour
images alone lean on hue, which no infrared or sketch query can predict, so such a query learns
to recall the colours of the training identity it recognises, and on an unseen person that
recollection is noise. Showing the RGB stem some of its images grey (`model.stem.grey_p`) or as
an outline drawing (`model.stem.edge_p`) makes RGB features carry what those queries see.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reid_core.modality import CLIP_MEAN, CLIP_STD, Modality

_LUMA = (0.299, 0.587, 0.114)
_SOBEL = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
# an edge as strong as this quantile of the image's gradient magnitudes is drawn full black
_INK_QUANTILE = 0.95


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """CLIP-normalised RGB `[batch, 3, H, W]` -> its pixels in [0, 1]."""
    mean = x.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return x * std + mean


def _luma(x: torch.Tensor) -> torch.Tensor:
    """CLIP-normalised RGB `[batch, 3, H, W]` -> luma in [0, 1] `[batch, 1, H, W]`."""
    return (_pixels(x) * x.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _normalise(grey: torch.Tensor) -> torch.Tensor:
    """Grey `[batch, 1, H, W]` in [0, 1] -> a CLIP-normalised 3-channel image."""
    mean = grey.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = grey.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return (grey - mean) / std  # broadcast to [batch, 3, H, W]


def grey_image(x: torch.Tensor) -> torch.Tensor:
    """Each CLIP-normalised RGB image `[batch, 3, H, W]` as its luma, 3 channels, CLIP-normalised:
    what an infrared camera keeps of a photo."""
    return _normalise(_luma(x)).to(x.dtype)


def channel_image(x: torch.Tensor) -> torch.Tensor:
    """Each CLIP-normalised RGB image `[batch, 3, H, W]` as one of its R, G, B channels, drawn at
    random per image (the channel augmentation of Ye et al., ICCV 2021), 3 channels,
    CLIP-normalised: a grey image whose grey levels no longer tell the hues apart, as an infrared
    camera's do not. Draws from torch's global generator."""
    pixels = _pixels(x.float())
    pick = torch.randint(0, 3, (x.shape[0],), device=x.device)  # [batch]
    grey = pixels.gather(1, pick.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:]))
    return _normalise(grey).to(x.dtype)


def _outline(x: torch.Tensor) -> torch.Tensor:
    """CLIP-normalised RGB `[batch, 3, H, W]` -> its outlines, dark on white, in [0, 1]
    `[batch, 1, H, W]` (Sobel magnitude of the luma)."""
    luma = _luma(x.float())
    kernel = luma.new_tensor(_SOBEL)
    kernels = torch.stack([kernel, kernel.t()]).unsqueeze(1)  # [2, 1, 3, 3]
    grad = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), kernels)  # [batch, 2, H, W]
    magnitude = grad.pow(2).sum(1, keepdim=True).sqrt()
    ink = magnitude.flatten(1).quantile(_INK_QUANTILE, dim=1).clamp_min(1e-6)
    return 1.0 - (magnitude / ink.view(-1, 1, 1, 1)).clamp(0.0, 1.0)


def edge_drawing(x: torch.Tensor) -> torch.Tensor:
    """Each image's outlines as dark lines on white (Sobel magnitude of its luma), 3 channels,
    CLIP-normalised: what a sketch keeps of a photo."""
    return _normalise(_outline(x)).to(x.dtype)


# what each colourless query modality keeps of a photo
_PSEUDO = {Modality.NIR: _luma, Modality.SK: _outline}


def pseudo_image(x: torch.Tensor, modality: Modality) -> torch.Tensor:
    """Each CLIP-normalised RGB image `[batch, 3, H, W]` rendered as `modality` sees it (infrared:
    its luma; sketch: its outlines), in that modality's own channels and normalisation
    `[batch, 1, H, W]`, ready for its stem."""
    if modality not in _PSEUDO:
        raise ValueError(f"no pseudo rendering for {modality.value!r} (allowed: nir, sk)")
    mean, std = modality.mean_std
    return ((_PSEUDO[modality](x.float()) - mean[0]) / std[0]).to(x.dtype)


def random_recolour(x: torch.Tensor, grey_p: float, edge_p: float = 0.0) -> torch.Tensor:
    """Each CLIP-normalised RGB image `[batch, 3, H, W]` turned grey (luma) with probability
    `grey_p`, else into an outline drawing with probability `edge_p`, else left as it is; still
    3 channels and CLIP-normalised. Draws from torch's global generator."""
    if grey_p <= 0 and edge_p <= 0:
        return x
    draw = torch.rand(x.shape[0], device=x.device)  # [batch]
    grey = draw < grey_p
    edges = (draw >= grey_p) & (draw < grey_p + edge_p)
    out = x
    if bool(grey.any()):
        out = torch.where(grey.view(-1, 1, 1, 1), grey_image(x), out)
    if bool(edges.any()):
        out = torch.where(edges.view(-1, 1, 1, 1), edge_drawing(x), out)
    return out


def random_grey(x: torch.Tensor, p: float) -> torch.Tensor:
    """Each CLIP-normalised RGB image turned grey (luma, 3 channels) with probability `p`."""
    return random_recolour(x, p, 0.0)
