"""The config tree: one frozen pydantic section per builder (`data`, `model`, `loss`, `optim`,
`train`, `eval`). Dotted keys (`model.lora.rank`) are the YAML path, the `--set` override, the
Optuna parameter name and the MLflow param name. Each key says what it is in one line;
docs/MODALITIES.md says why the modality options are what they are."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reid_core.modality import Modality


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


# ----------------------------------------------------------------------------------------- data
class AugmentConfig(Section):
    flip_p: float = Field(0.5, ge=0, le=1, description="horizontal flip probability")
    pad: int = Field(10, ge=0, description="black padding before the random crop (0: no crop)")
    color_jitter: float = Field(
        0.0, ge=0, le=1, description="brightness/contrast/saturation jitter (RGB and CP)"
    )
    random_erase: float = Field(0.5, ge=0, le=1, description="random erasing probability")


class ModalityDropoutConfig(Section):
    p: float = Field(0.0, ge=0, le=1, description="drop probability per query-side modality")
    min_modalities: int = Field(1, ge=1, le=4, description="query-side modalities always kept")


class DataConfig(Section):
    modalities: tuple[Modality, ...] = Field(
        (Modality.VIS, Modality.NIR, Modality.CP, Modality.SK, Modality.TEXT),
        description="modalities the model sees; vis (the RGB gallery) and at least one query",
    )
    height: int = Field(256, ge=16, le=1024, description="input height in pixels")
    width: int = Field(128, ge=16, le=1024, description="input width in pixels")
    p: int = Field(8, ge=1, description="identities per batch (P); a batch is P x K anchors")
    k: int = Field(4, ge=2, description="anchors per identity per batch (K)")
    val_share: float = Field(0.1, ge=0, lt=1, description="share of training identities for val")
    test_share: float = Field(
        0.2, ge=0, lt=1, description="held-out identity share without an evaluation file"
    )
    split_seed: int = Field(0, description="seed of the identity splits and generated queries")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    on_bad_image: Literal["skip", "fail"] = Field(
        "fail", description="an undecodable training image: skip it (counted) or stop"
    )
    cache: Literal["auto", "off"] = Field(
        "auto", description="decode each image once into a shared uint8 cache (auto: if it fits)"
    )
    augment: AugmentConfig = AugmentConfig()
    modality_dropout: ModalityDropoutConfig = ModalityDropoutConfig()

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_words(cls, v: object) -> object:
        # YAML 1.1 reads a bare `off` (and `on`) as a boolean: `--set data.cache=off` means "off"
        return {False: "off", True: "auto"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("modalities")
    @classmethod
    def _unique(cls, v: tuple[Modality, ...]) -> tuple[Modality, ...]:
        if len(set(v)) != len(v):
            raise ValueError("modalities must not repeat")
        if Modality.VIS not in v:
            raise ValueError("modalities must include vis: the gallery is RGB")
        if len(v) < 2:
            raise ValueError("need vis (the gallery) and at least one query modality")
        return v

    @property
    def batch_size(self) -> int:
        """Anchors per batch: P x K."""
        return self.p * self.k


# ---------------------------------------------------------------------------------------- model
class CustomClipConfig(Section):
    """A small CLIP built from scratch (random init) for CPU work and tests: both towers and the
    CLIP embedding share one width and one head count."""

    width: int = Field(64, ge=8, description="width of both towers and of the CLIP embedding")
    heads: int = Field(2, ge=1, description="attention heads of both towers")
    vision_layers: int = Field(2, ge=1, description="vision transformer blocks")
    text_layers: int = Field(2, ge=1, description="text transformer blocks")
    patch_size: int = Field(8, ge=2, description="vision patch size in pixels")
    context_length: int = Field(77, ge=8, le=77, description="text tokens per caption")

    @model_validator(mode="after")
    def _heads(self) -> CustomClipConfig:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")
        return self


class ClipConfig(Section):
    name: str = Field("ViT-B-16", description="open_clip architecture name, or 'custom'")
    pretrained: str | None = Field(
        None, description="open_clip pretrained tag or a local weights file (None: random init)"
    )
    quick_gelu: bool | None = Field(
        None, description="None: the weights' activation (OpenAI weights need QuickGELU)"
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
        "patch", description="patch: a copy of CLIP's patch embedding; conv: 3x3 stride-2 convs"
    )
    base: int = Field(32, ge=4, description="channels of the first conv (doubling per stage)")


LoraTarget = Literal["q", "k", "v", "out", "c_fc", "c_proj"]


class LoraConfig(Section):
    """MER: one LoRA adapter set per image modality on the shared ViT's linear layers."""

    rank: int = Field(4, ge=1, le=256, description="adapter rank")
    alpha: float = Field(1.0, gt=0, description="adapter scale numerator (scale = alpha / rank)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapters' input")
    targets: tuple[LoraTarget, ...] = Field(
        ("q", "k", "v", "out", "c_fc", "c_proj"),
        description="adapted layers of each block ([]: no adapters)",
    )
    blocks: tuple[int, ...] | None = Field(None, description="adapted blocks (None: all)")

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError("targets must not repeat")
        return v


