"""The objective's plan of one batch, made on the host from the batch's modality mask.

Which views a batch has, which samples each holds, where each fusion row reads its features,
which rows the ID loss sees and which pairs of views SDM aligns: all of it follows from the mask
alone, which the loader made on the host. Building it there, in numpy, and copying it to the
device as one tensor keeps the training step free of host synchronisation (no `nonzero`, no
boolean-mask indexing, no reading of device values) and makes every view's work one batched op.

Views, in order: the RGB view `vis`, every combination of the query modalities present (singles
first), then the grey pass `vis_grey` when the objective has one. A query view aligns with the
RGB view, except a view of infrared and/or sketch alone, which aligns with the grey pass when
there is one; the grey pass aligns with the RGB view.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from reid_core.modality import ALL_MODALITIES, Modality, set_key

GALLERY = Modality.VIS
GREY_VIEW = f"{GALLERY.value}_grey"
# query modalities that carry no colour: views made of these alone align with the grey pass
COLOURLESS = frozenset({Modality.NIR, Modality.SK})
SLOTS = len(ALL_MODALITIES)


@dataclass(frozen=True)
class View:
    name: str
    combo: tuple[Modality, ...]  # the modalities that select its rows and are fused
    colourless: bool = False  # a grey pass: no colour (model.head.colour_dims)


def query_combinations(present: list[Modality]) -> list[tuple[Modality, ...]]:
    """Every non-empty combination of the query-side modalities present, singles first."""
    query = [m for m in ALL_MODALITIES if m in present and m is not GALLERY]
    return [c for r in range(1, len(query) + 1) for c in itertools.combinations(query, r)]


@dataclass
class Plan:
    """Host arrays of one batch (`R` fusion rows, `V` views, `B` samples, `T` SDM terms) and
    their device copies (`tensors`)."""

    views: list[View]
    table: list[Modality]  # the feature table's blocks, in order (the grey pass after them)
    grey: bool  # the table ends with the grey pass of the RGB rows
    rows: np.ndarray  # [R] sample of each fusion row
    owner: np.ndarray  # [R] view of each fusion row
    index: np.ndarray  # [R, 5] row of the feature table each slot reads
    present: np.ndarray  # [R, 5] slots the row's view fuses
    colourless: np.ndarray  # [R] rows of the grey pass
    id_rows: np.ndarray  # [R] rows the ID loss sees
    view_rows: np.ndarray  # [V, B] fusion row of (view, sample); R where the view lacks it
    terms: np.ndarray  # [T, 2] (query view, anchor view) of each SDM term
    tensors: dict[str, torch.Tensor] | None = None

    @property
    def term_names(self) -> list[str]:
        return [self.views[q].name for q, _ in self.terms]

    @property
    def singles(self) -> np.ndarray:
        """Views of one modality (the RGB view and its grey pass included): their ID loss is
        logged apart."""
        return np.array([i for i, v in enumerate(self.views) if len(v.combo) == 1], np.int64)

    @property
    def single_rows(self) -> np.ndarray:
        """Fusion rows of each single view."""
        return np.bincount(self.owner, minlength=len(self.views))[self.singles]

    def to(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The arrays on `device`: one host buffer, one copy, then views of it."""
        if self.tensors is None:
            parts = {
                "rows": self.rows, "owner": self.owner, "index": self.index.reshape(-1),
                "present": self.present.reshape(-1), "colourless": self.colourless,
                "id_rows": self.id_rows, "view_rows": self.view_rows.reshape(-1),
                "terms": self.terms.reshape(-1), "singles": self.singles,
                "single_rows": self.single_rows,
            }  # fmt: skip
            flat = np.concatenate([a.astype(np.int64, copy=False) for a in parts.values()])
            buffer = torch.from_numpy(flat)
            if torch.device(device).type == "cuda":
                buffer = buffer.pin_memory()
            buffer = buffer.to(device, non_blocking=True)
            out, start = {}, 0
            for name, a in parts.items():
                out[name] = buffer[start : start + a.size]
                start += a.size
            r, v = len(self.rows), len(self.views)
            out["index"] = out["index"].view(r, SLOTS)
            out["present"] = out["present"].view(r, SLOTS).bool()
            out["colourless"], out["id_rows"] = out["colourless"].bool(), out["id_rows"].bool()
            out["view_rows"] = out["view_rows"].view(v, -1)
            out["terms"] = out["terms"].view(-1, 2)
            self.tensors = out
        return self.tensors


def _views(mask: np.ndarray, grey: bool) -> list[View]:
    present = [m for m in ALL_MODALITIES if mask[:, m.column].any()]
    views = [View(set_key(c), c) for c in [(GALLERY,), *query_combinations(present)]]
    if grey and mask[:, GALLERY.column].any():
        views.append(View(GREY_VIEW, (GALLERY,), colourless=True))
    return views


def anchor_of(view: View, grey: bool) -> str:
    """The view `view` aligns with: the grey pass for infrared/sketch-only views when there is
    one, else the RGB view."""
    if grey and not view.colourless and set(view.combo) <= COLOURLESS:
        return GREY_VIEW
    return GALLERY.value


def make_plan(mask: np.ndarray, grey: bool, id_views: str) -> Plan:
    """The plan of a batch whose modality mask is `mask` `[B, 5]` (host). `grey`: the objective
    encodes a grey pass of the RGB images; `id_views`: `all` or `gallery` (`loss.id.views`)."""
    mask = np.asarray(mask, dtype=bool)
    b = mask.shape[0]
    table = [m for m in ALL_MODALITIES if mask[:, m.column].any()]
    offsets, start = {}, 0
    for m in table:
        offsets[m.column] = start
        start += int(mask[:, m.column].sum())
    grey_offset = start  # the grey pass: the RGB rows again
    rank = np.cumsum(mask, axis=0) - 1  # [B, 5] a sample's row among those holding the modality
    views = [v for v in _views(mask, grey) if mask[:, [m.column for m in v.combo]].all(1).any()]
    rows, owner, index, present = [], [], [], []
    for i, view in enumerate(views):
        cols = [m.column for m in view.combo]
        sel = np.flatnonzero(mask[:, cols].all(axis=1))
        idx = np.zeros((len(sel), SLOTS), dtype=np.int64)
        for c in cols:
            base = grey_offset if view.colourless else offsets[c]
            idx[:, c] = base + rank[sel, c]
        pres = np.zeros((len(sel), SLOTS), dtype=bool)
        pres[:, cols] = True
        rows.append(sel)
        owner.append(np.full(len(sel), i))
        index.append(idx)
        present.append(pres)
    owner_all = np.concatenate(owner)
    gallery_views = [i for i, v in enumerate(views) if v.combo == (GALLERY,)]
    id_rows = np.ones_like(owner_all, dtype=bool)
    if id_views == "gallery":
        id_rows = np.isin(owner_all, gallery_views)
    rows_all = np.concatenate(rows)
    view_rows = np.full((len(views), b), len(rows_all), dtype=np.int64)
    view_rows[owner_all, rows_all] = np.arange(len(rows_all))
    names = {v.name: i for i, v in enumerate(views)}
    terms = np.array(
        [(i, names[anchor_of(v, grey)]) for i, v in enumerate(views) if i],
        dtype=np.int64,
    ).reshape(-1, 2)
    return Plan(
        views,
        table,
        grey and any(v.colourless for v in views),
        rows_all,
        owner_all,
        np.concatenate(index),
        np.concatenate(present),
        np.array([views[o].colourless for o in owner_all], dtype=bool),
        id_rows,
        view_rows,
        terms,
    )
