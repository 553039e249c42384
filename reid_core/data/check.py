"""`reid data check` and `reid data stats`: decode every image, describe a dataset.

An image passes the check exactly when training could use it: both go through
`reid_core.data.images` (the same header checks, decode and conversion).

Decoding runs in a thread pool: Pillow releases the GIL while it decodes, and threads need no
spawn-safe entry point on macOS and Windows.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reid_core.data.dataset_index import DatasetIndex, build_index
from reid_core.data.evalfile import set_name
from reid_core.data.images import image_problem
from reid_core.errors import DataError, printable
from reid_core.modality import IMAGE_MODALITIES, QUERY_MODALITIES, Modality
from reid_core.progress import track

if TYPE_CHECKING:
    from reid_core.config import DataConfig

SHOWN_PROBLEMS = 3


@dataclass(frozen=True)
class CheckReport:
    """What `check_dataset` looked at; it only returns when every image is readable."""

    root: Path
    images: dict[str, int]
    identities: int
    captions: int
    caption_file: str | None
    eval_sets: int
    quick: bool
    seconds: float
    warnings: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        """One line for the terminal."""
        per = ", ".join(f"{m} {n}" for m, n in self.images.items())
        mode = "headers read" if self.quick else "decoded"
        evalf = (
            f"evaluation file: {self.eval_sets} sets" if self.eval_sets else "no evaluation file"
        )
        caps = (
            f"{self.captions} captions ({self.caption_file})"
            if self.caption_file
            else "no captions"
        )
        total = sum(self.images.values())
        return printable(
            f"OK {self.root}: {total} images {mode} ({per}), {self.identities} identities, "
            f"{caps}, {evalf} [{self.seconds:.1f}s]"
        )


def find_bad_images(
    index: DatasetIndex, *, quick: bool = False, workers: int | None = None
) -> list[tuple[str, str]]:
    """`(relative path, reason)` of every image that cannot be read, in path order."""
    rels = sorted(
        p for m in IMAGE_MODALITIES for paths in index.images.get(m, {}).values() for p in paths
    )
    n_workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    if n_workers < 1:
        raise DataError(f"--workers must be >= 1 (got {n_workers})")
    root = index.root
    label = "reading headers" if quick else "decoding images"
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        results = pool.map(lambda rel: (rel, image_problem(root / rel, quick)), rels, chunksize=64)
        bad = [(rel, why) for rel, why in track(results, total=len(rels), description=label) if why]
    return bad


def check_dataset(
    root: str | Path, *, quick: bool = False, workers: int | None = None
) -> CheckReport:
    """Validate a dataset: annotations and evaluation file (via `build_index`) and every image
    (decoded, or only its header with `quick`). Problems raise one DataError that counts them."""
    start = time.monotonic()
    index = build_index(root, cache=False)  # a checker trusts no cache and writes none
    bad = find_bad_images(index, quick=quick, workers=workers)
    if bad:
        shown = "; ".join(f"{printable(rel)} ({why})" for rel, why in bad[:SHOWN_PROBLEMS])
        more = f" and {len(bad) - SHOWN_PROBLEMS} more" if len(bad) > SHOWN_PROBLEMS else ""
        raise DataError(f"{index.root}: {len(bad)} unreadable image(s): {shown}{more}")
    return CheckReport(
        root=index.root,
        images={m.value: index.num_images(m) for m in IMAGE_MODALITIES if m in index.images},
        identities=len(index.all_pids()),
        captions=len(index.captions),
        caption_file=index.caption_file,
        eval_sets=len(index.eval_protocol.sets) if index.eval_protocol else 0,
        quick=quick,
        seconds=time.monotonic() - start,
        warnings=index.warnings,
    )


def _protocol_stats(index: DatasetIndex) -> dict[str, Any] | None:
    protocol = index.eval_protocol
    if protocol is None:
        return None
    return {
        "name": protocol.name,
        "gallery_images": len(protocol.gallery),
        "identities": len(protocol.pids()),
        "sets": {set_name(qs.modalities): len(qs.queries) for qs in protocol.sets},
    }


def dataset_stats(index: DatasetIndex, data_cfg: DataConfig) -> dict[str, Any]:
    """Identities per split, images per modality, caption coverage, identities usable for P x K,
    missing modalities per identity, and the evaluation file's protocol (JSON-able)."""
    from reid_core.data.splits import make_splits

    splits = make_splits(index, data_cfg)
    gallery = Modality.VIS
    rgb = index.num_images(Modality.VIS)
    covered = sum(1 for p in index.captions if p.startswith(f"{Modality.VIS.value}/"))
    k = data_cfg.k
    pids = index.pids(gallery)
    return {
        "root": str(index.root),
        "digest": index.digest,
        "identities": {"total": len(index.all_pids()), "gallery": len(pids), **splits.sizes()},
        "images": {m.value: index.num_images(m) for m in IMAGE_MODALITIES},
        "captions": {
            "file": index.caption_file,
            "count": len(index.captions),
            "coverage": round(covered / rgb, 4) if rgb else 0.0,
        },
        "pk": {
            "p": data_cfg.p,
            "k": k,
            "usable": sum(1 for p in pids if len(index.paths(gallery, p)) >= k),
            "usable_train": sum(1 for p in splits.train if len(index.paths(gallery, p)) >= k),
        },
        "missing_per_identity": {
            m.value: sum(1 for p in pids if not index.has(m, p)) for m in QUERY_MODALITIES
        },
        "missing_folders": [m.value for m in index.missing_folders],
        "protocol": _protocol_stats(index),
        "warnings": list(index.warnings),
    }
