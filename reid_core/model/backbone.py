"""CLIP at the ReID input size and the vision backbone: one patch embedding per image modality in
front of open_clip's shared ViT whose blocks run MER (`lora.MerBlock`)."""

from __future__ import annotations

import copy
from typing import Any, cast

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from reid_core.config.schema import ClipConfig, LoraConfig, StemConfig
from reid_core.errors import ConfigError, ReidError
from reid_core.modality import CLIP_MEAN, CLIP_STD, GREY_MEAN, GREY_STD, Modality
from reid_core.model.lora import MerBlock, Route
from reid_core.model.pretrained import is_local_file
from reid_core.model.stems import ConvStem

_VOCAB_SIZE = 49408  # open_clip's bundled BPE vocabulary


def _custom_model_config(clip_cfg: ClipConfig) -> dict[str, Any]:
    c = clip_cfg.custom
    assert c is not None  # the schema requires the section when name is 'custom'
    vision = {
        "layers": c.vision_layers,
        "width": c.width,
        "head_width": c.width // c.heads,
        "patch_size": c.patch_size,
    }
    text = {
        "context_length": c.context_length,
        "vocab_size": _VOCAB_SIZE,
        "width": c.width,
        "heads": c.heads,
        "layers": c.text_layers,
    }
    return {"embed_dim": c.width, "vision_cfg": vision, "text_cfg": text}


def _arch_model_config(name: str) -> dict[str, Any]:
    model_cfg = open_clip.get_model_config(name)
    if model_cfg is None:
        raise ConfigError(
            f"model.clip.name={name!r} is not an open_clip architecture "
            "(see open_clip.list_models(), or use 'custom')"
        )
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    unsupported = (
        vision.get("timm_model_name")
        or not isinstance(vision.get("layers", 12), int)
        or text.get("hf_model_name")
        or model_cfg.get("custom_text")
        or "multimodal_cfg" in model_cfg
    )
    if unsupported:
        raise ConfigError(
            f"model.clip.name={name!r} is not a plain open_clip ViT with CLIP's text tower; "
            "MER needs one (e.g. ViT-B-16, ViT-B-32, ViT-L-14)"
        )
    return model_cfg


def _quick_gelu(clip_cfg: ClipConfig, model_cfg: dict[str, Any]) -> bool:
    """The activation the weights were trained with: OpenAI's tags need QuickGELU."""
    if clip_cfg.quick_gelu is not None:
        return clip_cfg.quick_gelu
    tag = clip_cfg.pretrained
    if tag and not is_local_file(tag) and clip_cfg.name != "custom":
        if tag.lower() == "openai":
            return True
        if open_clip.get_pretrained_cfg(clip_cfg.name, tag).get("quick_gelu"):
            return True
    return bool(model_cfg.get("quick_gelu", False))


def clip_model_config(clip_cfg: ClipConfig, height: int, width: int) -> dict[str, Any]:
    """open_clip's model config (`CLIP(**cfg)`) for the architecture at `height x width`."""
    if clip_cfg.name == "custom":
        model_cfg = _custom_model_config(clip_cfg)
    else:
        model_cfg = _arch_model_config(clip_cfg.name)
    patch = model_cfg["vision_cfg"].get("patch_size", 16)
    if height % patch or width % patch:
        raise ConfigError(
            f"data.height x data.width {height}x{width} must be multiples of the patch size "
            f"{patch} of model.clip.name={clip_cfg.name!r}"
        )
    model_cfg["vision_cfg"] = {**model_cfg["vision_cfg"], "image_size": (height, width)}
    model_cfg["quick_gelu"] = _quick_gelu(clip_cfg, model_cfg)
    return model_cfg


def build_clip(clip_cfg: ClipConfig, height: int, width: int) -> open_clip.CLIP:
    """open_clip's CLIP (random init) with the vision tower at the ReID input size."""
    model_cfg = clip_model_config(clip_cfg, height, width)
    clip = open_clip.CLIP(**model_cfg)
    visual = clip.visual
    if visual.attn_pool is not None or visual.pool_type != "tok" or visual.final_ln_after_pool:
        raise ConfigError(
            f"model.clip.name={clip_cfg.name!r}: only class-token pooling is supported"
        )
    return clip


