"""Training samples, their collation into a ModalBatch, and the eval image list dataset."""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from reid_core.config.schema import AugmentConfig, DataConfig, ModalityDropoutConfig
from reid_core.data.batch import ModalBatch
from reid_core.data.dataset_index import DatasetIndex
from reid_core.data.datasets import ImageListDataset, TrainDataset, collate
from reid_core.data.sampler import PKBatchSampler
from reid_core.errors import DataError
from reid_core.modality import ALL_MODALITIES, Modality

V, N, C, S, T = Modality.VIS, Modality.NIR, Modality.CP, Modality.SK, Modality.TEXT
H, W = 32, 16

# (relative path, PIL mode) per file; the format follows the suffix. Identity 3 has RGB only.
FILES = [
    ("vis/0001/a.jpg", "RGB"), ("vis/0001/b.jpg", "RGB"), ("vis/0001/c.jpg", "RGB"),
    ("vis/0002/a.jpg", "RGB"), ("vis/0002/b.jpg", "RGB"),
    ("vis/0003/cmyk.jpg", "CMYK"), ("vis/0003/grey.png", "L"),
    *[(f"nir/0001/n{j}.jpg", "RGB") for j in range(6)],  # IR stored as 3-channel JPEG
    ("nir/0002/n0.jpg", "RGB"),
    ("cp/0001/cmyk.jpg", "CMYK"), ("cp/0001/grey.png", "L"),
    ("sk/0001/grey.png", "L"), ("sk/0001/rgb.jpg", "RGB"), ("sk/0001/pal.png", "P"),
]  # fmt: skip
CAPTIONS = {"vis/0001/a.jpg": "a person in a red coat", "vis/0002/b.jpg": "blue jeans"}


def _tokenize(texts: list[str]) -> torch.Tensor:
    return torch.zeros(len(texts), 8, dtype=torch.long)


def _write(root: Path, rel: str, mode: str, shade: int) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (8, 16), (shade, 255 - shade, 90)).convert(mode)
    img.save(path, format="PNG" if rel.endswith(".png") else "JPEG")


def _make_index(root: Path, files: list[tuple[str, str]], captions: dict[str, str]) -> DatasetIndex:
    images: dict[Modality, dict[int, list[str]]] = {}
    for j, (rel, mode) in enumerate(files):
        if mode != "corrupt":
            _write(root, rel, mode, shade=20 * j % 256)
        else:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"not an image")
        folder, pid, _ = rel.split("/")
        images.setdefault(Modality(folder), {}).setdefault(int(pid), []).append(rel)
    frozen = {m: {pid: tuple(sorted(ps)) for pid, ps in d.items()} for m, d in images.items()}
    return DatasetIndex(root=root, images=frozen, captions=captions)


def _cfg(**kw) -> DataConfig:
    augment = AugmentConfig(pad=2, color_jitter=0.2, random_erase=0.5)
    return DataConfig(height=H, width=W, p=2, k=2, augment=augment, **kw)


@pytest.fixture
def index(tmp_path) -> DatasetIndex:
    return _make_index(tmp_path, FILES, CAPTIONS)


def _by_path(ds: TrainDataset, path: str) -> dict:
    return next(s for s in map(ds.__getitem__, range(len(ds))) if s["path"] == path)


def test_anchors_labels_and_classes(index):
    ds = TrainDataset(index, [3, 1, 2, 1], _cfg(), seed=0)
    assert len(ds) == 7 and ds.num_classes == 3
    assert ds.label_of == {1: 0, 2: 1, 3: 2}
    assert ds.anchor_pids == [1, 1, 1, 2, 2, 3, 3]


def test_identity_without_anchor_is_an_error(index):
    with pytest.raises(DataError, match=r"no vis image.*\[7\]"):
        TrainDataset(index, [1, 7], _cfg(), seed=0)


def test_sample_has_one_tensor_per_present_modality_with_its_channels(index):
    ds = TrainDataset(index, [1, 2, 3], _cfg(), seed=0)
    for epoch in range(3):  # covers each cp/sk file mode across draws
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            sample = ds[i]
            for m, x in sample["inputs"].items():
                if m is T:
                    assert x == CAPTIONS[sample["path"]]
                else:  # uint8 until the batch reaches the device (ModalBatch.to)
                    assert x.shape == (H, W, m.channels), (m, sample["sources"][m])
                    assert x.dtype == np.uint8 and sample["erase"][m].shape == (5,)
    full = _by_path(ds, "vis/0001/a.jpg")
    assert set(full["inputs"]) == set(ALL_MODALITIES)
    assert set(full["sources"]) == {V, N, C, S}


def test_missing_modalities_are_absent_not_zero(index):
    ds = TrainDataset(index, [1, 2, 3], _cfg(), seed=0)
    assert set(_by_path(ds, "vis/0003/cmyk.jpg")["inputs"]) == {V}
    assert set(_by_path(ds, "vis/0002/b.jpg")["inputs"]) == {V, N, T}
    assert set(_by_path(ds, "vis/0002/a.jpg")["inputs"]) == {V, N}  # no caption


def test_only_configured_modalities_are_drawn(index):
    ds = TrainDataset(index, [1, 2, 3], _cfg(modalities=(V, N)), seed=0)
    assert set(_by_path(ds, "vis/0001/a.jpg")["inputs"]) == {V, N}


