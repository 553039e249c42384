"""The index of a dataset tree: paths, identities, captions and the evaluation file, never pixels.

Layout: `ROOT/{vis,nir,sk,cp}/<4-digit id>/<file>`; captions in `ROOT/text_annos.json` (seed) or
`ROOT/train_annos.json` (ORBench); evaluation file `ROOT/test_gallery_and_queries.json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reid_core.data.protocol import Protocol
from reid_core.modality import Modality


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
        return sorted(pid for pid, paths in self.images.get(modality, {}).items() if paths)

    def paths(self, modality: Modality, pid: int) -> tuple[str, ...]:
        return self.images.get(modality, {}).get(pid, ())
