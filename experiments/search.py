"""`reid search`: rank a folder of RGB images against a query made of any other modalities.

The gallery embedding is cached on disk, keyed by the model's identity and the gallery files'
content hash, so a second search over the same folder only embeds the query.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reid_core.errors import DataError, ReidError
from reid_core.fileio import atomic_path
from reid_core.modality import IMAGE_SUFFIXES, Modality

CACHE_ENV = "OMNIREID_SEARCH_CACHE"


@dataclass
class Match:
    rank: int
    score: float
    path: str
    identity: int | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_query(items: tuple[str, ...] | list[str]) -> list[tuple[Modality, str]]:
    """`nir=PATH`, `text=...`: one item per modality, never RGB (the gallery's modality)."""
    out: list[tuple[Modality, str]] = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value:
            raise ReidError(f"--query {item!r} is not of the form MODALITY=VALUE")
        modality = Modality.parse(name)
        if modality is Modality.VIS:
            raise ReidError("--query cannot be RGB (vis): the gallery is RGB")
        if any(m is modality for m, _ in out):
            raise ReidError(f"--query gives {modality.value} twice")
        if modality.is_image and not Path(value).is_file():
            raise DataError(f"--query {modality.value}={value}: file not found")
        out.append((modality, value))
    if not out:
        raise ReidError("give at least one --query MODALITY=VALUE")
    return out


def gallery_files(folder: Path) -> list[Path]:
    """RGB images under `folder` (a dataset ROOT's `vis/` when it has one), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--gallery {folder}: not a folder")
    base = folder / "vis" if (folder / "vis").is_dir() else folder
    files = sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"--gallery {folder}: no images")
    return files


def _identity(path: Path) -> int | None:
    name = path.parent.name
    return int(name) if name.isascii() and name.isdigit() else None


def cache_dir() -> Path | None:
    """`$OMNIREID_SEARCH_CACHE` (empty: no cache), else ~/.cache/omnireid/search."""
    value = os.environ.get(CACHE_ENV)
    if value is None:
        return Path.home() / ".cache" / "omnireid" / "search"
    return Path(value).expanduser() if value.strip() else None


def _model_identity(model: Any) -> str:
    meta = getattr(model, "metadata", None)
    uuid = getattr(meta, "model_uuid", None) or getattr(meta, "model_id", None)
    if not uuid:
        raise ReidError("the loaded model has no identity to key the gallery cache")
    return str(uuid)


def gallery_key(model: Any, files: list[Path]) -> str:
    h = hashlib.sha256(_model_identity(model).encode())
    for p in files:
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:32]


def embed_gallery(model: Any, files: list[Path], cache: Path | None) -> tuple[np.ndarray, bool]:
    """Gallery features `[G, D]` and whether they came from the cache."""
    key = gallery_key(model, files)
    path = cache / f"{key}.npy" if cache is not None else None
    if path is not None and path.is_file():
        feats = np.load(path)
        if feats.shape[0] == len(files):
            return feats, True
    frame = pd.DataFrame(
        {
            "query_id": [f"g{i}" for i in range(len(files))],
            "modality": "vis",
            "path": [str(p) for p in files],
        }
    )
    feats = _features(model.predict(frame))
    if path is not None:
        with atomic_path(path) as tmp:
            np.save(tmp, feats)
    return feats, False


def _features(out: pd.DataFrame) -> np.ndarray:
    return np.asarray(np.stack([np.asarray(v, dtype=np.float32) for v in out["bn_features"]]))


def embed_query(model: Any, query: list[tuple[Modality, str]]) -> np.ndarray:
    return embed_rows(model, query_rows(query))


def embed_rows(model: Any, rows: list[dict[str, Any]]) -> np.ndarray:
    """The fused embedding of pyfunc input rows sharing one query id."""
    if not rows:
        raise DataError("the query has no items")
    return _features(model.predict(pd.DataFrame(rows)))[0]


def search(
    model: Any,
    gallery: Path,
    query: list[tuple[Modality, str]],
    top: int = 10,
    cache: Path | None = None,
) -> tuple[list[Match], bool]:
    """The `top` gallery images most similar to the fused query, and whether the cache served
    the gallery."""
    files = gallery_files(gallery)
    feats, cached = embed_gallery(model, files, cache)
    scores = feats @ embed_query(model, query)
    order = np.argsort(-scores, kind="stable")[: max(1, top)]
    base = Path(gallery)
    matches = [
        Match(i + 1, float(scores[j]), _display(files[j], base), _identity(files[j]))
        for i, j in enumerate(order)
    ]
    return matches, cached


def _display(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def query_rows(query: list[tuple[Modality, str]]) -> list[dict[str, Any]]:
    """Pyfunc input rows of one query (`path` for images, `text` for the caption)."""
    rows = []
    for modality, value in query:
        kind = "text" if modality is Modality.TEXT else "path"
        rows.append({"query_id": "q", "modality": modality.value, kind: value})
    return rows


def rank_index(
    index: Any, vector: np.ndarray, top: int, kind: str = "exact"
) -> list[tuple[int, Match]]:
    """The `top` (row, match) pairs of a gallery index (experiments.index) for one query."""
    rows, scores = index.search(vector, top, kind)
    out: list[tuple[int, Match]] = []
    for row, score in zip(rows[0].tolist(), scores[0].tolist(), strict=True):
        if row < 0:  # faiss pads with -1 when it finds fewer than `top`
            continue
        m = Match(len(out) + 1, float(score), index.paths[row], index.identity(row))
        out.append((row, m))
    return out


def search_index(
    model: Any, uri: str, folder: Path, query: list[tuple[Modality, str]], top: int, kind: str
) -> list[Match]:
    """Search a gallery index made by this model (refused otherwise)."""
    from experiments.index import model_identity, open_index

    index = open_index(folder)
    index.check_model(model_identity(model, uri))
    return [m for _, m in rank_index(index, embed_query(model, query), top, kind)]
