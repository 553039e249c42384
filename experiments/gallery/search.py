"""`reid search`: rank an RGB gallery against a query made of any other modalities.

The gallery is a gallery index (`experiments.gallery.index`): one given with `--index`, or, for a
plain folder, one kept in the search cache and keyed by the model's weights digest and the
folder's listing, so a second search over the same folder with the same model only embeds the
query. The index is the only gallery-embedding cache and the weights digest the only model
identity.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.gallery.index import (
    FORMAT_VERSION,
    GalleryIndex,
    build_index,
    features,
    gallery_files,
    gallery_folder,
    listing_digest,
    model_identity,
    open_index,
    weights_digest,
)
from reid_core.errors import DataError, ReidError
from reid_core.modality import Modality
from reid_core.safeio import check_path_length, quote, shorten

CACHE_ENV = "OMNIREID_SEARCH_CACHE"
MAX_TEXT = 2_000  # characters of a query caption (CLI and service)


@dataclass
class Match:
    rank: int
    score: float
    path: str
    identity: int | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TextTooLongError(ReidError):
    """A caption over `MAX_TEXT` characters (the service's 413)."""


def check_text(text: str, where: str) -> str:
    """A query caption, stripped: refused when blank or over `MAX_TEXT` characters (the same
    rule for `reid search` and the service)."""
    if not text.strip():
        raise ReidError(f"{where}: the caption is empty (only whitespace)")
    if len(text) > MAX_TEXT:
        raise TextTooLongError(f"{where}: longer than {MAX_TEXT} characters ({len(text)})")
    return text.strip()


def check_image_file(value: str, where: str) -> None:
    """A query image on disk: a regular file whose header passes `open_image` (size, pixel
    limit, mode), checked before any model is loaded."""
    from reid_core.data.images import open_image

    check_path_length(value, where, DataError)
    if not Path(value).exists():
        raise DataError(f"{where}: file not found")
    open_image(Path(value), value).close()


def parse_query(items: tuple[str, ...] | list[str]) -> list[tuple[Modality, str]]:
    """`nir=PATH`, `text=...`: one item per modality, never RGB (the gallery's modality)."""
    out: list[tuple[Modality, str]] = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value:
            raise ReidError(f"--query {quote(item)} is not of the form MODALITY=VALUE")
        modality = Modality.parse(name)
        if modality is Modality.VIS:
            raise ReidError("--query cannot be RGB (vis): the gallery is RGB")
        if any(m is modality for m, _ in out):
            raise ReidError(f"--query gives {modality.value} twice")
        where = f"--query {modality.value}={shorten(value, 120)}"
        if modality.is_image:
            check_image_file(value, where)
        else:
            value = check_text(value, f"--query {modality.value}")
        out.append((modality, value))
    if not out:
        raise ReidError("give at least one --query MODALITY=VALUE")
    return out


def cache_dir() -> Path | None:
    """`$OMNIREID_SEARCH_CACHE` (empty: no cache), else ~/.cache/omnireid/search."""
    value = os.environ.get(CACHE_ENV)
    if value is None:
        return Path.home() / ".cache" / "omnireid" / "search"
    return Path(value).expanduser() if value.strip() else None


def folder_index(
    model: Any, uri: str, gallery: Path, cache: Path | None, scratch: Path | None = None
) -> tuple[GalleryIndex, bool]:
    """The gallery index of a plain folder for this model, and whether the cache held it.

    Cached under `cache/<weights digest, folder, listing>`; without a cache it is built in
    `scratch` (a folder the caller removes)."""
    base = gallery_folder(Path(gallery).resolve())
    rel = [p.relative_to(base).as_posix() for p in gallery_files(base)]
    ident = f"{FORMAT_VERSION}\0{weights_digest(model, uri)}\0{base}\0{listing_digest(base, rel)}"
    key = hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    if cache is None:
        if scratch is None:
            raise ReidError("a search without a cache needs a scratch folder")
        out = scratch / key
    else:
        out = cache / key
    index, what = build_index(model, uri, base, out, progress=False)
    return index, what == "up to date"


def embed_query(model: Any, query: list[tuple[Modality, str]]) -> np.ndarray:
    return embed_rows(model, query_rows(query))


def embed_rows(model: Any, rows: list[dict[str, Any]]) -> np.ndarray:
    """The fused embedding of pyfunc input rows sharing one query id."""
    if not rows:
        raise DataError("the query has no items")
    return features(model.predict(pd.DataFrame(rows)))[0]


def query_rows(query: list[tuple[Modality, str]]) -> list[dict[str, Any]]:
    """Pyfunc input rows of one query (`path` for images, `text` for the caption)."""
    rows = []
    for modality, value in query:
        kind = "text" if modality is Modality.TEXT else "path"
        rows.append({"query_id": "q", "modality": modality.value, kind: value})
    return rows


def rank_index(
    index: GalleryIndex, vector: np.ndarray, top: int, kind: str = "exact"
) -> list[tuple[int, Match]]:
    """The `top` (row, match) pairs of a gallery index for one query vector."""
    rows, scores = index.search(vector, top, kind)
    out: list[tuple[int, Match]] = []
    for row, score in zip(rows[0].tolist(), scores[0].tolist(), strict=True):
        if row < 0:  # faiss pads with -1 when it finds fewer than `top`
            continue
        m = Match(len(out) + 1, float(score), index.paths[row], index.identity(row))
        out.append((row, m))
    return out


def search(
    model: Any,
    uri: str,
    query: list[tuple[Modality, str]],
    top: int = 10,
    *,
    index_dir: Path | None = None,
    gallery: Path | None = None,
    kind: str = "exact",
    cache: Path | None = None,
) -> tuple[list[Match], bool]:
    """The `top` gallery images most similar to the fused query, from the index `index_dir`
    (made by this model; refused otherwise) or the folder `gallery`; and whether the gallery's
    embeddings were already there (always for an index). Paths are relative to the index's
    gallery folder, or to `gallery` as given (`vis/...` for a dataset ROOT)."""
    import tempfile

    if (gallery is None) == (index_dir is None):
        raise ReidError("give --gallery DIR or --index INDEX (one of them)")
    with tempfile.TemporaryDirectory(prefix="omnireid-search-") as scratch:
        if index_dir is not None:
            index, cached = open_index(index_dir), True
            index.check_model(model_identity(model, uri))
        else:
            assert gallery is not None
            index, cached = folder_index(model, uri, gallery, cache, Path(scratch))
        matches = [m for _, m in rank_index(index, embed_query(model, query), top, kind)]
    if gallery is not None:  # paths as the user sees them: relative to the folder given
        inner = gallery_folder(Path(gallery).resolve()).relative_to(Path(gallery).resolve())
        for m in matches:
            m.path = (inner / m.path).as_posix()
    return matches, cached
