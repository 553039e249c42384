"""Challenge-aligned evaluation of a model on a protocol (DESIGN.md, "Evaluation").

Each query item is encoded once per (item, modality) and fused per set; the gallery embeds its
RGB images alone. Per set: mAP, mAP@k, mINP, R1/R5/R10; groups MM1..MM4 and `score`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import torch
from torch.utils.data import DataLoader

from reid_core.config.schema import DataConfig, EvalConfig
from reid_core.data.datasets import ImageListDataset, TolerantImageListDataset
from reid_core.data.protocol import Protocol, QuerySet
from reid_core.errors import printable
from reid_core.evaluation.metrics import (
    metric_names,
    retrieval_metrics_from_features,
    summarize,
)
from reid_core.modality import ALL_MODALITIES, Modality
from reid_core.progress import track

if TYPE_CHECKING:
    from reid_core.model import OmniReID


SIMILARITIES_PER_CHUNK = 1 << 26  # float32: 256 MiB of query x gallery scores at once


def _mask(n: int, modalities: Sequence[Modality], device: torch.device) -> torch.Tensor:
    mask = torch.zeros(n, len(ALL_MODALITIES), dtype=torch.bool, device=device)
    mask[:, [m.column for m in modalities]] = True
    return mask


class ProtocolEncoder:
    """Encodes a protocol's unique items once each; fuses per set.

    Under `data.on_bad_image: skip` an undecodable image is left out: a gallery row, or every
    query holding it. `skipped` lists those images (one stderr line each), `skipped_gallery` and
    `skipped_queries` count what was left out. Under `fail` it raises `DataError` naming it.
    """

    def __init__(
        self,
        model: OmniReID,
        root: Path,
        data_cfg: DataConfig,
        eval_cfg: EvalConfig,
        device: torch.device,
    ) -> None:
        self.model = model
        self.root = Path(root)
        self.data_cfg = data_cfg
        self.eval_cfg = eval_cfg
        self.device = device
        self.skipped: dict[str, None] = {}  # undecodable image paths, in the order met
        self.skipped_gallery = 0
        self.skipped_queries = 0

    def _skip(self, modality: Modality, value: str) -> None:
        if value not in self.skipped:
            self.skipped[value] = None
            print(
                f"skipped undecodable image {printable(value)} ({modality.value}, evaluation)",
                file=sys.stderr,
                flush=True,
            )

    def _autocast(self) -> Any:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cpu", enabled=False)

    @torch.no_grad()
    def encode_items(self, modality: Modality, values: Sequence[str]) -> torch.Tensor:
        """Per-modality features `[len(values), D]` (before fusion), in `values` order; the row
        of an image skipped as undecodable is NaN (and the image is in `skipped`)."""
        bs = self.eval_cfg.batch_size
        chunks: list[torch.Tensor] = []
        if modality is Modality.TEXT:
            batches: Any = (
                self.model.tokenize(list(values[i : i + bs])) for i in range(0, len(values), bs)
            )
            total = (len(values) + bs - 1) // bs
        else:
            skip = self.data_cfg.on_bad_image == "skip"
            kind = TolerantImageListDataset if skip else ImageListDataset
            ds = kind(self.root, list(values), modality, self.data_cfg)
            # A private generator: iterating a DataLoader draws a seed from the global torch RNG,
            # and evaluation must leave the training stream as it was (a run resumed from a
            # checkpoint saved before a later evaluation must continue identically).
            batches = DataLoader(
                ds,
                batch_size=bs,
                num_workers=self.data_cfg.num_workers,
                generator=torch.Generator(),
            )
            total = len(batches)
        d = self.model.item_dim(modality)
        start = 0
        for x in track(batches, total=total, description=f"encode {modality.value}"):
            x, ok = x if isinstance(x, list | tuple) else (x, None)
            if ok is not None and not bool(ok.all()):
                for j in (~ok).nonzero().flatten().tolist():
                    self._skip(modality, values[start + j])
                feats = torch.full((len(ok), d), float("nan"), device=self.device)
                if bool(ok.any()):
                    feats[ok.to(self.device)] = self._encode(modality, x[ok])
            else:
                feats = self._encode(modality, x)
            start += len(x)
            chunks.append(feats)
        return torch.cat(chunks) if chunks else torch.empty(0, d, device=self.device)

    def _encode(self, modality: Modality, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.model.encode_item(modality, x.to(self.device)).float()

    @torch.no_grad()
    def fuse(self, features: dict[Modality, torch.Tensor], modalities: Sequence[Modality]):
        """L2-normalised retrieval vectors of samples holding every modality in `modalities`."""
        n = next(iter(features.values())).shape[0]
        out = []
        for i in range(0, n, self.eval_cfg.batch_size):
            part = {m: features[m][i : i + self.eval_cfg.batch_size] for m in modalities}
            rows = next(iter(part.values())).shape[0]
            with self._autocast():
                mask = _mask(rows, modalities, self.device)
                out.append(self.model.retrieval_vectors(part, mask).float())
        return torch.cat(out)

    def gallery(self, protocol: Protocol) -> tuple[torch.Tensor, torch.Tensor]:
        paths = [p for _, p in protocol.gallery]
        feats = self.encode_items(Modality.VIS, paths)
        ids = torch.tensor([pid for pid, _ in protocol.gallery], dtype=torch.long)
        keep = [i for i, p in enumerate(paths) if p not in self.skipped]
        if len(keep) < len(paths):
            self.skipped_gallery += len(paths) - len(keep)
            feats, ids = feats[torch.tensor(keep, device=feats.device)], ids[keep]
        if not keep:
            return torch.empty(0, self.model.embed_dim, device=self.device), ids
        emb = self.fuse({Modality.VIS: feats}, (Modality.VIS,))
        return emb, ids

    def queries(self, protocol: Protocol) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per set, in protocol order: query embeddings and ids; each unique item encoded once."""
        row_of: dict[Modality, dict[str, int]] = {}  # item value -> its row in table[m]
        for qs in protocol.sets:
            for q in qs.queries:
                for item in q.items:
                    rows = row_of.setdefault(item.modality, {})
                    rows.setdefault(item.value, len(rows))
        table = {m: self.encode_items(m, list(row_of[m])) for m in ALL_MODALITIES if m in row_of}
        return [self._fuse_set(qs, table, row_of) for qs in protocol.sets]

    def _fuse_set(self, qs: QuerySet, table, rows_of) -> tuple[torch.Tensor, torch.Tensor]:
        queries = [
            q
            for q in qs.queries
            if not any(it.modality.is_image and it.value in self.skipped for it in q.items)
        ]
        self.skipped_queries += len(qs.queries) - len(queries)
        ids = torch.tensor([q.pid for q in queries], dtype=torch.long)
        if not queries:
            return torch.empty(0, self.model.embed_dim), ids
        feats = {}
        for pos, m in enumerate(qs.modalities):
            rows = [rows_of[m][q.items[pos].value] for q in queries]
            feats[m] = table[m][torch.tensor(rows, device=table[m].device)]
        return self.fuse(feats, qs.modalities), ids


