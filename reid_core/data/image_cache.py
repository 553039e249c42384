"""Each image decoded once: a uint8 cache at the training resolution (`data.cache`).

Decoding and resizing a JPEG costs far more than everything else a sample needs, and a training
run decodes every image once per epoch; a study does it again for every trial. The cache holds
each image of a dataset as it leaves the resize (the modality's channels, `height x width`,
uint8), memory-mapped, so a sample is a slice of a file the page cache keeps warm. It is keyed
by the dataset (its root, its index digest and every image file's size and mtime) and the
resolution, built on first use with a progress bar, and shared by every run, trial and worker
that reads the same data at the same size; `data.cache: off` (or `OMNIREID_CACHE=""`) decodes
each file when a sample needs it, to the same pixels.

Layout of `<cache>/images/<key>/`: `meta.json` (format, root, size, the rows of each path) and
one `<modality>.u8` file per image modality (`[n, height, width, channels]`). An undecodable
image has no row (`meta.json` lists it as bad): training skips or fails on it as
`data.on_bad_image` says, as when it met the file itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from reid_core.data.dataset_index import CACHE_ENV, DatasetIndex
from reid_core.errors import DataError
from reid_core.modality import Modality

FORMAT = 1
SPARE = 1.1  # the cache is used when the disk holds its size and this much more


def cache_root() -> Path | None:
    """`$OMNIREID_CACHE/images` (`OMNIREID_CACHE` empty: no cache), else
    ~/.cache/omnireid/images."""
    value = os.environ.get(CACHE_ENV)
    if value is None:
        return Path.home() / ".cache" / "omnireid" / "images"
    return Path(value).expanduser() / "images" if value.strip() else None


def decode(path: Path, modality: Modality, size: tuple[int, int]) -> np.ndarray:
    """`[height, width, channels]` uint8: the image in the modality's mode, resized (bicubic)
    exactly as the transforms do. A file that does not decode raises DataError naming it."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    from reid_core.data.images import load_image

    img = load_image(path)
    mode = "RGB" if modality.channels == 3 else "L"
    img = img if img.mode == mode else img.convert(mode)
    img = F.resize(img, list(size), interpolation=InterpolationMode.BICUBIC)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _key(index: DatasetIndex, modalities: list[Modality], size: tuple[int, int]) -> str:
    h = hashlib.sha256(f"{FORMAT}\0{index.root}\0{index.digest}\0{size}".encode())
    for m in modalities:
        for pid in sorted(index.images.get(m, {})):
            for rel in index.images[m][pid]:
                st = (index.root / rel).stat()
                line = f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n"
                h.update(line.encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:32]


class ImageCache:
    """The images of a dataset at one size; `get` returns a path's pixels (None: it did not
    decode). Picklable: DataLoader workers reopen the memory maps themselves."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.folder, self.meta = Path(folder), meta
        self.rows = {m: {p: i for i, p in enumerate(paths)} for m, paths in meta["rows"].items()}
        self.bad = {m: set(paths) for m, paths in meta["bad"].items()}
        self._maps: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "meta": self.meta}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"], state["meta"])  # type: ignore[misc]

    def get(self, modality: Modality, rel: str) -> np.ndarray | None:
        m = modality.value
        row = self.rows.get(m, {}).get(rel)
        if row is None:
            if rel in self.bad.get(m, set()):
                return None
            raise KeyError(f"{rel} is not in the image cache of {self.meta['root']}")
        if m not in self._maps:
            h, w = self.meta["size"]
            shape = (len(self.rows[m]), h, w, modality.channels)
            self._maps[m] = np.memmap(self.folder / f"{m}.u8", np.uint8, "r", shape=shape)
        return np.asarray(self._maps[m][row])


_OPENED: dict[tuple[str, tuple[int, int]], ImageCache] = {}


def opened(root: Path, size: tuple[int, int]) -> ImageCache | None:
    """The cache this process opened for dataset `root` at `size` (evaluation reads it too)."""
    return _OPENED.get((str(root), tuple(size)))  # type: ignore[arg-type]


def open_cache(
    index: DatasetIndex, modalities: list[Modality], size: tuple[int, int], progress: bool = True
) -> ImageCache | None:
    """The cache of `index`'s images of `modalities` at `size`, built when missing; None when
    there is no cache folder or the disk cannot hold it (the caller decodes the files)."""
    root = cache_root()
    if root is None:
        return None
    cache = _open(root, index, modalities, size, progress)
    if cache is not None:
        _OPENED[(str(index.root), tuple(size))] = cache  # type: ignore[index]
    return cache


def _open(
    root: Path,
    index: DatasetIndex,
    modalities: list[Modality],
    size: tuple[int, int],
    progress: bool,
) -> ImageCache | None:
    images = [m for m in modalities if m.is_image]
    folder = root / _key(index, images, size)
    if not (folder / "meta.json").is_file():
        need = sum(index.num_images(m) * size[0] * size[1] * m.channels for m in images)
        root.mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(root).free < need * SPARE:
            return None
        with _lock(root / f"{folder.name}.lock"):
            if not (folder / "meta.json").is_file():  # another process may have built it
                _build(index, images, size, folder, progress)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    return ImageCache(folder, meta)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock file (fcntl; on Windows the build simply races and the rename
    decides)."""
    with open(path, "a+b") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        yield


def _build(
    index: DatasetIndex, images: list[Modality], size: tuple[int, int], folder: Path, progress: bool
) -> None:
    """Decode every image into a temporary folder, then rename it into place (complete or
    absent, whatever interrupts it)."""
    from reid_core.progress import track

    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        meta: dict[str, Any] = {"format": FORMAT, "root": str(index.root), "size": list(size)}
        meta["rows"], meta["bad"] = {}, {}
        for m in images:
            paths = [p for pid in sorted(index.images.get(m, {})) for p in index.images[m][pid]]
            shape = (max(1, len(paths)), *size, m.channels)
            out = np.memmap(tmp / f"{m.value}.u8", np.uint8, "w+", shape=shape)
            rows: list[str] = []  # packed: a bad image leaves an unused row at the end
            bad: list[str] = []
            steps = track(paths, description=f"image cache {m.value}") if progress else paths
            for rel in steps:
                try:
                    out[len(rows)] = decode(index.root / rel, m, size)
                    rows.append(rel)
                except DataError:
                    bad.append(rel)
            out.flush()
            del out
            meta["rows"][m.value], meta["bad"][m.value] = rows, bad
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