def _draws(ds: TrainDataset, epoch: int) -> list[str]:
    ds.set_epoch(epoch)
    return [ds[i]["sources"][N] for i in range(3)]  # identity 1: 3 anchors, 6 IR images


def test_draws_are_redrawn_per_epoch_and_deterministic_per_seed_and_epoch(index):
    cfg = _cfg(modalities=(V, N))
    ds = TrainDataset(index, [1], cfg, seed=5)
    per_epoch = [_draws(ds, e) for e in range(4)]
    assert len({tuple(d) for d in per_epoch}) > 1
    again = TrainDataset(index, [1], cfg, seed=5)
    assert [_draws(again, e) for e in (3, 0, 2, 1)] == [per_epoch[e] for e in (3, 0, 2, 1)]
    other = TrainDataset(index, [1], cfg, seed=6)
    assert [_draws(other, e) for e in range(4)] != per_epoch


def test_modality_dropout_keeps_anchor_and_minimum(index):
    cfg = _cfg(modality_dropout=ModalityDropoutConfig(p=1.0, min_modalities=2))
    ds = TrainDataset(index, [1], cfg, seed=0)
    for i in range(len(ds)):
        kept = set(ds[i]["inputs"])
        assert V in kept and len(kept) == 3


@pytest.fixture
def bad_index(tmp_path) -> DatasetIndex:
    files = [
        ("vis/0004/a.jpg", "RGB"),
        ("vis/0004/bad.jpg", "corrupt"),
        ("nir/0004/bad.jpg", "corrupt"),
        ("sk/0004/s.png", "L"),
    ]
    return _make_index(tmp_path, files, {})


def test_bad_images_are_skipped_and_recorded(bad_index):
    ds = TrainDataset(bad_index, [4], _cfg(on_bad_image="skip"), seed=0)
    good, bad_anchor = ds[0], ds[1]
    assert set(good["inputs"]) == {V, S} and good["bad"] == ["nir/0004/bad.jpg"]
    assert bad_anchor["inputs"] == {} and bad_anchor["bad"] == ["vis/0004/bad.jpg"]
    batch = collate([good, bad_anchor, None], _tokenize)
    assert batch.size == 1 and batch.paths == ["vis/0004/a.jpg"]
    assert batch.bad == ["nir/0004/bad.jpg", "vis/0004/bad.jpg"]


def test_bad_images_fail_naming_the_file(bad_index):
    ds = TrainDataset(bad_index, [4], _cfg(on_bad_image="fail"), seed=0)
    with pytest.raises(DataError, match=r"nir[/\\]0004[/\\]bad\.jpg"):
        ds[0]
    with pytest.raises(DataError, match=r"vis[/\\]0004[/\\]bad\.jpg"):
        ds[1]


def test_collate_packs_present_rows_in_sample_order(index):
    ds = TrainDataset(index, [1, 2, 3], _cfg(), seed=0)
    samples = [ds[i] for i in (5, 0, 3, 4, 6)]  # pid 3, 1, 2 (no caption), 2 (caption), 3
    batch = collate(samples, _tokenize)
    assert isinstance(batch, ModalBatch)
    assert batch.pids.tolist() == [3, 1, 2, 2, 3] and batch.labels.tolist() == [2, 0, 1, 1, 2]
    assert batch.paths == [s["path"] for s in samples] and batch.bad == []
    expected = [[m in s["inputs"] for m in ALL_MODALITIES] for s in samples]
    assert batch.mask.tolist() == expected
    for m in (V, N, C, S):
        rows = [torch.from_numpy(s["inputs"][m]) for s in samples if m in s["inputs"]]
        assert torch.equal(batch.inputs[m], torch.stack(rows).permute(0, 3, 1, 2))
        assert batch.erase[m].shape == (len(rows), 5)
        finished = batch.to("cpu").inputs[m]  # normalised on the device
        assert finished.dtype == torch.float32 and finished.shape == (len(rows), m.channels, H, W)
    assert batch.inputs[T].shape == (2, 8) and batch.inputs[T].dtype == torch.long


def test_dataloader_with_pk_sampler_yields_modal_batches(index):
    ds = TrainDataset(index, [1, 2, 3], _cfg(), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = PKBatchSampler(ds.anchor_pids, p=2, k=2, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=partial(collate, tokenize=_tokenize))
    batches = list(loader)
    assert len(batches) == 1
    assert batches[0].size == 4 and len(set(batches[0].pids.tolist())) == 2


def test_image_list_dataset_returns_eval_tensors(index):
    paths = ["nir/0001/n0.jpg", "nir/0002/n0.jpg"]
    ds = ImageListDataset(index.root, paths, N, _cfg())
    assert len(ds) == 2
    assert ds[0].shape == (1, H, W) and torch.equal(ds[0], ds[0])


def test_image_list_dataset_fails_on_bad_image_even_when_training_skips(bad_index):
    ds = ImageListDataset(bad_index.root, ["vis/0004/bad.jpg"], V, _cfg(on_bad_image="skip"))
    with pytest.raises(DataError, match=r"bad\.jpg"):
        ds[0]
