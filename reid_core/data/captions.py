"""The caption files of a dataset ROOT: the seed's `text_annos.json` (`file_path`, `caption`)
or ORBench's `train_annos.json` (the same plus a 1-based `id` and an optional `split`), every
entry validated against the indexed RGB images."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reid_core.data.evalfile import check_image_path, parse_pid, read_json, safe_relpath
from reid_core.errors import DataError
from reid_core.modality import Modality
from reid_core.safeio import quote

SEED_CAPTIONS = "text_annos.json"
ORBENCH_CAPTIONS = "train_annos.json"


def caption_file(root: Path, notes: list[str]) -> Path | None:
    """The caption file of `root` (ORBench's when both exist, with a note), or None."""
    seed, orbench = root / SEED_CAPTIONS, root / ORBENCH_CAPTIONS
    if orbench.exists() and seed.exists():
        notes.append(f"both {ORBENCH_CAPTIONS} and {SEED_CAPTIONS} exist: using {ORBENCH_CAPTIONS}")
    for path in (orbench, seed):
        if path.exists():
            return path
    return None


def _text_field(entry: Mapping[str, Any], key: str, where: str) -> str:
    if key not in entry:
        raise DataError(f"{where}: lacks field {key!r}")
    value = entry[key]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field {key!r} must be a non-empty string (got {quote(value)})")
    return value


def _check_orbench_fields(entry: Mapping[str, Any], rel: str, where: str) -> bool:
    """Validate `id` (1-based) and the optional `split`; True when `id` matches the folder."""
    if "id" not in entry:
        raise DataError(f"{where}: lacks field 'id'")
    pid = parse_pid(entry["id"], f"{where} field 'id'")
    if "split" in entry and not isinstance(entry["split"], str):
        raise DataError(f"{where}: field 'split' must be a string (got {quote(entry['split'])})")
    return pid == int(rel.split("/")[1])


def read_captions(path: Path, root: Path, known: Mapping[str, Modality], notes: list[str]):
    """Caption per RGB path from a seed or ORBench annotation file, every entry validated."""
    data = read_json(path, root)
    if not isinstance(data, list):
        raise DataError(f"{path}: must be a JSON list of entries, got {type(data).__name__}")
    orbench = path.name == ORBENCH_CAPTIONS
    captions: dict[str, str] = {}
    first: dict[str, int] = {}
    id_mismatch = 0
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: must be an object, got {type(entry).__name__}")
        rel = safe_relpath(_text_field(entry, "file_path", where), f"{where} field 'file_path'")
        caption = _text_field(entry, "caption", where)
        if rel in first:
            raise DataError(f"{where}: duplicate entry for {rel!r} (first at entry {first[rel]})")
        check_image_path(root, rel, Modality.VIS, known, f"{where} field 'file_path'")
        if orbench and not _check_orbench_fields(entry, rel, where):
            id_mismatch += 1
        first[rel] = i
        captions[rel] = caption
    if id_mismatch:
        notes.append(f"{path.name}: {id_mismatch} entries whose 'id' differs from their folder")
    return captions
