"""The config tree: one frozen pydantic section per builder (`data`, `model`, `loss`, `optim`,
`train`, `eval`). Dotted keys (`model.mer.rank`) are the YAML path, the `--set` override, the
Optuna parameter name and the MLflow param name."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reid_core.modality import Modality


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


# ----------------------------------------------------------------------------------------- data
class AugmentConfig(Section):
    flip_p: float = Field(0.5, ge=0, le=1, description="horizontal flip probability")
    pad: int = Field(10, ge=0, description="pixels of padding before the random crop (0: off)")
    pad_mode: Literal["constant", "edge", "reflect"] = Field(
        "constant",
        description="how the crop's border is filled: black (seed), the image's edge pixels, or "
        "its reflection; a black border is the loudest thing in a white sketch",
    )
    color_jitter: float = Field(
        0.0, ge=0, le=1, description="brightness/contrast/saturation jitter strength (RGB and CP)"
    )
    random_erase: float = Field(0.5, ge=0, le=1, description="random erasing probability")


class ModalityDropoutConfig(Section):
    p: float = Field(0.0, ge=0, le=1, description="drop probability per query-side modality")
    min_modalities: int = Field(1, ge=1, le=4, description="query-side modalities always kept")


class DataConfig(Section):
    modalities: tuple[Modality, ...] = Field(
        (Modality.VIS, Modality.NIR, Modality.CP, Modality.SK, Modality.TEXT),
        description="modalities the model sees; must include the gallery modality",
    )
    gallery_modality: Modality = Modality.VIS
    height: int = Field(256, ge=16, le=1024, description="input height in pixels")
    width: int = Field(128, ge=16, le=1024, description="input width in pixels")
    p: int = Field(8, ge=1, description="identities per batch (P)")
    k: int = Field(4, ge=2, description="anchors per identity per batch (K)")
    batch_size: int = Field(32, ge=2, description="must equal P x K")
    val_share: float = Field(0.1, ge=0, lt=1, description="share of training identities for val")
    test_share: float = Field(
        0.2, ge=0, lt=1, description="held-out identity share when there is no evaluation file"
    )
    split_seed: int = Field(0, description="seed of the identity splits and generated queries")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    on_bad_image: Literal["skip", "fail"] = "fail"
    augment: AugmentConfig = AugmentConfig()
    modality_dropout: ModalityDropoutConfig = ModalityDropoutConfig()

    @field_validator("modalities")
    @classmethod
    def _unique(cls, v: tuple[Modality, ...]) -> tuple[Modality, ...]:
        if len(set(v)) != len(v):
            raise ValueError("modalities must not repeat")
        if len(v) < 2:
            raise ValueError("need the gallery modality and at least one query modality")
        return v

    @model_validator(mode="after")
    def _cross(self) -> DataConfig:
        if self.gallery_modality not in self.modalities:
            raise ValueError(
                f"gallery_modality {self.gallery_modality.value!r} is not among modalities "
                f"{[m.value for m in self.modalities]}"
            )
        if self.gallery_modality is Modality.TEXT:
            raise ValueError("gallery_modality must be an image modality")
        if self.batch_size != self.p * self.k:
            raise ValueError(
                f"batch_size {self.batch_size} must equal p x k = {self.p} x {self.k} = "
                f"{self.p * self.k}"
            )
        return self


# ---------------------------------------------------------------------------------------- model
class CustomClipConfig(Section):
    """A small CLIP built from scratch (random init): CPU work and tests."""

    embed_dim: int = Field(64, ge=8)
    vision_width: int = Field(64, ge=8, description="vision hidden dim")
    vision_layers: int = Field(2, ge=1)
    vision_heads: int = Field(2, ge=1)
    patch_size: int = Field(8, ge=2)
    text_width: int = Field(64, ge=8)
    text_layers: int = Field(2, ge=1)
    text_heads: int = Field(2, ge=1)
    context_length: int = Field(77, ge=8, le=77)

    @model_validator(mode="after")
    def _heads(self) -> CustomClipConfig:
        if self.vision_width % self.vision_heads:
            raise ValueError("vision_width must be divisible by vision_heads")
        if self.text_width % self.text_heads:
            raise ValueError("text_width must be divisible by text_heads")
        return self


class ClipConfig(Section):
    name: str = Field("ViT-B-16", description="open_clip architecture name, or 'custom'")
    pretrained: str | None = Field(
        None, description="open_clip pretrained tag or a local weights file (None: random init)"
    )
    quick_gelu: bool | None = Field(
        None, description="None: the architecture's activation (OpenAI weights need QuickGELU)"
    )
    custom: CustomClipConfig | None = None
    freeze_text: bool = Field(True, description="freeze CLIP's text tower")

    @model_validator(mode="after")
    def _custom(self) -> ClipConfig:
        if self.name == "custom" and self.custom is None:
            raise ValueError("name 'custom' needs the 'custom' section")
        if self.name != "custom" and self.custom is not None:
            raise ValueError(f"'custom' is only read when name is 'custom' (name is {self.name!r})")
        return self


class BackboneConfig(Section):
    freeze: bool = Field(False, description="freeze the vision backbone (LoRA-only training)")


class StemConfig(Section):
    """Each image modality's own patch embedding in front of the shared ViT."""

    kind: Literal["patch", "conv"] = Field(
        "patch",
        description="patch: a copy of CLIP's linear patch embedding (1-channel inputs through a "
        "1x1 adapter; seed); conv: 3x3 stride-2 convolutions down to the patch grid",
    )
    base: int = Field(32, ge=4, description="channels of the first conv (doubling per stage)")
    grey_p: float = Field(
        0.0,
        ge=0,
        le=1,
        description="training only: probability that an RGB (vis) input is turned grey before "
        "its stem, so RGB features must carry what infrared and sketch see (0: off)",
    )
    edge_p: float = Field(
        0.0,
        ge=0,
        le=1,
        description="training only: probability that an RGB (vis) input is drawn as its outlines "
        "(dark edges on white) before its stem, so RGB features must carry what a sketch sees "
        "(0: off; drawn apart from grey_p, the two together at most 1)",
    )

    @model_validator(mode="after")
    def _recolour(self) -> StemConfig:
        if self.grey_p + self.edge_p > 1:
            raise ValueError(f"grey_p {self.grey_p} + edge_p {self.edge_p} exceed 1")
        return self


