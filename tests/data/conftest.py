"""Tiny dataset trees with real (small) JPEG and PNG images, written in tmp_path.

`seed_tree`: the seed layout with `text_annos.json`. `orbench_tree`: ORBench's `train_annos.json`
(with 1-based ids and a split) and `test_gallery_and_queries.json` with ordered sets.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

PER_MODALITY = {"vis": 3, "nir": 2, "cp": 2, "sk": 2}
EVAL_SETS = ("NIR", "CP+SK", "TEXT+NIR", "TEXT+NIR+CP")


@cache
def image_bytes(fmt: str = "JPEG", mode: str = "RGB", size: tuple[int, int] = (8, 16)) -> bytes:
    """Encoded bytes of a small real image (cached: every test writes the same bytes)."""
    from PIL import Image

    im = Image.new(mode, size, color=0)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def caption_for(rel: str) -> str:
    return f"a person seen in {rel.rsplit('/', 1)[-1]}, wearing a red coat"


def write_tree(
    root: Path,
    identities: int = 10,
    per_modality: dict[str, int] | None = None,
    captions: str | None = "text_annos.json",
    lacking: dict[str, tuple[int, ...]] | None = None,
) -> Path:
    """Write `ROOT/{vis,nir,cp,sk}/<0001..>/<files>` (sketch as PNG) and a caption file.

    `lacking[m]` lists identities without modality `m`; `captions` is `text_annos.json`,
    `train_annos.json` (adds 1-based `id` and `split`) or None.
    """
    counts = per_modality or PER_MODALITY
    lacking = lacking or {}
    entries = []
    for pid in range(1, identities + 1):
        for m, n in counts.items():
            if pid in lacking.get(m, ()):
                continue
            folder = root / m / f"{pid:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            suffix, fmt = (".png", "PNG") if m == "sk" else (".jpg", "JPEG")
            for i in range(n):
                name = f"{pid:04d}_c{i + 1}_{i:03d}{suffix}"
                (folder / name).write_bytes(image_bytes(fmt))
                if m == "vis":
                    rel = f"vis/{pid:04d}/{name}"
                    entries.append({"file_path": rel, "caption": caption_for(rel)})
    if captions == "train_annos.json":
        for e in entries:
            pid = int(e["file_path"].split("/")[1])
            e.update(id=pid, split="train" if pid <= identities - 4 else "test")
    if captions:
        (root / captions).write_text(json.dumps(entries), encoding="utf-8")
    return root


def eval_file_data(root: Path, test_pids: tuple[int, ...]) -> dict:
    """An evaluation file over `test_pids` with ordered sets, every item from the tree."""

    def first(m: str, pid: int) -> str:
        return sorted(p.relative_to(root).as_posix() for p in (root / m / f"{pid:04d}").iterdir())[
            0
        ]

    data: dict = {"RGB_GALLERY": []}
    for pid in test_pids:
        for p in sorted((root / "vis" / f"{pid:04d}").iterdir()):
            data["RGB_GALLERY"].append([pid, p.relative_to(root).as_posix()])
    for name in EVAL_SETS:
        rows = []
        for pid in test_pids:
            items = [
                caption_for(first("vis", pid)) if m == "TEXT" else first(m.lower(), pid)
                for m in name.split("+")
            ]
            rows.append([pid, *items])
        data[name] = rows
    return data


@pytest.fixture
def tree(tmp_path: Path) -> Callable[..., Path]:
    """`tree(name="data", **write_tree kwargs)` writes a fresh tree under tmp_path."""

    def make(name: str = "data", **kwargs) -> Path:
        return write_tree(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def seed_tree(tree) -> Path:
    return tree("seed")


@pytest.fixture
def orbench_tree(tree) -> Path:
    root = tree("orbench", identities=12, captions="train_annos.json")
    data = eval_file_data(root, (9, 10, 11, 12))
    (root / "test_gallery_and_queries.json").write_text(json.dumps(data), encoding="utf-8")
    return root
