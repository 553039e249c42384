"""The index of a dataset tree: paths, identities, captions and the evaluation file, never pixels.

Layout: `ROOT/{vis,nir,sk,cp}/<4-digit id>/<file>`; captions in `ROOT/text_annos.json` (seed) or
`ROOT/train_annos.json` (ORBench); evaluation file `ROOT/test_gallery_and_queries.json`.
`build_index` scans with `os.scandir` (no image is opened), memoizes per process and caches on
disk (`OMNIREID_CACHE`), both keyed by a signature of folder and annotation mtimes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reid_core.data.captions import ORBENCH_CAPTIONS, SEED_CAPTIONS, caption_file, read_captions
from reid_core.data.evalfile import (
    EVAL_FILE,
    MAX_PID,
    MAX_PID_DIGITS,
    is_image_name,
    parse_eval_file,
    parse_identity_folder,
    protocol_from_json,
    protocol_to_json,
    read_eval_bytes,
)
from reid_core.data.protocol import Protocol
from reid_core.errors import DataError
from reid_core.fileio import atomic_path
from reid_core.modality import IMAGE_MODALITIES, Modality
from reid_core.safeio import check_path_length
from reid_core.safeio import read_json as safeio_read_json

CACHE_ENV = "OMNIREID_CACHE"
_CACHE_VERSION = 1
_MEMO: dict[tuple[str, str], DatasetIndex] = {}


@dataclass(frozen=True)
class DatasetIndex:
    """`images[m][pid]`: sorted paths relative to `root` (POSIX separators) of modality `m`;
    `captions`: caption per RGB path; `eval_protocol`: the parsed evaluation file, if any."""

    root: Path
    images: Mapping[Modality, Mapping[int, tuple[str, ...]]]
    captions: Mapping[str, str]
    caption_file: str | None = None
    eval_protocol: Protocol | None = None
    missing_folders: tuple[Modality, ...] = ()
    digest: str = ""
    warnings: tuple[str, ...] = field(default=())

    def pids(self, modality: Modality = Modality.VIS) -> list[int]:
        """Identities with at least one image of `modality` (the gallery modality by default)."""
        if modality is Modality.TEXT:
            return sorted(pid for pid in self.pids() if self.captions_of(pid))
        return sorted(pid for pid, paths in self.images.get(modality, {}).items() if paths)

    def paths(self, modality: Modality, pid: int) -> tuple[str, ...]:
        return self.images.get(modality, {}).get(pid, ())

    def all_pids(self) -> list[int]:
        """Identities with an image of any modality."""
        return sorted({pid for by_pid in self.images.values() for pid in by_pid})

    def num_images(self, modality: Modality) -> int:
        return sum(len(p) for p in self.images.get(modality, {}).values())

    def captions_of(self, pid: int) -> tuple[tuple[str, str], ...]:
        """`(rgb_path, caption)` for the captioned RGB images of `pid`, in path order."""
        return tuple(
            (p, self.captions[p]) for p in self.paths(Modality.VIS, pid) if p in self.captions
        )

    def has(self, modality: Modality, pid: int) -> bool:
        """Whether `pid` has at least one item of `modality` (a caption for text)."""
        if modality is Modality.TEXT:
            return any(p in self.captions for p in self.paths(Modality.VIS, pid))
        return bool(self.paths(modality, pid))

    def abspath(self, rel: str) -> Path:
        return self.root / rel


# ---------------------------------------------------------------------------------------- scan
def _check_root(root: str | Path) -> Path:
    check_path_length(root, "dataset ROOT", DataError)
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"{path}: dataset ROOT does not exist")
    if not path.is_dir():
        raise DataError(f"{path}: dataset ROOT is a file, expected a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise DataError(f"{path}: dataset ROOT is not readable")
    return path.resolve()


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError as exc:
        raise DataError(f"{path}: cannot list folder ({exc.strerror or exc})") from None


def _inside(root: Path, entry: os.DirEntry[str] | Path) -> bool:
    """Whether a symlinked entry's target stays inside ROOT (`is_symlink` costs no system call
    on a scandir entry, so only symlinks pay for the resolve)."""
    return Path(os.path.realpath(entry)).is_relative_to(root)


def _leaves_root(root: Path, entry: os.DirEntry[str]) -> bool:
    return entry.is_symlink() and not _inside(root, entry)


def _identity_dirs(folder: Path, notes: list[str]) -> list[tuple[int, str]]:
    """`(pid, folder name)` of the identity folders; a non-numeric folder is a DataError."""
    out: dict[int, str] = {}
    stray = outside = 0
    for entry in _scandir(folder):
        if entry.name.startswith("."):
            continue
        if _leaves_root(folder.parent, entry):
            outside += 1
            continue
        if not entry.is_dir():
            stray += 1
            continue
        pid = parse_identity_folder(entry.name)
        if pid is None:
            raise DataError(
                f"{folder / entry.name}: identity folder name must be a number of at most "
                f"{MAX_PID_DIGITS} digits (identities are 0..{MAX_PID})"
            )
        if pid in out:
            raise DataError(
                f"{folder}: folders {out[pid]!r} and {entry.name!r} are both identity {pid}"
            )
        out[pid] = entry.name
    if stray:
        notes.append(f"{folder.name}/: {stray} file(s) outside identity folders ignored")
    if outside:
        notes.append(f"{folder.name}/: {outside} symlink(s) leading outside ROOT ignored")
    return sorted(out.items())


def _scan_modality(folder: Path, notes: list[str]) -> dict[int, tuple[str, ...]]:
    images: dict[int, tuple[str, ...]] = {}
    skipped = empty = outside = 0
    for pid, name in _identity_dirs(folder, notes):
        prefix = f"{folder.name}/{name}/"
        files = []
        for entry in _scandir(folder / name):
            if _leaves_root(folder.parent, entry):
                outside += 1
            elif is_image_name(entry.name) and entry.is_file():
                files.append(prefix + entry.name)
            elif not entry.name.startswith("."):
                skipped += 1
        if files:
            images[pid] = tuple(sorted(files))
        else:
            empty += 1
    if skipped:
        notes.append(f"{folder.name}/: {skipped} non-image entries ignored")
    if empty:
        notes.append(f"{folder.name}/: {empty} identity folder(s) without images ignored")
    if outside:
        notes.append(f"{folder.name}/: {outside} symlinked image(s) leading outside ROOT ignored")
    return images


def _scan(root: Path, notes: list[str]):
    if not (root / Modality.VIS.value).is_dir():
        raise DataError(f"{root / Modality.VIS.value}: gallery (RGB) folder is missing")
    images: dict[Modality, dict[int, tuple[str, ...]]] = {}
    missing = []
    for m in IMAGE_MODALITIES:
        folder = root / m.value
        if folder.is_symlink() and not _inside(root, folder):
            raise DataError(f"{folder}: a symlink leading outside ROOT (paths stay inside ROOT)")
        if folder.is_dir():
            images[m] = _scan_modality(folder, notes)
        else:
            missing.append(m)
            notes.append(f"{m.value}/ folder is missing: no identity has {m.value} images")
    return images, tuple(missing)


# ------------------------------------------------------------------------------- build + cache
def _known(images: Mapping[Modality, Mapping[int, tuple[str, ...]]]) -> dict[str, Modality]:
    return {p: m for m, by_pid in images.items() for paths in by_pid.values() for p in paths}


def _digest(images, captions: Mapping[str, str], eval_bytes: bytes | None) -> str:
    h = hashlib.sha256()
    for m in sorted(images, key=lambda x: x.value):
        for pid in sorted(images[m]):
            h.update(f"{m.value}\0{pid}\0".encode())
            h.update("\0".join(images[m][pid]).encode("utf-8", "surrogateescape"))
    for path in sorted(captions):
        h.update(f"\1{path}\0{captions[path]}".encode("utf-8", "surrogateescape"))
    h.update(b"\2" + (eval_bytes if eval_bytes is not None else b""))
    return h.hexdigest()[:16]


def _build(root: Path) -> DatasetIndex:
    notes: list[str] = []
    images, missing = _scan(root, notes)
    known = _known(images)
    cap_path = caption_file(root, notes)
    captions = read_captions(cap_path, root, known, notes) if cap_path else {}
    eval_path = root / EVAL_FILE
    # read once: the digest covers exactly the bytes parsed
    eval_bytes = read_eval_bytes(eval_path, root) if eval_path.exists() else None
    protocol = (
        parse_eval_file(eval_path, root, known, eval_bytes) if eval_bytes is not None else None
    )
    return DatasetIndex(
        root=root,
        images=images,
        captions=captions,
        caption_file=cap_path.name if cap_path else None,
        eval_protocol=protocol,
        missing_folders=missing,
        digest=_digest(images, captions, eval_bytes),
        warnings=tuple(notes),
    )


def _signature(root: Path) -> str:
    """Cheap fingerprint: mtimes of ROOT, the modality and identity folders, annotation files."""
    h = hashlib.sha256(f"v{_CACHE_VERSION}\0{root}".encode("utf-8", "surrogateescape"))
    h.update(str(root.stat().st_mtime_ns).encode())
    for m in IMAGE_MODALITIES:
        folder = root / m.value
        if not folder.is_dir():
            h.update(f"\0{m.value}:-".encode())
            continue
        h.update(f"\0{m.value}:{folder.stat().st_mtime_ns}".encode())
        for entry in sorted(_scandir(folder), key=lambda e: e.name):
            if entry.is_dir():
                h.update(
                    f"\0{entry.name}:{entry.stat().st_mtime_ns}".encode("utf-8", "surrogateescape")
                )
    for name in (SEED_CAPTIONS, ORBENCH_CAPTIONS, EVAL_FILE):
        path = root / name
        st = path.stat() if path.exists() else None
        h.update(f"\0{name}:{st.st_mtime_ns if st else '-'}:{st.st_size if st else '-'}".encode())
    return h.hexdigest()[:32]


def cache_dir() -> Path | None:
    """The on-disk index cache: `$OMNIREID_CACHE` (empty: none), else ~/.cache/omnireid/index."""
    value = os.environ.get(CACHE_ENV)
    if value is None:
        return Path.home() / ".cache" / "omnireid" / "index"
    return Path(value).expanduser() if value.strip() else None


def _cache_file(directory: Path, root: Path) -> Path:
    key = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return directory / f"{key}.json"


def _to_json(index: DatasetIndex, signature: str) -> dict[str, Any]:
    return {
        "version": _CACHE_VERSION,
        "signature": signature,
        "root": str(index.root),
        "images": {
            m.value: {str(p): list(v) for p, v in d.items()} for m, d in index.images.items()
        },
        "captions": dict(index.captions),
        "caption_file": index.caption_file,
        "eval_protocol": protocol_to_json(index.eval_protocol) if index.eval_protocol else None,
        "missing_folders": [m.value for m in index.missing_folders],
        "digest": index.digest,
        "warnings": list(index.warnings),
    }


def _from_json(data: Mapping[str, Any], root: Path) -> DatasetIndex:
    images = {
        Modality(m): {int(p): tuple(v) for p, v in d.items()} for m, d in data["images"].items()
    }
    protocol = data["eval_protocol"]
    return DatasetIndex(
        root=root,
        images=images,
        captions=dict(data["captions"]),
        caption_file=data["caption_file"],
        eval_protocol=protocol_from_json(protocol) if protocol else None,
        missing_folders=tuple(Modality(m) for m in data["missing_folders"]),
        digest=str(data["digest"]),
        warnings=tuple(data["warnings"]),
    )


def _load_cached(path: Path, root: Path, signature: str) -> DatasetIndex | None:
    """The cached index when the file exists and matches `signature`; a stale or unreadable cache
    file is rebuilt (it is derived data), never trusted."""
    try:
        data = safeio_read_json(path, DataError, what="an index cache file")
        if data.get("version") != _CACHE_VERSION or data.get("signature") != signature:
            return None
        return _from_json(data, root)
    except (DataError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _store(path: Path, index: DatasetIndex, signature: str) -> str | None:
    """Write the cache atomically; returns a warning when it cannot be written."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(_to_json(index, signature)), encoding="utf-8")
    except OSError as exc:
        return f"index cache not written to {path.parent} ({exc.strerror or exc})"
    return None


def build_index(root: str | Path, *, cache: bool = True) -> DatasetIndex:
    """Index `root` (see the module docstring); user mistakes raise a one-line DataError.

    With `cache`, the index is reused while the signature (folder and annotation mtimes) holds:
    from this process's memo, else from `$OMNIREID_CACHE` on disk. `cache=False` bypasses both.
    """
    path = _check_root(root)
    if not cache:
        return _build(path)
    signature = _signature(path)
    key = (str(path), signature)
    if key in _MEMO:
        return _MEMO[key]
    directory = cache_dir()
    cached = _load_cached(_cache_file(directory, path), path, signature) if directory else None
    index = cached or _build(path)
    if directory is not None and cached is None:
        note = _store(_cache_file(directory, path), index, signature)
        if note:
            index = replace(index, warnings=(*index.warnings, note))
    for stale in [k for k in _MEMO if k[0] == key[0]]:
        del _MEMO[stale]  # one entry per ROOT: a long-lived worker must not pile up old trees
    _MEMO[key] = index
    return index


def clear_index_memo() -> None:
    """Forget the per-process memo (the disk cache stays)."""
    _MEMO.clear()
