"""Training samples (an RGB anchor plus one seeded draw per other modality), their collation into
a `ModalBatch`, and the eval-time image list dataset.

A training sample is a plain dict (picklable, so DataLoader workers can return it):

    {"index": int,             # position in the dataset
     "pid": int,               # original identity id
     "label": int,             # contiguous training label
     "path": str,              # anchor path relative to ROOT
     "inputs": {Modality: uint8 array [H, W, C] | caption str},  # present modalities only
     "erase": {Modality: int64 array [5]},  # random-erasing box drawn per image
     "sources": {Modality: str},  # path of each image in "inputs", relative to ROOT
     "bad": list[str]}         # undecodable paths met (on_bad_image="skip")

A modality absent from `inputs` is masked; `inputs` is empty when the anchor itself was
undecodable and skipped, and `collate` drops such samples (keeping their bad paths). Images stay
uint8 until the batch reaches the training device, where `ModalBatch.to` normalises and erases
the whole batch (`transforms.finish_batch`); the random draws happen here, per image, in the
order the PIL transforms made them (`transforms.HostAugment`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from reid_core.config.schema import DataConfig
from reid_core.data.batch import ModalBatch
from reid_core.data.dataset_index import DatasetIndex
from reid_core.data.dropout import modality_dropout, seeded_rng
from reid_core.data.image_cache import ImageCache, decode, opened
from reid_core.data.images import load_image
from reid_core.data.transforms import HostAugment, build_transform, to_normalised
from reid_core.errors import DataError, printable
from reid_core.modality import ALL_MODALITIES, Modality, canonical

Sample = dict[str, Any]
Tokenize = Callable[[list[str]], torch.Tensor]

# Random stream of the dropout draw; image draws use the modality's index (0..4) as stream.
_DROPOUT_STREAM = len(ALL_MODALITIES)


class TrainDataset(Dataset):
    """One sample per gallery-modality (RGB) anchor image of `pids`.

    Draws of the other image modalities and the modality dropout depend only on
    `(seed, epoch, sample index, stream)`, so they are identical in any worker process and
    re-drawn each epoch. `set_epoch` must be called before the DataLoader is iterated; with
    `persistent_workers=True` the workers would keep a stale epoch, so do not use it.
    """

    def __init__(
        self,
        index: DatasetIndex,
        pids: Sequence[int],
        data_cfg: DataConfig,
        seed: int,
        cache: ImageCache | None = None,
    ) -> None:
        self.index, self.cfg, self.seed, self.epoch = index, data_cfg, seed, 0
        self.cache = cache  # decoded images (data.cache); None: decode each file
        self.gallery = Modality.VIS
        self.others = [
            m for m in canonical(data_cfg.modalities) if m.is_image and m is not self.gallery
        ]
        self.use_text = Modality.TEXT in data_cfg.modalities
        sorted_pids = sorted(set(int(pid) for pid in pids))
        if not sorted_pids:
            raise DataError("no training identities")
        lacking = [pid for pid in sorted_pids if not index.paths(self.gallery, pid)]
        if lacking:
            raise DataError(
                f"{len(lacking)} training identities have no {self.gallery.value} image "
                f"(first: {lacking[:5]}); every training identity needs an anchor"
            )
        self.label_of: dict[int, int] = {pid: label for label, pid in enumerate(sorted_pids)}
        self._anchors = [(pid, p) for pid in sorted_pids for p in index.paths(self.gallery, pid)]
        self.anchor_pids: list[int] = [pid for pid, _ in self._anchors]
        self._augment = {m: HostAugment(m, data_cfg) for m in (self.gallery, *self.others)}
        self.size = (data_cfg.height, data_cfg.width)

    @property
    def num_classes(self) -> int:
        return len(self.label_of)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._anchors)

    def _draw(self, pid: int, i: int) -> dict[Modality, str]:
        """One path per other image modality the identity has, seeded per (epoch, sample)."""
        drawn = {}
        for m in self.others:
            paths = self.index.paths(m, pid)
            if paths:
                rng = seeded_rng(self.seed, self.epoch, i, m.column)
                drawn[m] = paths[int(rng.integers(len(paths)))]
        return drawn

    def _load(self, modality: Modality, rel: str, sample: Sample) -> np.ndarray | None:
        """The augmented uint8 image (its erase box into `sample`), or None (path recorded in
        `sample["bad"]`) when skipping bad images."""
        image = self._pixels(modality, rel)
        if image is None:
            if self.cfg.on_bad_image == "fail":
                raise DataError(f"cannot decode image {printable(self.index.root / rel)}")
            sample["bad"].append(printable(rel))  # printed as is: a name must not break the line
            return None
        image, sample["erase"][modality] = self._augment[modality](image)
        return image

    def _pixels(self, modality: Modality, rel: str) -> np.ndarray | None:
        if self.cache is not None:
            return self.cache.get(modality, rel)
        try:
            return decode(self.index.root / rel, modality, self.size)
        except DataError:
            if self.cfg.on_bad_image == "fail":
                raise
            return None

    def _kept(self, i: int, paths: dict[Modality, str], caption: str | None) -> list[Modality]:
        """Modalities of sample `i` left after modality dropout."""
        present = canonical([*paths, *([Modality.TEXT] if caption is not None else [])])
        drop = self.cfg.modality_dropout
        rng = seeded_rng(self.seed, self.epoch, i, _DROPOUT_STREAM)
        return modality_dropout(present, drop.p, drop.min_modalities, rng, self.gallery)

    def __getitem__(self, i: int) -> Sample:
        pid, anchor = self._anchors[i]
        sample: Sample = {
            "index": i, "pid": pid, "label": self.label_of[pid], "path": anchor,
            "inputs": {}, "sources": {}, "erase": {}, "bad": [],
        }  # fmt: skip
        paths = {self.gallery: anchor, **self._draw(pid, i)}
        caption = self.index.captions.get(anchor) if self.use_text else None
        # Dropout runs before decoding so dropped images cost nothing; a bad image skipped after
        # it can leave fewer than min_modalities, which only happens on broken data.
        kept = self._kept(i, paths, caption)
        anchor_img = self._load(self.gallery, anchor, sample)
        if anchor_img is None:
            return sample
        inputs, sources = sample["inputs"], sample["sources"]
        inputs[self.gallery], sources[self.gallery] = anchor_img, anchor
        for m in kept:
            if m is Modality.TEXT:
                inputs[m] = caption
            elif m is not self.gallery:
                img = self._load(m, paths[m], sample)
                if img is not None:
                    inputs[m], sources[m] = img, paths[m]
        return sample


def collate(samples: Sequence[Sample | None], tokenize: Tokenize) -> ModalBatch:
    """Pack training samples into a `ModalBatch`; bind `tokenize` with `functools.partial`.

    Samples that are None or have no inputs (skipped bad anchors) are dropped; every bad path
    goes to `ModalBatch.bad`. A batch whose samples were all dropped has size 0.
    """
    real = [s for s in samples if s is not None]
    kept = [s for s in real if s["inputs"]]
    mask = torch.zeros(len(kept), len(ALL_MODALITIES), dtype=torch.bool)
    inputs: dict[Modality, torch.Tensor] = {}
    erase: dict[Modality, torch.Tensor] = {}
    for m in ALL_MODALITIES:
        rows = [j for j, s in enumerate(kept) if m in s["inputs"]]
        if not rows:
            continue
        mask[rows, m.column] = True
        values = [kept[j]["inputs"][m] for j in rows]
        if m is Modality.TEXT:
            inputs[m] = tokenize(values)
            continue
        inputs[m] = torch.from_numpy(np.stack(values)).permute(0, 3, 1, 2)  # [N, C, H, W] uint8
        erase[m] = torch.from_numpy(np.stack([kept[j]["erase"][m] for j in rows]))
    return ModalBatch(
        inputs=inputs,
        mask=mask,
        pids=torch.tensor([s["pid"] for s in kept], dtype=torch.long),
        labels=torch.tensor([s["label"] for s in kept], dtype=torch.long),
        paths=[s["path"] for s in kept],
        bad=[p for s in real for p in s["bad"]],
        erase=erase,
    )


class ImageListDataset(Dataset):
    """Eval-transformed images of one modality, one per path (relative to `root`); a bad image
    raises `DataError` naming it (`TolerantImageListDataset` is the `on_bad_image: skip` form)."""

    def __init__(
        self, root: Path, paths: Sequence[str], modality: Modality, data_cfg: DataConfig
    ) -> None:
        self.root = Path(root)
        self.paths = list(paths)
        self.modality = modality
        self._transform = build_transform(modality, data_cfg, train=False)
        self.cache = opened(self.root, (data_cfg.height, data_cfg.width))  # the same pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        rel = self.paths[i]
        if self.cache is not None:
            with contextlib.suppress(KeyError):  # a path outside the cache: decode it
                image = self.cache.get(self.modality, rel)
                if image is None:
                    raise DataError(f"cannot decode image {self.root / rel}")
                return to_normalised(image, self.modality)
        return self._transform(load_image(self.root / rel))


class TolerantImageListDataset(ImageListDataset):
    """`ImageListDataset` whose items are `(image, True)`, or `(zeros, False)` for an undecodable
    image, so evaluation under `data.on_bad_image: skip` can leave it out and count it."""

    def __init__(
        self, root: Path, paths: Sequence[str], modality: Modality, data_cfg: DataConfig
    ) -> None:
        super().__init__(root, paths, modality, data_cfg)
        self._blank = (modality.channels, data_cfg.height, data_cfg.width)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:  # type: ignore[override]
        try:
            return super().__getitem__(i), True
        except DataError:
            return torch.zeros(self._blank), False
