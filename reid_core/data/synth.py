"""Synthetic ORBench-layout data in which each modality carries only part of an identity.

A person is a set of attributes drawn once per identity; each image is a fresh rendering with its
own pose, framing, lighting, background, blur and noise. What each modality keeps:

| modality | keeps | loses |
| --- | --- | --- |
| vis | everything | - |
| nir | garment lightness (IR tone: green/teal/red dyes brighten), pattern, bag, hat, hair | hue |
| sk | outlines: pattern, bag, hat, hair, lower-garment shape | hue and lightness |
| cp | garment hue (roughly), lower-garment shape | lightness, pattern, bag, hat, hair |
| text | a random subset of the attributes in words, a different subset per caption | the rest |

So no single query modality pins a person down among a few dozen identities, while their union
(nir + cp already covers every attribute) mostly does. Every random draw comes from a
`numpy` generator seeded with `(seed, identity, stream)`, so a seed reproduces the bytes and a
different missing rate drops modalities without changing the images that remain.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from reid_core.data.synth_identity import (
    BAGS,
    COLOURS,
    HUES,
    IR_BRIGHT,
    LOWER_TYPES,
    PATTERNS,
    Identity,
    caption,
    identity,
)
from reid_core.data.synth_render import POSE_RANGES, STYLES, render
from reid_core.errors import DataError
from reid_core.modality import IMAGE_MODALITIES, QUERY_MODALITIES, Modality

__all__ = [
    "BAGS", "CAPTION_FILE", "COLOURS", "HUES", "IR_BRIGHT", "LAYOUT", "LOWER_TYPES", "PATTERNS",
    "POSE_RANGES", "STYLES", "Identity", "caption", "identity", "render", "synthesize",
]  # fmt: skip

CAPTION_FILE = "text_annos.json"
LAYOUT = (*(m.value for m in IMAGE_MODALITIES), CAPTION_FILE)
IMAGES_PER_ID = {Modality.VIS: (6, 11)} | dict.fromkeys(QUERY_MODALITIES[:3], (3, 7))
_QUALITY = 92


Written = tuple[dict[Modality, int], list[dict[str, str]], set[Modality]]


def _write_identity(root: Path, pid: int, seed: int, size: tuple[int, int], rate: float) -> Written:
    """Render one identity's images into `root`; returns its counts, captions and missing ones."""
    ident = identity(seed, pid)
    counts_rng = np.random.default_rng([seed, pid, 1])
    counts = {m: int(counts_rng.integers(*IMAGES_PER_ID[m])) for m in IMAGE_MODALITIES}
    # one uniform per modality: raising the rate only adds to what is missing
    miss_rng = np.random.default_rng([seed, pid, 2])
    draws = miss_rng.random(len(QUERY_MODALITIES))
    missing = {m for m, u in zip(QUERY_MODALITIES, draws, strict=True) if u < rate}
    annos = []
    text_rng = np.random.default_rng([seed, pid, 3])
    for m in IMAGE_MODALITIES:
        if m in missing:
            continue
        folder = root / m.value / f"{pid:04d}"
        folder.mkdir(parents=True)
        rng = np.random.default_rng([seed, pid, 10 + m.column])
        for k in range(counts[m]):
            name = f"{pid:04d}_{m.value}_{k:02d}.jpg"
            render(m, ident, rng, size).save(folder / name, quality=_QUALITY)
            if m is Modality.VIS and Modality.TEXT not in missing:
                annos.append(
                    {"file_path": f"vis/{pid:04d}/{name}", "caption": caption(ident, text_rng)}
                )
    return {m: (0 if m in missing else n) for m, n in counts.items()}, annos, missing


def _validate(out: Path, identities: int, seed: int, size: tuple[int, int], rate: float) -> None:
    if isinstance(identities, bool) or not isinstance(identities, int) or identities < 2:
        raise DataError(f"identities must be an integer >= 2, got {identities!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    ok = isinstance(size, tuple | list) and len(size) == 2 and all(isinstance(v, int) for v in size)
    if not ok or size[0] < 16 or size[1] < 8:
        raise DataError(f"size must be (height, width) of at least 16x8, got {size!r}")
    if not 0.0 <= rate < 1.0:
        raise DataError(f"missing rate must be in [0, 1), got {rate!r}")
    if out.exists() and not out.is_dir():
        raise DataError(f"output {out} exists and is not a directory")


def _place(tmp: Path, out: Path) -> None:
    """Move the finished layout from `tmp` into `out`, replacing only the layout's own entries."""
    if not out.exists():
        tmp.rename(out)
        return
    for name in LAYOUT:  # renames within one folder: the window for a half-written tree is tiny
        old = out / name
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
        (tmp / name).rename(old)


def synthesize(
    out: Path,
    *,
    identities: int = 200,
    seed: int = 0,
    size: tuple[int, int] = (128, 64),
    missing_rate: float = 0.0,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic dataset in the seed layout to `out` and return a summary.

    `size` is (height, width). Images are written to a temporary sibling folder and moved into
    place at the end, so a failure leaves `out` as it was. An existing non-empty `out` is refused
    unless `overwrite`, which replaces only the layout's folders and caption file.
    """
    out = Path(out)
    _validate(out, identities, seed, size, missing_rate)
    size = (int(size[0]), int(size[1]))
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"output {out} is not empty (pass overwrite to replace its dataset)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".synth", dir=out.parent))
    except OSError as exc:
        raise DataError(f"cannot write to {out.parent}: {exc.strerror or exc}") from None
    try:
        for m in IMAGE_MODALITIES:
            (tmp / m.value).mkdir()
        done = [
            _write_identity(tmp, pid, seed, size, missing_rate) for pid in range(1, identities + 1)
        ]
        annos = [a for _, captions, _ in done for a in captions]
        text = json.dumps(annos, indent=1, ensure_ascii=False)
        (tmp / CAPTION_FILE).write_text(text + "\n", encoding="utf-8")
        _place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {"out": str(out), "identities": identities, "seed": seed, "size": list(size)}
    images = {m.value: sum(counts[m] for counts, _, _ in done) for m in IMAGE_MODALITIES}
    missing = {m.value: sum(m in lacks for _, _, lacks in done) for m in QUERY_MODALITIES}
    return {**summary, "images": images, "captions": len(annos), "missing": missing}
