"""ORBench's evaluation file `ROOT/test_gallery_and_queries.json` and the path rules shared with
the annotation readers.

Format: `{"RGB_GALLERY": [[pid, "vis/0001/x.jpg"], ...], "<SET>": [[pid, item, ...], ...]}`; a set
name such as `TEXT+NIR+CP` lists its modalities in order (the first is the primary); an item
ending in an image suffix is a path relative to ROOT, anything else is a caption.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from reid_core.data.protocol import Protocol, Query, QueryItem, QuerySet
from reid_core.errors import DataError, ReidError, printable
from reid_core.modality import IMAGE_SUFFIXES, Modality, parse_set_name
from reid_core.safeio import JSON_MAX_BYTES, check_path_length, parse_json, quote, read_bytes
from reid_core.safeio import read_json as safeio_read_json

EVAL_FILE = "test_gallery_and_queries.json"
GALLERY_KEY = "RGB_GALLERY"
MAX_PID_DIGITS = 9  # identities fit int32 and int64 tensors alike (DESIGN: 4-digit folders)
MAX_PID = 10**MAX_PID_DIGITS - 1


def is_image_name(name: str) -> bool:
    """True when `name` ends in one of the image suffixes (any case)."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def safe_relpath(raw: object, where: str) -> str:
    """Normalise an annotation path to POSIX form relative to ROOT; `../x` and absolute paths
    (POSIX or Windows), a NUL character and over-long paths (`reid_core.safeio`) are rejected,
    `where` names the file and entry in the message."""
    if not isinstance(raw, str) or not raw.strip():
        raise DataError(f"{where}: path must be a non-empty string (got {quote(raw)})")
    if "\0" in raw:
        raise DataError(f"{where}: path {quote(raw)} holds a NUL character")
    check_path_length(raw, where, DataError)
    text = raw.replace("\\", "/")
    if text.startswith("/") or PureWindowsPath(raw).drive or PurePosixPath(text).is_absolute():
        raise DataError(
            f"{where}: absolute path {quote(raw)} is not allowed (paths are relative to ROOT)"
        )
    parts = [p for p in PurePosixPath(text).parts if p != "."]
    if ".." in parts:
        raise DataError(f"{where}: path {quote(raw)} leaves ROOT")
    if not parts:
        raise DataError(f"{where}: path {quote(raw)} names no file")
    return "/".join(parts)


def check_image_path(
    root: Path, rel: str, modality: Modality, known: Mapping[str, Modality], where: str
) -> None:
    """`rel` must be an indexed image of `modality` under ROOT; the message says what fails."""
    found = known.get(rel)
    if found is modality:
        return
    if found is not None:
        raise DataError(f"{where}: {rel!r} is a {found.value} image, expected {modality.value}")
    if not (root / rel).exists():
        raise DataError(f"{where}: file {rel!r} does not exist under {root}")
    if not Path(os.path.realpath(root / rel)).is_relative_to(Path(os.path.realpath(root))):
        raise DataError(f"{where}: {rel!r} leads outside ROOT through a symlink")
    raise DataError(
        f"{where}: {rel!r} is not an image in {modality.value}/<identity>/ (see docs/DATA.md)"
    )


def read_eval_bytes(path: Path, root: Path) -> bytes:
    """The bytes of an annotation or evaluation file, bounded as `read_json` reads them."""
    return read_bytes(path, JSON_MAX_BYTES, DataError, root=root, what="an annotation file")


def read_json(path: Path, root: Path) -> Any:
    """Parse an annotation or evaluation file inside `root` through `reid_core.safeio`: a regular
    file of at most `JSON_MAX_BYTES`, at most `MAX_DEPTH` deep; any problem is a DataError naming
    the file (and the line, for invalid JSON)."""
    return safeio_read_json(path, DataError, root=root, what="an annotation file")


def parse_pid(raw: object, where: str) -> int:
    """An identity id: an integer or a string of digits in 0..MAX_PID."""
    if isinstance(raw, bool):
        raise DataError(f"{where}: identity id must be an integer (got {quote(raw)})")
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= MAX_PID_DIGITS:
        return int(raw)
    if isinstance(raw, int) and 0 <= raw <= MAX_PID:
        return raw
    raise DataError(
        f"{where}: identity id must be an integer from 0 to {MAX_PID} (got {quote(raw)})"
    )


def parse_identity_folder(name: str) -> int | None:
    """The identity of a folder named by digits (`0007`), else None (too long a number too)."""
    if name.isascii() and name.isdigit() and len(name) <= MAX_PID_DIGITS:
        return int(name)
    return None