class GreyStem(nn.Module):
    """A 1-channel modality's patch embedding: a learnable 1x1 conv (1 -> 3) into CLIP's RGB stem.

    Initialised so a grey image normalised with GREY_MEAN/GREY_STD reaches the stem exactly as
    CLIP sees the same grey image in RGB normalised with CLIP_MEAN/CLIP_STD. The two convs are
    folded into one 1-channel conv per forward (exact: the stem has no padding), which avoids a
    full-resolution 3-channel intermediate and the 3x input channels of the stem.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.adapter = nn.Conv2d(1, 3, kernel_size=1)
        self.conv = conv
        std, mean = torch.tensor(CLIP_STD), torch.tensor(CLIP_MEAN)
        with torch.no_grad():
            self.adapter.weight.copy_((GREY_STD[0] / std).view(3, 1, 1, 1))
            self.adapter.bias.copy_((GREY_MEAN[0] - mean) / std)  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, 1, H, W]
        a = self.adapter.weight.view(1, 3, 1, 1)
        weight = (self.conv.weight * a).sum(1, keepdim=True)  # [width, 1, patch, patch]
        bias = self.conv.weight.sum((2, 3)) @ cast(torch.Tensor, self.adapter.bias)  # [width]
        return F.conv2d(x, weight, bias, stride=self.conv.stride)  # [batch, width, gh, gw]


def build_stem(conv1: nn.Conv2d, channels: int, stem: StemConfig | None = None) -> nn.Module:
    """One modality's patch embedding (non-shared tokenizers): a copy of CLIP's (`patch`), or a
    convolutional stem with the same output grid (`conv`)."""
    if stem is not None and stem.kind == "conv":
        patch = conv1.kernel_size[0]
        return ConvStem(channels, conv1.out_channels, patch, stem.base)
    conv = copy.deepcopy(conv1)
    return conv if channels == 3 else GreyStem(conv)


def _lora_blocks(lora: LoraConfig, layers: int, name: str) -> set[int]:
    if not lora.targets:
        return set()
    blocks = set(range(layers)) if lora.blocks is None else set(lora.blocks)
    bad = sorted(b for b in blocks if not 0 <= b < layers)
    if bad:
        raise ConfigError(f"model.lora.blocks {bad} out of range 0..{layers - 1} for {name!r}")
    return blocks


class VisionBackbone(nn.Module):
    """Per-modality stems -> class token + positional embedding -> MER blocks -> ln_post.

    Parameter names follow open_clip's `VisionTransformer` (`blocks` for `transformer.resblocks`).
    """

    def __init__(
        self,
        visual: Any,  # open_clip VisionTransformer
        modalities: tuple[Modality, ...],
        lora: LoraConfig,
        name: str = "",
        stem: StemConfig | None = None,
    ) -> None:
        super().__init__()
        self.modalities = modalities
        self.stems = nn.ModuleDict(
            {m.value: build_stem(visual.conv1, m.channels, stem) for m in modalities}
        )
        self.class_embedding = visual.class_embedding
        self.positional_embedding = visual.positional_embedding
        self.patch_dropout, self.ln_pre = visual.patch_dropout, visual.ln_pre
        self.ln_post, self.proj = visual.ln_post, visual.proj
        self.image_size, self.grid_size = tuple(visual.image_size), tuple(visual.grid_size)
        self.width, self.output_dim = visual.transformer.width, visual.output_dim
        resblocks = visual.transformer.resblocks
        with_lora = _lora_blocks(lora, len(resblocks), name)
        self.blocks = nn.ModuleList(
            MerBlock(
                b,
                modalities if i in with_lora else (),
                lora.targets,
                lora.rank,
                lora.alpha,
                lora.dropout,
            )
            for i, b in enumerate(resblocks)
        )

    def stem(self, modality: Modality) -> nn.Module:
        if not isinstance(modality, Modality) or modality.value not in self.stems:
            known = ", ".join(m.value for m in self.modalities)
            raise ReidError(f"the vision backbone has no modality {modality!r} (known: {known})")
        return self.stems[modality.value]

    def forward(self, x: torch.Tensor, modality: Modality) -> tuple[torch.Tensor, torch.Tensor]:
        """`[batch, C, H, W]` -> (tokens `[batch, 1 + grid, width]`, pooled `[batch, embed]`)."""
        return self.forward_segments([(modality, x)])

    def _check(self, modality: Modality, x: torch.Tensor) -> None:
        if (
            x.dim() != 4
            or x.shape[1] != modality.channels
            or tuple(x.shape[-2:]) != self.image_size
        ):
            raise ValueError(
                f"{modality.value} images must be [batch, {modality.channels}, "
                f"{self.image_size[0]}, {self.image_size[1]}], got {list(x.shape)}"
            )

    def forward_segments(
        self, segments: list[tuple[Modality, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images of several modalities in one pass: `segments` `[(modality, [n_i, C, H, W])]`
        -> (tokens `[sum n_i, 1 + grid, width]`, pooled `[sum n_i, embed]`), rows in segment
        order. Each segment has its own stem call (a conv stem's BatchNorm sees one segment, as
        when the modalities ran apart); the blocks run once, each row with its own adapters."""
        parts = []
        for modality, x in segments:
            stem = self.stem(modality)
            self._check(modality, x)
            parts.append(stem(x).flatten(2).transpose(1, 2))  # [n_i, grid, width]
        x = torch.cat(parts) if len(parts) > 1 else parts[0]
        positions = [self.modalities.index(m) for m, _ in segments]
        sizes = [(p, int(t.shape[0])) for p, (_, t) in zip(positions, segments, strict=True)]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(self.patch_dropout(x))  # [N, 1 + grid, width]
        n, tokens, width = x.shape
        route = Route.of(sizes, len(self.modalities), tokens, x.device)
        x = x.reshape(n * tokens, width)
        for block in self.blocks:
            x = block(x, tokens, route)
        x = self.ln_post(x.view(n, tokens, width))
        return x, x[:, 0] @ self.proj
