"""The uint8 image cache (`data.cache`) and the split training transform (host draws, device
finish): the same pixels as decoding every file through the PIL transforms, built once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reid_core.config import load_config
from reid_core.data import image_cache
from reid_core.data.dataset_index import build_index
from reid_core.data.datasets import ImageListDataset, TrainDataset, collate
from reid_core.data.images import load_image
from reid_core.data.splits import make_splits
from reid_core.data.transforms import build_transform
from reid_core.modality import Modality

AUGMENTS = {  # cpu-tiny's (flip, erase), the seed's (pad-and-crop too) and colour jitter
    "flip-erase": ["data.augment.pad=0", "data.augment.random_erase=0.5"],
    "seed": [],
    "jitter": ["data.augment.color_jitter=0.3", "data.augment.random_erase=0.9"],
}


def _tokens(texts):
    return torch.zeros(len(texts), 4, dtype=torch.long)


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIREID_CACHE", str(tmp_path / "cache"))
    image_cache._OPENED.clear()
    yield tmp_path / "cache"
    image_cache._OPENED.clear()


def _reference(ds: TrainDataset, n: int, cfg) -> dict[Modality, torch.Tensor]:
    """The batch the PIL transforms of `build_transform` make, sample by sample."""
    transforms = {m: build_transform(m, cfg.data, train=True) for m in (ds.gallery, *ds.others)}
    out: dict[Modality, list[torch.Tensor]] = {}
    for i in range(n):
        pid, anchor = ds._anchors[i]
        paths = {Modality.VIS: anchor, **ds._draw(pid, i)}
        caption = ds.index.captions.get(anchor) if ds.use_text else None
        kept = [m for m in ds._kept(i, paths, caption) if m.is_image and m is not Modality.VIS]
        for m in (Modality.VIS, *kept):  # the anchor first, as the dataset loads them
            img = load_image(ds.index.root / paths[m])
            out.setdefault(m, []).append(transforms[m](img))
    return {m: torch.stack(v) for m, v in out.items()}


@pytest.mark.parametrize("augment", list(AUGMENTS))
def test_cached_and_decoded_batches_equal_the_pil_transforms(seed_tree, cache_home, augment):
    cfg = load_config(overrides=["data.height=32", "data.width=16", *AUGMENTS[augment]])
    index = build_index(seed_tree, cache=False)
    train = make_splits(index, cfg.data, min_train=False).train
    cache = image_cache.open_cache(index, list(cfg.data.modalities), (32, 16), progress=False)
    assert cache is not None
    batches = []
    for source in (None, cache):
        ds = TrainDataset(index, train, cfg.data, seed=0, cache=source)
        torch.manual_seed(7)
        batches.append(collate([ds[i] for i in range(len(ds))], _tokens).to("cpu"))
    torch.manual_seed(7)
    reference = _reference(TrainDataset(index, train, cfg.data, seed=0), len(ds), cfg)
    for m, expected in reference.items():
        assert torch.equal(batches[0].inputs[m], expected), m
        assert torch.equal(batches[1].inputs[m], expected), m


def test_the_cache_is_built_once_and_shared(seed_tree, cache_home, monkeypatch):
    index = build_index(seed_tree, cache=False)
    calls = []
    real = image_cache.decode
    monkeypatch.setattr(image_cache, "decode", lambda *a: calls.append(a) or real(*a))
    first = image_cache.open_cache(index, [Modality.VIS, Modality.SK], (32, 16), progress=False)
    built = len(calls)
    second = image_cache.open_cache(index, [Modality.VIS, Modality.SK], (32, 16), progress=False)
    assert built == index.num_images(Modality.VIS) + index.num_images(Modality.SK)
    assert len(calls) == built and first.folder == second.folder
    other = image_cache.open_cache(index, [Modality.VIS, Modality.SK], (64, 32), progress=False)
    assert other.folder != first.folder  # another resolution, another cache
    assert not list(cache_home.glob("images/.*"))  # no temporary folder left behind


def test_an_undecodable_image_is_bad_in_the_cache_and_skipped_or_fatal(seed_tree, cache_home):
    broken = next(p for p in (seed_tree / "sk").rglob("*") if p.is_file())
    broken.write_bytes(b"not an image")
    index = build_index(seed_tree, cache=False)
    cache = image_cache.open_cache(index, [Modality.VIS, Modality.SK], (32, 16), progress=False)
    rel = broken.relative_to(seed_tree).as_posix()
    assert cache.get(Modality.SK, rel) is None and rel in cache.bad["sk"]
    for policy in ("skip", "fail"):
        cfg = load_config(
            overrides=["data.height=32", "data.width=16", f"data.on_bad_image={policy}"]
        )
        train = make_splits(index, cfg.data, min_train=False).train
        ds = TrainDataset(index, train, cfg.data, seed=0, cache=cache)
        sample = {"erase": {}, "bad": []}
        if policy == "skip":
            assert ds._load(Modality.SK, rel, sample) is None and sample["bad"] == [rel]
        else:
            with pytest.raises(Exception, match="cannot decode image"):
                ds._load(Modality.SK, rel, sample)


def test_evaluation_reads_the_same_pixels_from_the_cache(seed_tree, cache_home):
    cfg = load_config(overrides=["data.height=32", "data.width=16"])
    index = build_index(seed_tree, cache=False)
    paths = [p for pid in index.pids() for p in index.paths(Modality.VIS, pid)]
    plain = ImageListDataset(seed_tree, paths, Modality.VIS, cfg.data)
    assert plain.cache is None
    image_cache.open_cache(index, [Modality.VIS], (32, 16), progress=False)
    cached = ImageListDataset(seed_tree, paths, Modality.VIS, cfg.data)
    assert cached.cache is not None
    for i in range(len(paths)):
        assert torch.equal(cached[i], plain[i])


def test_no_cache_without_a_folder_or_room(seed_tree, tmp_path, monkeypatch):
    index = build_index(seed_tree, cache=False)
    monkeypatch.setenv("OMNIREID_CACHE", "")
    assert image_cache.open_cache(index, [Modality.VIS], (32, 16)) is None
    monkeypatch.setenv("OMNIREID_CACHE", str(tmp_path / "c"))
    monkeypatch.setattr(image_cache.shutil, "disk_usage", lambda p: type("U", (), {"free": 10}))
    assert image_cache.open_cache(index, [Modality.VIS], (32, 16)) is None
    assert not list(Path(tmp_path / "c").rglob("meta.json"))