@overload
def evaluate_protocol(
    model: OmniReID,
    root: Path,
    protocol: Protocol,
    data_cfg: DataConfig,
    eval_cfg: EvalConfig,
    device: torch.device,
    split: str,
    *,
    return_embeddings: Literal[False] = False,
) -> dict[str, Any]: ...


@overload
def evaluate_protocol(
    model: OmniReID,
    root: Path,
    protocol: Protocol,
    data_cfg: DataConfig,
    eval_cfg: EvalConfig,
    device: torch.device,
    split: str,
    *,
    return_embeddings: Literal[True],
) -> tuple[dict[str, Any], EvalEmbeddings]: ...


def evaluate_protocol(
    model: OmniReID,
    root: Path,
    protocol: Protocol,
    data_cfg: DataConfig,
    eval_cfg: EvalConfig,
    device: torch.device,
    split: str,
    *,
    return_embeddings: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], EvalEmbeddings]:
    """Score `model` on `protocol`; returns per-set metrics, groups, score and the protocol name.

    With `return_embeddings`, returns `(result, EvalEmbeddings)`: the same JSON-ready result plus
    the gallery and per-set query embeddings it was computed from (rank lists and CMC curves are
    drawn from those, without encoding again).
    """
    was_training = model.training
    model.eval()
    try:
        enc = ProtocolEncoder(model, root, data_cfg, eval_cfg, device)
        g_emb, g_ids = enc.gallery(protocol)
        per_set: dict[str, dict[str, float]] = {}
        empty = []
        kept: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for qs, (q_emb, q_ids) in zip(protocol.sets, enc.queries(protocol), strict=True):
            if return_embeddings:
                kept[qs.key] = (q_emb.float().cpu(), q_ids.cpu())
            if not bool(torch.isin(q_ids, g_ids).any()):
                empty.append(qs.key)  # no query of this set has a positive: nothing to rank
                continue
            # the challenge's mAP@100; queries in chunks of at most ~64M similarities
            chunk = max(1, SIMILARITIES_PER_CHUNK // max(1, g_emb.shape[0]))
            per_set[qs.key] = retrieval_metrics_from_features(
                q_emb.cpu(), g_emb.cpu(), q_ids, g_ids, k=100, chunk_size=chunk
            )
    finally:
        model.train(was_training)
    summary = summarize(per_set, {qs.key: qs.size for qs in protocol.sets})
    result = {
        "split": split,
        "protocol": protocol.name,
        "gallery_size": len(protocol.gallery),
        "sets": per_set,
        "sets_without_queries": empty,
        "summary": summary,
        "score": summary["score"],
        "skipped_images": len(enc.skipped),  # undecodable, left out (data.on_bad_image: skip)
        "skipped_gallery": enc.skipped_gallery,
        "skipped_queries": enc.skipped_queries,
    }
    if enc.skipped:
        print(
            f"{split}: skipped {len(enc.skipped)} undecodable images ({enc.skipped_gallery} "
            f"gallery rows, {enc.skipped_queries} queries left out)",
            file=sys.stderr,
            flush=True,
        )
    if return_embeddings:
        return result, EvalEmbeddings(g_emb.float().cpu(), g_ids.cpu(), kept)
    return result


@dataclass
class EvalEmbeddings:
    """What an evaluation ranked: L2-normalised gallery rows (protocol.gallery order) and, per
    set key, the query embeddings and ids (the set's query order). Tensors on the CPU."""

    gallery: torch.Tensor  # [G, D]
    gallery_ids: torch.Tensor  # [G]
    sets: dict[str, tuple[torch.Tensor, torch.Tensor]]  # key -> ([Q, D], [Q])


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """`{split}/{metric}/{set}`, `{split}/mm/1` ... `{split}/score` (DESIGN.md names)."""
    return metric_names(result["split"], result["sets"], result["summary"])