MerTarget = Literal["q", "k", "v", "out", "c_fc", "c_proj"]


class MerConfig(Section):
    enabled: bool = True
    rank: int = Field(4, ge=1, le=256)
    alpha: float = Field(1.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: tuple[MerTarget, ...] = ("q", "k", "v", "out", "c_fc", "c_proj")
    blocks: tuple[int, ...] | None = Field(
        None, description="vision blocks with adapters (None: all)"
    )
    mode: Literal["auto", "merged", "side"] = Field(
        "auto", description="apply adapters merged into the weight or on the side"
    )

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or len(set(v)) != len(v):
            raise ValueError("targets must be a non-empty list without repeats")
        return v


class SdmModuleConfig(Section):
    dim: int = Field(512, ge=8, description="SDM output (embedding) dimension")
    heads: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _heads(self) -> SdmModuleConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        return self


class FusionConfig(Section):
    dim: int = Field(512, ge=8, description="fusion dim (the retrieval embedding size)")
    heads: int = Field(8, ge=1)
    mlp_ratio: float = Field(2.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads(self) -> FusionConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        return self


class HeadConfig(Section):
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after the BNNeck")
    colour_dims: int = Field(
        0,
        ge=0,
        description="the first colour_dims dimensions of the retrieval vector are left zero for "
        "queries made of infrared and/or sketch alone, which cannot see colour; views with RGB, "
        "colour pencil or text fill them. An infrared or sketch query is then compared with an "
        "RGB image on the other dimensions only. The grey and outline passes of "
        "`loss.sdm.anchor` leave them zero too, so their alignment with the colour RGB view "
        "acts on the shared dimensions alone (0: off, the seed's single shared space)",
    )


class ModelConfig(Section):
    clip: ClipConfig = ClipConfig()
    backbone: BackboneConfig = BackboneConfig()
    stem: StemConfig = StemConfig()
    mer: MerConfig = MerConfig()
    sdm: SdmModuleConfig = SdmModuleConfig()
    fusion: FusionConfig = FusionConfig()
    head: HeadConfig = HeadConfig()
    grey_gallery: bool = Field(
        False,
        description="retrieval only (evaluation, search, serving): each gallery image is also "
        "encoded grey (its luma), and a query of infrared and/or sketch alone is ranked against "
        "that grey pass, the pass it aligns with in training under `loss.sdm.anchor: grey`; "
        "every other query is ranked against the colour pass as without. The retrieval vector "
        "grows by the dimensions past `model.head.colour_dims`, and encoding the gallery costs "
        "two backbone passes. Needs a colour (RGB) gallery modality",
    )

    @model_validator(mode="after")
    def _colour_dims(self) -> ModelConfig:
        if self.head.colour_dims >= self.fusion.dim:
            raise ValueError(
                f"model.head.colour_dims {self.head.colour_dims} must be below "
                f"model.fusion.dim {self.fusion.dim} (the retrieval vector's size)"
            )
        return self


# ----------------------------------------------------------------------------------------- loss
class IdLossConfig(Section):
    weight: float = Field(1.0, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    views: Literal["all", "singles", "gallery"] = Field(
        "all",
        description="views the ID loss sees: every fused view (seed), the gallery and the "
        "single-modality views, or the gallery view alone (queries learn through SDM only, so "
        "they cannot learn to name a training identity's colours from its shapes)",
    )


class SdmLossConfig(Section):
    weight: float = Field(1.0, ge=0, description="full alignment weight (lambda after the ramp)")
    temperature: float = Field(0.02, gt=0, le=10)
    margin: float = Field(0.0, ge=0, lt=1, description="subtracted from positive cosines; 0: off")
    smoothing: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of the target spread over the whole row (0: IRRA's same-identity "
        "target); lets a query that cannot tell look-alike identities apart hedge between them",
    )
    off_epochs: int = Field(5, ge=0, description="epochs with alignment weight 0")
    ramp_end_epoch: int = Field(25, ge=0, description="epoch by which the weight is full")
    reduction: Literal["mean", "groups"] = Field(
        "mean",
        description="mean over every query view (seed), or ReID5o's: mean within each group of "
        "views of one size (4 singles, 6 pairs, 4 triples, 1 quadruple), groups summed",
    )
    anchor: Literal["colour", "grey", "drawn"] = Field(
        "colour",
        description="the gallery-side image each query view is aligned with: the colour RGB "
        "image for every view (seed); `grey`: views made of infrared and/or sketch alone align "
        "with a second, grey pass of the same RGB images (what those queries can see), the rest "
        "with colour; `drawn`: as `grey`, but sketch-only views align with an outline drawing of "
        "the RGB image. The extra passes are aligned with the colour one and seen by the ID loss "
        "like the RGB view; each costs one more RGB backbone pass per step",
    )
    grey: Literal["luma", "channel"] = Field(
        "luma",
        description="how the grey pass of `anchor` is rendered: the image's luma, or one of its "
        "R, G, B channels drawn at random per image (`channel`, Ye et al.'s channel "
        "augmentation), whose grey levels do not tell hues apart, so the pass's ID loss cannot "
        "name people by hue and must use lightness and shape (drawn from torch's generator: "
        "under torchrun each rank draws for its own images)",
    )
    pseudo: list[Literal["nir", "sk"]] = Field(
        default_factory=list,
        description="pseudo queries: each RGB image of the batch is also rendered as the listed "
        "modalities see it (nir: its luma; sk: its outlines), encoded by that modality's own "
        "stem and LoRA, and trained like a real query of that modality (view `sk_pseudo` "
        "aligned with that modality's `anchor`; a single view for `loss.id.views`). Many more, "
        "exactly paired, examples for a query modality's branch; each costs one more "
        "RGB-sized backbone pass per step. [] (seed): none",
    )

    @model_validator(mode="after")
    def _ramp(self) -> SdmLossConfig:
        if self.ramp_end_epoch < self.off_epochs:
            raise ValueError(
                f"ramp_end_epoch {self.ramp_end_epoch} is before off_epochs {self.off_epochs}"
            )
        return self


class NormLossConfig(Section):
    target: float = Field(10.0, gt=0, description="feature-norm target")
    band: float = Field(2.0, ge=0, description="no penalty within target +- band")
    weight: float = Field(0.01, ge=0)


class LossConfig(Section):
    id: IdLossConfig = IdLossConfig()
    sdm: SdmLossConfig = SdmLossConfig()
    norm: NormLossConfig = NormLossConfig()


# ---------------------------------------------------------------------------------------- optim
class LrConfig(Section):
    """Learning rate per named parameter group."""

    backbone: float = Field(1e-5, ge=0, le=1, description="CLIP vision weights")
    text: float = Field(1e-5, ge=0, le=1, description="CLIP text tower (when not frozen)")
    lora: float = Field(5e-5, ge=0, le=1, description="MER adapters")
    head: float = Field(5e-5, ge=0, le=1, description="stems, SDM, fusion, BNNeck, classifier")


class SchedulerConfig(Section):
    name: Literal["cosine", "step", "multistep", "plateau"] = "cosine"
    warmup_epochs: int = Field(2, ge=0)
    warmup_factor: float = Field(0.1, gt=0, le=1, description="lr multiplier at step 0")
    min_lr_factor: float = Field(0.01, ge=0, le=1, description="cosine floor as a fraction")
    step_size: int = Field(10, ge=1, description="epochs per decay (step)")
    milestones: tuple[int, ...] = Field((20, 40), description="decay epochs (multistep)")
    gamma: float = Field(0.1, gt=0, le=1)
    patience: int = Field(2, ge=0, description="evaluations without improvement (plateau)")


class ClipGradConfig(Section):
    enabled: bool = True
    quantile: float = Field(0.98, gt=0, le=1, description="clip at this quantile of recent norms")
    window: int = Field(200, ge=8, description="recent gradient norms remembered")
    warmup_steps: int = Field(20, ge=0, description="steps before clipping starts")


class OptimConfig(Section):
    name: Literal["adamw", "adam"] = "adamw"
    lr: LrConfig = LrConfig()
    weight_decay: float = Field(1e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: SchedulerConfig = SchedulerConfig()
    clip: ClipGradConfig = ClipGradConfig()


# ---------------------------------------------------------------------------------------- train
class TrainConfig(Section):
    seed: int = 0
    epochs: int = Field(60, ge=1)
    eval_every: int = Field(5, ge=1, description="evaluate on val every N epochs")
    checkpoint_every: int = Field(1, ge=1, description="write a checkpoint every N epochs")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="mixed precision with GradScaler on CUDA")
    cpu_bf16: bool = Field(False, description="bf16 autocast on CPU")
    log_every: int = Field(20, ge=1, description="steps between log lines")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap steps (smoke runs)")


# ----------------------------------------------------------------------------------------- eval
class EvalConfig(Section):
    protocol: Literal["auto", "unordered15", "ordered32"] = "auto"
    batch_size: int = Field(64, ge=1)
    topk: int = Field(100, ge=1, description="k of mAP@k")
    queries_per_identity: int = Field(
        2, ge=1, description="queries per identity and set in generated protocols"
    )
    query_chunk: int = Field(
        1024, ge=1, description="queries scored at once (memory: chunk x gallery similarities)"
    )
    trainval_identities: int = Field(
        40,
        ge=0,
        description="training identities scored at each validation as split 'trainval' (a fixed "
        "seeded sample; tells 'does not fit' from 'does not generalise'); 0: off",
    )


class ReidConfig(Section):
    """The whole tree, validated once after the preset, files and overrides are merged."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _cross(self) -> ReidConfig:
        clip = self.model.clip
        patch = clip.custom.patch_size if clip.custom is not None else None
        if patch is not None and (self.data.height % patch or self.data.width % patch):
            raise ValueError(
                f"data.height x data.width {self.data.height}x{self.data.width} must be "
                f"multiples of model.clip.custom.patch_size {patch}"
            )
        if self.model.grey_gallery and self.data.gallery_modality.channels != 3:
            raise ValueError(
                "model.grey_gallery needs a colour gallery modality, got data.gallery_modality "
                f"{self.data.gallery_modality.value!r}"
            )
        if self.model.mer.blocks is not None and clip.custom is not None:
            bad = [b for b in self.model.mer.blocks if not 0 <= b < clip.custom.vision_layers]
            if bad:
                raise ValueError(
                    f"model.mer.blocks {bad} out of range 0..{clip.custom.vision_layers - 1}"
                )
        return self
