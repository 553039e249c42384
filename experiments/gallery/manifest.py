"""The manifest of a gallery index, kept in its `index.json`: row count, embedding size and dtype,
and the size and sha256 of every file (`paths.json`, `identities.npy`, `embeddings.npy`, each
faiss index once built). `reid index build` writes it; opening an index checks it, so a
truncated, swapped or edited index is refused in one line instead of failing mid-search.

What is checked when (a 1M-row gallery's embeddings are 2 GiB; hashing them takes seconds):
every open checks index.json, each file's size, the row count and shapes, and the checksums of
`paths.json` and `identities.npy` (read whole anyway); `verify=True` (`reid serve` at start, and
`reid index build`) hashes `embeddings.npy` too; a faiss file is hashed before faiss reads it.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from reid_core.data.evalfile import safe_relpath
from reid_core.errors import DataError, ReidError, printable
from reid_core.safeio import parse_json, quote, read_bytes, read_json

META_FILE = "index.json"
DATA_FILES = ("paths.json", "identities.npy", "embeddings.npy")
META_MAX_BYTES = 1 << 20
MAX_ROWS = 1 << 31
MAX_DIM = 1 << 16


class GalleryIndexError(ReidError):
    """An index that is missing, unfinished, corrupt, of another format, or made by another
    model."""


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """A manifest entry: the file's size and sha256."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def read_meta(folder: Path) -> dict[str, Any] | None:
    """`index.json`, bounded (`reid_core.safeio`); None when there is none."""
    path = folder / META_FILE
    if not os.path.lexists(path):
        return None
    meta = read_json(path, GalleryIndexError, limit=META_MAX_BYTES, what="an index.json")
    if not isinstance(meta, dict):
        raise GalleryIndexError(f"{path}: not an index description (not a JSON object)")
    return meta


def _int(meta: dict[str, Any], key: str, low: int, high: int, where: Path) -> int:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise GalleryIndexError(
            f"{where}: {key} must be an integer in {low}..{high} (got {quote(value)}); rebuild it"
        )
    return value


def check_meta(meta: dict[str, Any], folder: Path, complete: bool) -> None:
    """The fields a reader relies on, typed and in range; a complete index has its manifest."""
    where = folder / META_FILE
    _int(meta, "count", 1, MAX_ROWS, where)
    _int(meta, "chunk_rows", 1, MAX_ROWS, where)
    model = meta.get("model")
    if not (isinstance(model, dict) and isinstance(model.get("weights_digest"), str)):
        raise GalleryIndexError(f"{where}: names no model (weights_digest); rebuild it")
    if not isinstance(meta.get("gallery"), str):
        raise GalleryIndexError(f"{where}: names no gallery folder; rebuild it")
    if not complete:
        return
    _int(meta, "dim", 1, MAX_DIM, where)
    files = meta.get("files")
    for name in DATA_FILES:
        entry = files.get(name) if isinstance(files, dict) else None
        if not _good_entry(entry):
            raise GalleryIndexError(f"{where}: the manifest lacks {name}; rebuild the index")


def _good_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("bytes"), int)
        and isinstance(entry.get("sha256"), str)
    )


def check_file(folder: Path, name: str, entry: dict[str, Any], hashed: bool) -> Path:
    """The file `name` of the index, of the manifest's size (and sha256 when `hashed`)."""
    path = folder / name
    try:
        st = os.stat(path)
    except OSError as exc:
        raise GalleryIndexError(
            f"{printable(path)}: {exc.strerror or exc}; the index is incomplete, rebuild it"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise GalleryIndexError(f"{printable(path)}: not a regular file; rebuild the index")
    if st.st_size != entry["bytes"]:
        raise GalleryIndexError(
            f"{printable(path)}: {st.st_size} bytes where the manifest says {entry['bytes']} "
            "(truncated or changed); rebuild the index"
        )
    if hashed and sha256_file(path) != entry["sha256"]:
        raise _changed(path)
    return path


def _changed(path: Path) -> GalleryIndexError:
    return GalleryIndexError(
        f"{printable(path)}: checksum differs from the manifest (the file changed after the "
        "build); rebuild the index"
    )


def _verified_bytes(folder: Path, name: str, entry: dict[str, Any]) -> bytes:
    path = check_file(folder, name, entry, hashed=False)
    data = read_bytes(path, entry["bytes"], GalleryIndexError, what="its manifest entry")
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise _changed(path)
    return data


def read_paths(folder: Path, meta: dict[str, Any]) -> list[str]:
    """`paths.json`: `count` gallery paths, each relative and inside the gallery folder."""
    path = folder / "paths.json"
    data = _verified_bytes(folder, "paths.json", meta["files"]["paths.json"])
    paths = parse_json(data, printable(path), GalleryIndexError)
    if not isinstance(paths, list) or len(paths) != meta["count"]:
        got = len(paths) if isinstance(paths, list) else type(paths).__name__
        raise GalleryIndexError(
            f"{printable(path)}: {got} paths for {meta['count']} rows; rebuild the index"
        )
    try:
        return [safe_relpath(p, f"{printable(path)} entry {i}") for i, p in enumerate(paths)]
    except DataError as exc:
        raise GalleryIndexError(str(exc)) from None


def _array(path: Path, source: Any, mmap: bool) -> np.ndarray:
    try:
        if mmap:
            return np.load(source, mmap_mode="r", allow_pickle=False)
        return np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise GalleryIndexError(
            f"{printable(path)}: not a readable array ({printable(first)[:120]}); rebuild the index"
        ) from None


def _check_array(path: Path, arr: np.ndarray, shape: tuple[int, ...], dtype: str) -> None:
    if arr.shape != shape or arr.dtype != np.dtype(dtype):
        raise GalleryIndexError(
            f"{printable(path)}: array {arr.dtype}{list(arr.shape)} where the manifest says "
            f"{dtype}{list(shape)}; rebuild the index"
        )


def read_identities(folder: Path, meta: dict[str, Any]) -> np.ndarray:
    """`identities.npy`: `count` int64 identities."""
    path = folder / "identities.npy"
    data = _verified_bytes(folder, "identities.npy", meta["files"]["identities.npy"])
    ids = _array(path, io.BytesIO(data), mmap=False)
    _check_array(path, ids, (meta["count"],), "int64")
    return ids


def open_embeddings(folder: Path, meta: dict[str, Any], verify: bool) -> np.ndarray:
    """`embeddings.npy`, memory-mapped: `[count, dim]` float32 (hashed when `verify`)."""
    path = check_file(folder, "embeddings.npy", meta["files"]["embeddings.npy"], hashed=verify)
    emb = _array(path, path, mmap=True)
    _check_array(path, emb, (meta["count"], meta["dim"]), "float32")
    return emb


def checked_faiss_file(folder: Path, meta: dict[str, Any], name: str) -> Path | None:
    """The faiss file `name` when the manifest lists it and it matches (hashed: faiss trusts
    the bytes it reads); None when there is none yet; refused when unlisted or changed."""
    path = folder / name
    entry = (meta.get("files") or {}).get(name)
    if not os.path.lexists(path):
        return None
    if not _good_entry(entry):
        raise GalleryIndexError(
            f"{printable(path)}: not in the index's manifest; delete it (it is rebuilt on use)"
        )
    return check_file(folder, name, entry, hashed=True)