class FusionConfig(Section):
    dim: int = Field(512, ge=8, description="embedding width of separation, fusion and retrieval")
    heads: int = Field(8, ge=1, description="attention heads of separation and fusion")
    mlp_ratio: float = Field(2.0, gt=0, description="fusion MLP width over dim")
    dropout: float = Field(0.0, ge=0, lt=1, description="fusion attention and MLP dropout")

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
        description="N > 0: infrared/sketch-only queries leave the first N dims zero, align "
        "with a grey pass of RGB and rank against the gallery's grey pass (0: one shared space)",
    )


class ModelConfig(Section):
    clip: ClipConfig = ClipConfig()
    backbone: BackboneConfig = BackboneConfig()
    stem: StemConfig = StemConfig()
    lora: LoraConfig = LoraConfig()
    fusion: FusionConfig = FusionConfig()
    head: HeadConfig = HeadConfig()

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
    weight: float = Field(1.0, ge=0, description="ID cross-entropy weight")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="ID label smoothing")
    views: Literal["all", "gallery"] = Field(
        "all", description="views the ID loss sees: every fused view, or the RGB view alone"
    )


class SdmLossConfig(Section):
    weight: float = Field(1.0, ge=0, description="full alignment weight (lambda after the ramp)")
    temperature: float = Field(0.02, gt=0, le=10, description="softmax temperature of SDM")
    margin: float = Field(0.0, ge=0, lt=1, description="subtracted from positive cosines; 0: off")
    smoothing: float = Field(
        0.0, ge=0, lt=1, description="share of each row's target spread uniformly (0: IRRA's)"
    )
    off_epochs: int = Field(5, ge=0, description="epochs with alignment weight 0")
    ramp_end_epoch: int = Field(25, ge=0, description="epoch by which the weight is full")

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
    weight: float = Field(0.01, ge=0, description="feature-norm penalty weight")


class LossConfig(Section):
    id: IdLossConfig = IdLossConfig()
    sdm: SdmLossConfig = SdmLossConfig()
    norm: NormLossConfig = NormLossConfig()


# ---------------------------------------------------------------------------------------- optim
class LrConfig(Section):
    """Learning rate per named parameter group."""

    backbone: float = Field(1e-5, ge=0, le=1, description="CLIP's vision and text towers")
    lora: float = Field(5e-5, ge=0, le=1, description="the LoRA adapters")
    head: float = Field(5e-5, ge=0, le=1, description="stems, separation, fusion, BNNeck, ID head")


class SchedulerConfig(Section):
    name: Literal["cosine", "step", "multistep", "plateau"] = Field(
        "cosine", description="learning-rate schedule after the warm-up"
    )
    warmup_epochs: int = Field(2, ge=0, description="linear warm-up epochs")
    warmup_factor: float = Field(0.1, gt=0, le=1, description="lr multiplier at step 0")
    min_lr_factor: float = Field(0.01, ge=0, le=1, description="cosine floor as a fraction")
    step_size: int = Field(10, ge=1, description="epochs per decay (step)")
    milestones: tuple[int, ...] = Field((20, 40), description="decay epochs (multistep)")
    gamma: float = Field(0.1, gt=0, le=1, description="decay factor (step, multistep, plateau)")
    patience: int = Field(2, ge=0, description="evaluations without improvement (plateau)")


class ClipGradConfig(Section):
    quantile: float | None = Field(
        0.98, gt=0, le=1, description="clip at this quantile of recent norms (None: never clip)"
    )
    window: int = Field(200, ge=8, description="recent gradient norms remembered")
    warmup_steps: int = Field(20, ge=0, description="steps before clipping starts")


class OptimConfig(Section):
    name: Literal["adamw", "adam"] = Field("adamw", description="optimizer")
    lr: LrConfig = LrConfig()
    weight_decay: float = Field(1e-4, ge=0, description="weight decay")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas")
    scheduler: SchedulerConfig = SchedulerConfig()
    clip: ClipGradConfig = ClipGradConfig()


# ---------------------------------------------------------------------------------------- train
class TrainConfig(Section):
    seed: int = Field(0, description="seed of the weights, sampling and augmentation")
    epochs: int = Field(60, ge=1, description="training epochs")
    eval_every: int = Field(5, ge=1, description="evaluate on val every N epochs (and the last)")
    checkpoint_every: int = Field(1, ge=1, description="write last.pt every N epochs")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="autocast dtype; auto: bf16 on CUDA (else fp16 + scaler), fp32 on CPU"
    )
    log_every: int = Field(20, ge=1, description="steps between log lines (and device reads)")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap steps (smoke runs)")
    threads: int | None = Field(
        None, ge=1, description="torch threads (None: what the placement gives the process)"
    )
    compile: bool = Field(False, description="run the model through torch.compile")
    profile: bool = Field(False, description="profile a window of steps into profile.json")


# ----------------------------------------------------------------------------------------- eval
class EvalConfig(Section):
    protocol: Literal["auto", "unordered15", "ordered32"] = Field(
        "auto", description="query sets; auto: the evaluation file's when present"
    )
    batch_size: int = Field(64, ge=1, description="images encoded at once")
    queries_per_identity: int = Field(
        2, ge=1, description="queries per identity and set in generated protocols"
    )
    trainval_identities: int = Field(
        40, ge=0, description="training identities also scored as split 'trainval' (0: off)"
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
        if self.model.lora.blocks is not None and clip.custom is not None:
            layers = clip.custom.vision_layers
            bad = [b for b in self.model.lora.blocks if not 0 <= b < layers]
            if bad:
                raise ValueError(f"model.lora.blocks {bad} out of range 0..{layers - 1}")
        return self
