"""OmniReID: per-modality encoders (CLIP with MER, CLIP's text tower) -> semantic separation ->
masked fusion -> BNNeck. `build_model` maps a `ReidConfig` to it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reid_core.config.schema import ReidConfig
from reid_core.errors import ConfigError, ReidError
from reid_core.modality import ALL_MODALITIES, Modality
from reid_core.model.backbone import VisionBackbone, build_clip
from reid_core.model.fusion import MaskedFusion
from reid_core.model.head import BNNeckHead, colourless_rows
from reid_core.model.pretrained import load_pretrained as _load_pretrained
from reid_core.model.recolour import grey_image
from reid_core.model.separation import SemanticSeparation
from reid_core.model.text import TextEncoder, build_tokenizer

GROUPS = ("backbone", "text", "lora", "head")


@dataclass
class ReIDOutput:
    """`features[m]` `[N_m, D]` packed like the inputs; `fused`, `bn_features` `[B, D]`;
    `logits` `[B, num_classes]`."""

    features: dict[Modality, torch.Tensor]
    fused: torch.Tensor
    bn_features: torch.Tensor
    logits: torch.Tensor


def param_group(name: str) -> str:
    """The learning-rate group of a parameter name: stems train with the head, adapters apart."""
    if name.startswith("backbone.stems."):
        return "head"
    if name.startswith("backbone."):
        return "lora" if ".lora." in name else "backbone"
    if name.startswith("text."):
        return "text"
    return "head"


class OmniReID(nn.Module):
    """Multimodal ReID model; see docs/ARCHITECTURE.md for the stages and their shapes."""

    def __init__(
        self,
        backbone: VisionBackbone,
        text: TextEncoder | None,
        separation: SemanticSeparation,
        fusion: MaskedFusion,
        head: BNNeckHead,
        modalities: Sequence[Modality],
        freeze_text: bool,
        grey_gallery: Modality | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.text, self.separation = backbone, text, separation
        self.fusion, self.head = fusion, head
        self.modalities = tuple(m for m in ALL_MODALITIES if m in modalities)
        self.freeze_text = freeze_text
        self.num_classes = head.classifier.out_features
        # features of one modality's pass (fusion's width) and of a retrieval vector: with
        # colour dimensions (`model.head.colour_dims`) the gallery has a grey pass and the vector
        # grows a grey block, the head's dimensions past `colour_dims`
        self.feature_dim = head.bn.num_features
        self.grey_gallery = grey_gallery
        grey_block = self.feature_dim - head.colour_dims if grey_gallery is not None else 0
        self.embed_dim = self.feature_dim + grey_block
        self.context_length = text.context_length if text is not None else 77
        self._tokenizer = build_tokenizer(self.context_length)
        if text is not None and freeze_text:
            text.requires_grad_(False)
            text.eval()

    def train(self, mode: bool = True) -> OmniReID:
        super().train(mode)
        if self.text is not None and self.freeze_text:
            self.text.eval()  # a frozen tower stays in eval mode
        return self

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Captions -> token ids `[N, L]` (open_clip's bundled BPE), cut after the longest
        caption's end token where that is exact (`TextEncoder.trim`), on the host."""
        ids = self._tokenizer(list(texts))
        return self.text.trim(ids) if self.text is not None else ids

    def _check(self, modality: Modality) -> None:
        if not isinstance(modality, Modality) or modality not in self.modalities:
            known = ", ".join(m.value for m in self.modalities)
            raise ReidError(f"unknown modality {modality!r} for this model (known: {known})")

    def encode_one(self, modality: Modality, x: torch.Tensor) -> torch.Tensor:
        """One modality: images `[N, C, H, W]` or token ids `[N, L]` -> `[N, D]`."""
        return self.encode_segments([(modality, x)])[0]

    def encode_segments(self, segments: list[tuple[Modality, torch.Tensor]]) -> list[torch.Tensor]:
        """Features `[n_i, D]` of each `(modality, inputs)` segment. The image segments go
        through the backbone together (one pass, each row with its own modality's adapters) and
        the semantic separation together; text through the text tower. A modality may appear in
        several segments (the objective's grey pass of the RGB images is a second RGB one)."""
        for m, _ in segments:
            self._check(m)  # strict routing: a plain string or a foreign modality raises
        out: list[torch.Tensor] = [self._empty() for _ in segments]
        images = [i for i, (m, x) in enumerate(segments) if m.is_image and x.shape[0] > 0]
        if images:
            tokens, pooled = self.backbone.forward_segments([segments[i] for i in images])
            feats = self.separation(tokens, pooled, "vision")  # [sum n_i, D]
            sizes = [int(segments[i][1].shape[0]) for i in images]
            for i, part in zip(images, feats.split(sizes), strict=True):
                out[i] = part
        for i, (m, x) in enumerate(segments):
            if m is Modality.TEXT and x.shape[0] > 0:
                out[i] = self._encode_text(x)
        return out

    def _empty(self) -> torch.Tensor:
        return self.head.bn.weight.new_zeros(0, self.feature_dim)

    def _encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        assert self.text is not None  # _check: TEXT is only known with a text tower
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_text):
            tokens, pooled, padding = self.text(ids)
        return self.separation(tokens, pooled, "text", padding)

    def encode(self, inputs: dict[Modality, torch.Tensor]) -> dict[Modality, torch.Tensor]:
        """Per-modality features after semantic separation `[N_m, D]`, packed like `inputs`."""
        for m in inputs:
            self._check(m)
        order = [m for m in self.modalities if m in inputs]
        feats = self.encode_segments([(m, inputs[m]) for m in order])
        return dict(zip(order, feats, strict=True))

    def fuse(self, features: dict[Modality, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Fuse the modalities whose mask column has any True -> `[B, D]`."""
        return self.fusion(features, mask)

    def forward(self, inputs: dict[Modality, torch.Tensor], mask: torch.Tensor) -> ReIDOutput:
        features = self.encode(inputs)
        fused = self.fuse(features, mask)
        bn_features, logits = self.head(fused, mask)
        return ReIDOutput(features, fused, bn_features, logits)

    def embed(self, inputs: dict[Modality, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Retrieval vectors `[B, embed_dim]` of `inputs` (call in eval mode, no_grad)."""
        features = {m: self.encode_item(m, x) for m, x in inputs.items()}
        return self.retrieval_vectors(features, mask)

    def item_dim(self, modality: Modality) -> int:
        """Width of `encode_item`'s features for `modality`."""
        return 2 * self.feature_dim if modality is self.grey_gallery else self.feature_dim

    def encode_item(self, modality: Modality, x: torch.Tensor) -> torch.Tensor:
        """Retrieval-time encoding of one modality's items -> `[N, item_dim(modality)]`: one
        backbone pass, and for the grey-gallery modality its grey (luma) pass after it."""
        if modality is not self.grey_gallery:
            return self.encode_one(modality, x)
        colour, grey = self.encode_segments([(modality, x), (modality, grey_image(x))])
        return torch.cat([colour, grey], dim=1)

    def retrieval_vectors(
        self, features: dict[Modality, torch.Tensor], mask: torch.Tensor
    ) -> torch.Tensor:
        """`encode_item` features (packed like `mask`'s rows) -> L2-normalised retrieval vectors
        `[B, embed_dim]`, whose cosine ranks a gallery.

        Without colour dimensions: the BNNeck output. With them (`model.head.colour_dims`), two
        blocks:
        the BNNeck output, then the grey block. A query of infrared and/or sketch alone fills
        the grey block only (its dimensions past `colour_dims`), any other query the first block
        only; a gallery image fills the first with its colour pass and the grey block with its
        grey pass, each block scaled by 1/sqrt(2). So an infrared or sketch query is ranked
        against the grey passes, the pass it aligned with in training (the objective's grey anchor),
        and any other query against the colour passes, as without."""
        g, d = self.grey_gallery, self.feature_dim
        colour = {m: (f[:, :d] if m is g else f) for m, f in features.items()}
        bn = self.head(self.fuse(colour, mask), mask)[0].float()
        if g is None:
            return F.normalize(bn, dim=-1)
        cd = self.head.colour_dims
        out = bn.new_zeros(bn.shape[0], self.embed_dim)
        grey = colourless_rows(mask)
        out[~grey, :d] = F.normalize(bn[~grey], dim=-1)
        out[grey, d:] = F.normalize(bn[grey, cd:], dim=-1)
        alone = mask[:, g.column] & (mask.sum(dim=1) == 1)  # gallery images
        if g in features and features[g].shape[1] == 2 * d and bool(alone.any()):
            rows = alone[mask[:, g.column]]  # the gallery images among the rows holding g
            sub_mask = mask[alone]
            grey_bn, _ = self.head(self.fuse({g: features[g][rows, d:]}, sub_mask), sub_mask)
            out[alone, :d] = out[alone, :d] / math.sqrt(2)
            out[alone, d:] = F.normalize(grey_bn[:, cd:].float(), dim=-1) / math.sqrt(2)
        return out

    def named_param_groups(
        self, trainable: bool = True
    ) -> dict[str, list[tuple[str, nn.Parameter]]]:
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in GROUPS}
        for name, p in self.named_parameters():
            if p.requires_grad or not trainable:
                groups[param_group(name)].append((name, p))
        return groups

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by learning-rate group: backbone, text, lora, head."""
        return {g: [p for _, p in ps] for g, ps in self.named_param_groups().items()}


def from_clip(cfg: ReidConfig, clip: Any, num_classes: int) -> OmniReID:
    """Assemble OmniReID around an open_clip CLIP (its modules are taken over, not copied)."""
    if num_classes < 1:
        raise ReidError(f"num_classes must be at least 1, got {num_classes}")
    m = cfg.model
    images = tuple(x for x in cfg.data.modalities if x.is_image)
    backbone = VisionBackbone(clip.visual, images, m.lora, m.clip.name, m.stem)
    text = TextEncoder(clip) if Modality.TEXT in cfg.data.modalities else None
    widths = {"vision": backbone.width} | ({"text": text.width} if text is not None else {})
    separation = SemanticSeparation(widths, backbone.output_dim, m.fusion.dim, m.fusion.heads)
    fusion = MaskedFusion(m.fusion.dim, m.fusion.heads, m.fusion.mlp_ratio, m.fusion.dropout)
    head = BNNeckHead(m.fusion.dim, num_classes, m.head.dropout, m.head.colour_dims)
    if text is not None and text.output_dim != backbone.output_dim:
        raise ConfigError(f"model.clip.name={m.clip.name!r}: text and image embeddings differ")
    # colour dimensions: the RGB gallery also gets a grey pass (`retrieval_vectors`)
    grey = Modality.VIS if m.head.colour_dims else None
    model = OmniReID(
        backbone, text, separation, fusion, head, cfg.data.modalities, m.clip.freeze_text, grey
    )
    if m.backbone.freeze:
        for name, p in model.named_parameters():
            if param_group(name) == "backbone":
                p.requires_grad_(False)
    return model


def build_model(cfg: ReidConfig, num_classes: int, *, load_pretrained: bool = True) -> OmniReID:
    """Build OmniReID from the config. `load_pretrained=False` skips `model.clip.pretrained`
    (the architecture is the same, weights random), so nothing is read or downloaded."""
    clip = build_clip(cfg.model.clip, cfg.data.height, cfg.data.width)
    if load_pretrained and cfg.model.clip.pretrained:
        _load_pretrained(clip, cfg.model.clip.name, cfg.model.clip.pretrained)
    return from_clip(cfg, clip, num_classes)