def _gallery(root: Path, rows: object, known: Mapping[str, Modality], src: str):
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{src}: {GALLERY_KEY} must be a non-empty list of [pid, path] rows")
    out: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        where = f"{src}: {GALLERY_KEY}[{i}]"
        if not isinstance(row, list) or len(row) != 2:
            raise DataError(f"{where}: expected [pid, path], got {quote(row)}")
        rel = safe_relpath(row[1], where)
        if not is_image_name(rel):
            raise DataError(f"{where}: {rel!r} does not end in an image suffix")
        check_image_path(root, rel, Modality.VIS, known, where)
        if rel in seen:
            raise DataError(f"{where}: {rel!r} repeats {GALLERY_KEY}[{seen[rel]}]")
        seen[rel] = i
        out.append((parse_pid(row[0], where), rel))
    return tuple(out)


def _item(root: Path, raw: object, modality: Modality, known, where: str) -> QueryItem:
    if not isinstance(raw, str) or not raw.strip():
        raise DataError(f"{where}: item must be a non-empty string (got {quote(raw)})")
    if is_image_name(raw) != modality.is_image:
        want = "an image path" if modality.is_image else "a caption"
        raise DataError(f"{where}: {modality.set_name} item must be {want}, got {quote(raw)}")
    if not modality.is_image:
        return QueryItem(modality, raw)
    rel = safe_relpath(raw, where)
    check_image_path(root, rel, modality, known, where)
    return QueryItem(modality, rel)


def _query_set(root: Path, name: str, rows: object, known, src: str) -> QuerySet:
    try:
        mods = parse_set_name(name)
    except ReidError as exc:
        raise DataError(f"{src}: set {quote(name)}: {exc}") from None
    if Modality.VIS in mods:
        raise DataError(
            f"{src}: set {quote(name)}: RGB is the gallery and cannot be part of a query"
        )
    if not isinstance(rows, list):
        raise DataError(f"{src}: set {quote(name)} must be a list of [pid, item, ...] rows")
    queries = []
    for i, row in enumerate(rows):
        where = f"{src}: {name}[{i}]"
        if not isinstance(row, list) or len(row) != len(mods) + 1:
            raise DataError(
                f"{where}: expected [pid, {len(mods)} item(s)] for {name}, got {quote(row)}"
            )
        items = tuple(
            _item(root, raw, m, known, f"{where} item {j + 1}")
            for j, (m, raw) in enumerate(zip(mods, row[1:], strict=True))
        )
        queries.append(Query(parse_pid(row[0], where), items))
    return QuerySet(mods, tuple(queries))


def parse_eval_file(
    path: Path, root: Path, known: Mapping[str, Modality], raw: bytes | None = None
) -> Protocol:
    """Parse the evaluation file into `Protocol(name="file")`, sets in the file's order.

    `known` maps every indexed image (POSIX path relative to `root`) to its modality; every path in
    the file must be one of them, of the set's modality, and inside ROOT. `raw`: the file's bytes
    when the caller read them already (through `read_eval_bytes`).
    """
    data = read_json(path, root) if raw is None else parse_json(raw, printable(path), DataError)
    src = str(path)
    if not isinstance(data, dict):
        raise DataError(f"{src}: must be a JSON object of sets, got {type(data).__name__}")
    if GALLERY_KEY not in data:
        raise DataError(f"{src}: lacks the gallery key {GALLERY_KEY!r}")
    gallery = _gallery(root, data[GALLERY_KEY], known, src)
    sets = tuple(
        _query_set(root, name, rows, known, src)
        for name, rows in data.items()
        if name != GALLERY_KEY
    )
    if not sets:
        raise DataError(f"{src}: has a gallery but no query sets")
    return Protocol(name="file", gallery=gallery, sets=sets)


def set_name(modalities: tuple[Modality, ...]) -> str:
    """The evaluation file's name of a set, e.g. `TEXT+NIR`."""
    return "+".join(m.set_name for m in modalities)


def protocol_to_json(protocol: Protocol) -> dict[str, Any]:
    """A JSON-able form of a protocol (for the index cache); `protocol_from_json` inverts it."""
    return {
        "name": protocol.name,
        "gallery": [list(row) for row in protocol.gallery],
        "sets": [
            {
                "modalities": [m.value for m in qs.modalities],
                "queries": [[q.pid, [it.value for it in q.items]] for q in qs.queries],
            }
            for qs in protocol.sets
        ],
    }


def protocol_from_json(data: Mapping[str, Any]) -> Protocol:
    """Rebuild a protocol written by `protocol_to_json`."""
    sets = []
    for s in data["sets"]:
        mods = tuple(Modality(m) for m in s["modalities"])
        queries = tuple(
            Query(int(pid), tuple(QueryItem(m, v) for m, v in zip(mods, values, strict=True)))
            for pid, values in s["queries"]
        )
        sets.append(QuerySet(mods, queries))
    gallery = tuple((int(pid), str(path)) for pid, path in data["gallery"])
    return Protocol(name=str(data["name"]), gallery=gallery, sets=tuple(sets))
