"""From a validated config and a dataset root to a ready Trainer (fast-reid's `from_config` idea:
one small function per section maps it to plain constructor arguments)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from reid_core.config.schema import OptimConfig, ReidConfig
from reid_core.data.dataset_index import DatasetIndex, build_index
from reid_core.data.datasets import TrainDataset, collate
from reid_core.data.image_cache import ImageCache, open_cache
from reid_core.data.protocol import Protocol
from reid_core.data.sampler import PKBatchSampler
from reid_core.data.splits import Splits, make_splits, resolve_protocol, trainval_protocol
from reid_core.evaluation.evaluate import EvalEmbeddings, evaluate_protocol
from reid_core.losses import ReidObjective
from reid_core.model import OmniReID, build_model
from reid_core.progress import is_interactive
from reid_core.training.callbacks import Callback
from reid_core.training.checkpoint import seed_everything
from reid_core.training.clipping import AdaptiveClipper
from reid_core.training.compiling import Compiled
from reid_core.training.distributed import SINGLE, DistContext, DistributedObjective, init_from_env
from reid_core.training.engine import Trainer, resolve_device
from reid_core.training.loop import LoopAids, LoopSettings, StepParts
from reid_core.training.profile import StepProfiler
from reid_core.training.schedule import LrSchedule


def build_optimizer(model: OmniReID, cfg: OptimConfig) -> tuple[torch.optim.Optimizer, list[str]]:
    """One parameter group per named model group, each at its own learning rate."""
    groups: list[dict[str, Any]] = []
    names: list[str] = []
    # the text tower trains at the backbone's rate (its own group: logged apart)
    rates = {"backbone": cfg.lr.backbone, "text": cfg.lr.backbone, "lora": cfg.lr.lora}
    for name, params in model.param_groups().items():
        if params:
            groups.append({"params": params, "lr": rates.get(name, cfg.lr.head)})
            names.append(name)
    kind = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    # The fused kernel updates every parameter tensor in one pass; the default implementation
    # loops over them one by one.
    fused = all(p.is_floating_point() for g in groups for p in g["params"])
    optimizer = kind(groups, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=fused)
    return optimizer, names


@dataclass
class DataBundle:
    """The index, identity splits and protocols of one dataset under one config.

    Build it once and pass it on: the CLI's early data check, the run and the tracker's plots
    share one bundle, and a study worker reuses it for every trial whose `data`/`eval` sections
    are the same (`fits`).
    """

    index: DatasetIndex
    splits: Splits
    val: Protocol
    test: Protocol
    key: tuple[Any, ...] = ()  # what the bundle is a pure function of
    trainval: Protocol | None = None  # training identities scored like val (eval.trainval_*)
    cache: ImageCache | None = None  # every image decoded once (data.cache)

    @classmethod
    def load(cls, root: Path, cfg: ReidConfig) -> DataBundle:
        index = build_index(root)  # memoised itself, and rebuilt when the tree changes
        splits = make_splits(index, cfg.data)
        seed = cfg.data.split_seed
        val = resolve_protocol(index, "val", splits, cfg.eval, seed)
        test = resolve_protocol(index, "test", splits, cfg.eval, seed)
        trainval = trainval_protocol(index, splits, cfg.eval, seed)
        cache = None
        if cfg.data.cache == "auto":
            size = (cfg.data.height, cfg.data.width)
            cache = open_cache(index, list(cfg.data.modalities), size, progress=is_interactive())
        return cls(index, splits, val, test, cls._key(index, cfg), trainval, cache)

    @staticmethod
    def _key(index: DatasetIndex, cfg: ReidConfig) -> tuple[Any, ...]:
        return (str(index.root), index.digest, cfg.data, cfg.eval)

    def fits(self, root: Path, cfg: ReidConfig) -> bool:
        """Whether this bundle is what `load(root, cfg)` would build now."""
        return self.key == self._key(build_index(root), cfg)

    def protocol(self, split: str) -> Protocol:
        if split == "trainval" and self.trainval is not None:
            return self.trainval
        return {"val": self.val, "test": self.test}[split]


def build_loader(
    data: DataBundle, cfg: ReidConfig, tokenize: Any, dist: DistContext = SINGLE
) -> DataLoader:
    """P x K batches of training samples; under torchrun, this rank's share of each batch."""
    dataset = TrainDataset(
        data.index, data.splits.train, cfg.data, seed=cfg.train.seed, cache=data.cache
    )
    sampler = PKBatchSampler(
        dataset.anchor_pids,
        cfg.data.p,
        cfg.data.k,
        seed=cfg.train.seed,
        rank=dist.rank,
        world_size=dist.world_size,
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=functools.partial(collate, tokenize=tokenize),
        num_workers=cfg.data.num_workers,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


class SplitEvaluator:
    """The engine's `evaluate_fn`. For the splits in `keep` (test) it also keeps the embeddings
    the evaluation ranked, so rank lists and CMC curves need no second encoding pass."""

    def __init__(
        self,
        data: DataBundle,
        cfg: ReidConfig,
        device: torch.device,
        keep: tuple[str, ...] = ("test",),
    ) -> None:
        self.data, self.cfg, self.device, self.keep = data, cfg, device, keep
        self.embeddings: dict[str, EvalEmbeddings] = {}

    def __call__(self, model: OmniReID, split: str) -> dict[str, Any]:
        args = (model, self.data.index.root, self.data.protocol(split), self.cfg.data)
        rest = (self.cfg.eval, self.device, split)
        if split not in self.keep:
            return evaluate_protocol(*args, *rest)
        result, self.embeddings[split] = evaluate_protocol(*args, *rest, return_embeddings=True)
        return result


def build_trainer(
    cfg: ReidConfig,
    data: DataBundle,
    callbacks: list[Callback] = (),  # type: ignore[assignment]
    *,
    load_pretrained: bool = True,
    profile_dir: Path | None = None,
) -> Trainer:
    """Seeded model, loader, optimizer, schedule and clipper for `cfg` on `data`.

    Under torchrun it joins the process group and trains data-parallel (see `distributed`).
    `profile_dir`: where a profiled run (`train.profile`) writes `profile.json`."""
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    dist = init_from_env(device)
    device = dist.device(device)
    num_classes = len(data.splits.train)
    model = build_model(cfg, num_classes, load_pretrained=load_pretrained).to(device)
    if dist.enabled:  # same weights everywhere (DDP broadcasts rank 0's), own augmentation draws
        seed_everything(cfg.train.seed + dist.rank)
    loader = build_loader(data, cfg, model.tokenize, dist)
    if loader.dataset.num_classes != num_classes:  # type: ignore[attr-defined]
        raise RuntimeError("training labels disagree with the train split's identities")
    optimizer, names = build_optimizer(model, cfg.optim)
    steps = len(loader)
    if cfg.train.max_steps_per_epoch:
        steps = min(steps, cfg.train.max_steps_per_epoch)
    schedule = LrSchedule(optimizer, cfg.optim.scheduler, cfg.train.epochs, steps)
    clip = cfg.optim.clip
    clipper = AdaptiveClipper(clip.quantile, clip.window, clip.warmup_steps)

    evaluate_fn = SplitEvaluator(data, cfg, device)
    objective: Any = ReidObjective.from_config(cfg)
    if dist.enabled:
        objective = DistributedObjective(model, objective, dist)
    loop = LoopSettings(
        epochs=cfg.train.epochs,
        eval_every=cfg.train.eval_every,
        device=device,
        precision=cfg.train.precision,
        max_steps_per_epoch=cfg.train.max_steps_per_epoch,
        log_every=cfg.train.log_every,
        eval_splits=("val", "trainval") if data.trainval is not None else ("val",),
    )
    aids = LoopAids(
        dist=dist,
        profiler=StepProfiler(profile_dir, device) if profile_dir is not None else None,
        compiled=Compiled(model) if cfg.train.compile else None,
    )
    parts = StepParts(optimizer, schedule, clipper, names)
    return Trainer(model, objective, parts, loader, loop, evaluate_fn, callbacks, aids)
