"""Evaluation protocols: an RGB gallery and query sets whose queries combine other modalities.

A protocol comes from ORBench's evaluation file (`name="file"`, sets in the file's order and
naming) or is generated for a split (`unordered15`: the 15 unordered combinations of
{nir, cp, sk, text}; `ordered32`: each combination once per choice of primary modality).
"""

from __future__ import annotations

from dataclasses import dataclass

from reid_core.modality import Modality, set_key


@dataclass(frozen=True)
class QueryItem:
    """One part of a query: an image path relative to ROOT, or a caption for `Modality.TEXT`."""

    modality: Modality
    value: str


@dataclass(frozen=True)
class Query:
    pid: int
    items: tuple[QueryItem, ...]


@dataclass(frozen=True)
class QuerySet:
    """Queries made of the same modalities; `modalities` keeps the order (first = primary)."""

    modalities: tuple[Modality, ...]
    queries: tuple[Query, ...]

    @property
    def key(self) -> str:
        """Metric-name key, e.g. `nir_text` (DESIGN.md, "Metric names")."""
        return set_key(self.modalities)

    @property
    def size(self) -> int:
        return len(self.modalities)


@dataclass(frozen=True)
class Protocol:
    """`name`: `file`, `unordered15` or `ordered32`; gallery rows are `(pid, path)`."""

    name: str
    gallery: tuple[tuple[int, str], ...]
    sets: tuple[QuerySet, ...]

    def pids(self) -> set[int]:
        out = {pid for pid, _ in self.gallery}
        for qs in self.sets:
            out.update(q.pid for q in qs.queries)
        return out
