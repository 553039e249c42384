"""Retrieval metrics for re-identification: mAP, mAP@k, mINP and CMC ranks (docs/METRICS.md).

Pure functions of a similarity matrix and identity labels: no model, no I/O, no global state.
Rank positions are those of a stable descending sort (ties keep gallery order), computed without
sorting indices: a positive's rank is 1 + the items scoring above it + the equal items before it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch

CMC_RANKS = (1, 5, 10)
# The sorted copy of one chunk of rows is the largest temporary; 64 MiB keeps it cache-friendly
# enough and bounds peak memory independently of the number of queries.
_CHUNK_BYTES = 64 * 2**20
# Above this many tied positives in one row, one sort of the whole row (G log G) is cheaper than
# comparing each tied positive against the row prefix (G per positive).
_MAX_TIED_COMPARE = 16

ArrayLike = np.ndarray | torch.Tensor


def retrieval_metrics(
    similarity: ArrayLike,
    query_ids: ArrayLike,
    gallery_ids: ArrayLike,
    k: int = 100,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Evaluate ranked retrieval of a gallery for every query.

    For each query the gallery is ranked by descending similarity; ties keep gallery order, as a
    stable sort would. With p_1 < ... < p_n the 1-based ranks of the n gallery items sharing the
    query's identity (its positives):

    - AP = mean over i of i / p_i, AP@k = sum of i / p_i over p_i <= k divided by min(n, k),
    - INP = n / p_n, R-k = 1 if p_1 <= k else 0.

    Each is averaged over the queries that have at least one positive; the others are skipped and
    counted. Runs in O(Q G log G) time with a plain (index-free) sort per row; peak extra memory is
    one sorted copy of a chunk of rows (``chunk_size * G`` items) plus a few arrays of length Q
    and of the number of positives in a chunk.

    Args:
        similarity: ``[Q, G]`` scores, higher is more similar; numpy array or torch tensor
            (a CPU tensor is used without a copy; bfloat16 is widened to float32, exactly).
            Must not contain NaN.
        query_ids: ``[Q]`` identity labels of the queries.
        gallery_ids: ``[G]`` identity labels of the gallery items, same kind as ``query_ids``.
        k: cut-off of the truncated mAP; the key is ``f"mAP{k}"``.
        chunk_size: queries per chunk; by default as many as fit 64 MiB of ``similarity``.

    Returns:
        ``mAP``, ``mAP{k}``, ``mINP``, ``R1``, ``R5``, ``R10`` as fractions in [0, 1], and
        ``num_queries`` (evaluated) and ``num_skipped`` (queries without any positive).

    Raises:
        ValueError: on mismatched shapes, ``k`` or ``chunk_size`` below 1, NaN scores, or when
            no query has a positive.
    """
    sim, qids, gids = _to_numpy(similarity), _to_numpy(query_ids), _to_numpy(gallery_ids)
    _check_inputs(sim.shape, qids, gids, k)
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    positives = _Positives.build(gids)
    rows = chunk_size or max(1, _CHUNK_BYTES // max(1, sim.shape[1] * sim.dtype.itemsize))
    chunks = ((sim[i : i + rows], qids[i : i + rows]) for i in range(0, len(qids), rows))
    return _evaluate(chunks, positives, k)


def retrieval_metrics_from_features(
    query_features: torch.Tensor,
    gallery_features: torch.Tensor,
    query_ids: ArrayLike,
    gallery_ids: ArrayLike,
    k: int = 100,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """``retrieval_metrics`` of ``query_features @ gallery_features.T``, never held in full.

    Similarities are computed ``chunk_size`` queries at a time on the features' device and moved
    to the CPU one chunk at a time, so memory stays at one chunk of similarities plus a few
    numbers per query. Features are used as given: normalise them first for cosine similarity.
    """
    qids, gids = _to_numpy(query_ids), _to_numpy(gallery_ids)
    if query_features.shape[0] != len(qids) or gallery_features.shape[0] != len(gids):
        raise ValueError("features and ids disagree on the number of queries or gallery items")
    _check_inputs((len(qids), len(gids)), qids, gids, k)
    positives = _Positives.build(gids)

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(0, len(qids), chunk_size):
            block = query_features[i : i + chunk_size] @ gallery_features.T
            yield _to_numpy(block), qids[i : i + chunk_size]

    return _evaluate(chunks(), positives, k)


def summarize(
    per_set: Mapping[str, Mapping[str, float]],
    set_sizes: Mapping[str, int],
    metric: str = "mAP100",
) -> dict[str, float]:
    """Group means ``mm1`` ... ``mm4`` of `metric` (over the sets of each size present) and
    ``score``.

    ``score`` is the mean of the group values present: the challenge's ranking number when all
    four groups are there. Every set in ``per_set`` must have a size in ``set_sizes``.
    """
    groups: dict[int, list[float]] = {}
    for name, metrics in per_set.items():
        if name not in set_sizes:
            raise KeyError(f"no size given for query set {name!r}")
        groups.setdefault(set_sizes[name], []).append(float(metrics[metric]))
    if not groups:
        raise ValueError("no query sets to summarize")
    summary = {group_key(size): float(np.mean(groups[size])) for size in sorted(groups)}
    summary["score"] = float(np.mean(list(summary.values())))
    return summary


def group_key(size: int) -> str:
    """Summary key of the group of sets with `size` modalities: ``mm1`` ... ``mm4``."""
    return f"mm{size}"


def metric_name(split: str, metric: str, query_set: str | None = None) -> str:
    """DESIGN.md's tracked name: ``val/mAP100/nir_text``, ``val/score`` (MLflow's UI groups
    charts by the prefix before the last ``/``, so one section compares the sets of a metric)."""
    return f"{split}/{metric}" if query_set is None else f"{split}/{metric}/{query_set}"


def metric_names(
    split: str, per_set: Mapping[str, Mapping[str, float]], summary: Mapping[str, float]
) -> dict[str, float]:
    """Flatten a result: ``val/mAP100/nir_text`` per set and metric, ``val/mm/1`` ... for the
    groups (mAP@100), ``val/score``."""
    flat = {
        metric_name(split, m, s): float(v)
        for s, metrics in per_set.items()
        for m, v in metrics.items()
    }
    for size in range(1, 5):
        if group_key(size) in summary:
            flat[metric_name(split, "mm", str(size))] = float(summary[group_key(size)])
    flat[metric_name(split, "score")] = float(summary["score"])
    return flat


@dataclass(frozen=True)
class _Positives:
    """Gallery columns grouped by identity; within a group in gallery order."""

    ids: np.ndarray  # [I] sorted distinct gallery ids
    starts: np.ndarray  # [I] where each id's group begins in `columns`
    counts: np.ndarray  # [I]
    columns: np.ndarray  # [G]

    @classmethod
    def build(cls, gallery_ids: np.ndarray) -> _Positives:
        ids, inverse, counts = np.unique(gallery_ids, return_inverse=True, return_counts=True)
        columns = np.argsort(inverse.ravel(), kind="stable")
        return cls(ids, np.cumsum(counts) - counts, counts, columns)

    def lookup(self, query_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query its number of positives, and all their columns concatenated in query order."""
        slot = np.minimum(np.searchsorted(self.ids, query_ids), len(self.ids) - 1)
        n = np.where(self.ids[slot] == query_ids, self.counts[slot], 0)
        within = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        return n, self.columns[np.repeat(self.starts[slot], n) + within]


def _evaluate(
    chunks: Iterator[tuple[np.ndarray, np.ndarray]], positives: _Positives, k: int
) -> dict[str, float]:
    stats = np.concatenate([_chunk_stats(s, q, positives, k) for s, q in chunks])
    evaluated = stats[stats[:, 0] > 0]
    if len(evaluated) == 0:
        raise ValueError("no query has a positive in the gallery")
    _, ap, ap_k, inp, first = evaluated.T
    metrics = {"mAP": ap.mean(), f"mAP{k}": ap_k.mean(), "mINP": inp.mean()}
    metrics.update({f"R{r}": np.mean(first <= r) for r in CMC_RANKS})
    result: dict[str, float] = {name: float(v) for name, v in metrics.items()}
    result.update(num_queries=len(evaluated), num_skipped=len(stats) - len(evaluated))
    return result


def _chunk_stats(sim: np.ndarray, qids: np.ndarray, positives: _Positives, k: int) -> np.ndarray:
    """``[rows, 5]``: positives n, AP, AP@k, INP, first rank; NaN where n = 0."""
    n, columns = positives.lookup(qids)
    rows = np.repeat(np.arange(len(n)), n)
    # Sorting (row, rank) keys orders each row's ranks without a Python loop.
    stride = sim.shape[1] + 1
    ranks = np.sort(rows * stride + _positive_ranks(sim, n, columns)) - rows * stride
    first = np.cumsum(n) - n
    precision = (np.arange(len(ranks)) - first[rows] + 1) / ranks  # i / p_i
    out = np.full((len(n), 5), np.nan)
    out[:, 0] = n
    has = n > 0
    n_has, first_has = n[has], first[has]
    out[has, 1] = np.bincount(rows, precision, len(n))[has] / n_has
    out[has, 2] = np.bincount(rows, precision * (ranks <= k), len(n))[has] / np.minimum(n_has, k)
    out[has, 3] = n_has / ranks[first_has + n_has - 1]
    out[has, 4] = ranks[first_has]
    return out


def _positive_ranks(sim: np.ndarray, n: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """1-based stable descending ranks of the given columns, row by row (``n`` per row)."""
    # A value-only sort is several times cheaper than the stable argsort it replaces (SIMD, no
    # index payload); it is the chunk's one full-size temporary.
    ordered = np.sort(sim, axis=1)
    if ordered.dtype.kind == "f" and np.isnan(ordered[:, -1]).any():  # NaN sorts last
        raise ValueError("similarity contains NaN")
    ranks = np.empty(len(columns), np.int64)
    ends = np.cumsum(n)
    # One searchsorted per row: numpy has no batched form, and ~Q calls cost milliseconds.
    for r in np.flatnonzero(n):
        part = slice(ends[r] - n[r], ends[r])
        ranks[part] = _row_ranks(sim[r], ordered[r], columns[part])
    return ranks


def _row_ranks(row: np.ndarray, ordered: np.ndarray, columns: np.ndarray) -> np.ndarray:
    values = row[columns]
    right = np.searchsorted(ordered, values, side="right")
    ranks = 1 + len(row) - right  # 1 + the items scoring strictly higher
    tied = right - np.searchsorted(ordered, values, side="left") > 1
    if not tied.any():
        return ranks
    if tied.sum() > _MAX_TIED_COMPARE:
        return _tie_broken_ranks(row, columns)
    # Equal items earlier in the gallery rank first: count them against the row prefix.
    cols, vals = columns[tied], values[tied]
    span = int(cols.max())
    earlier = (row[:span] == vals[:, None]) & (np.arange(span) < cols[:, None])
    ranks[tied] += earlier.sum(axis=1)
    return ranks


def _tie_broken_ranks(row: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Stable descending ranks of ``columns`` in a row where many scores tie (fp16, integers)."""
    if row.dtype.kind != "f" or row.dtype.itemsize > 4:
        return _stable_descending_ranks(row)[columns]
    # 64-bit keys (score bits, then reversed gallery index) are all distinct and sort in rank
    # order, so a value-only sort replaces the stable argsort: about 4x cheaper per row.
    bits = (row.astype(np.float32) + np.float32(0)).view(np.int32)  # + 0 folds -0.0 into 0.0
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # int order now equals float order
    index = np.arange(len(row), dtype=np.int64)
    keys = (bits.astype(np.int64) << 32) | (0xFFFFFFFF - index)
    return 1 + len(row) - np.searchsorted(np.sort(keys), keys[columns], side="right")


def _stable_descending_ranks(row: np.ndarray) -> np.ndarray:
    # Stable ascending sort of the reversed row, reversed again: descending, ties in gallery
    # order, and no negation (which would wrap unsigned integers).
    order = (len(row) - 1 - np.argsort(row[::-1], kind="stable"))[::-1]
    ranks = np.empty(len(row), np.int64)
    ranks[order] = np.arange(1, len(row) + 1)
    return ranks


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()  # no copy for a CPU tensor
        if x.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _check_inputs(shape: tuple[int, ...], qids: np.ndarray, gids: np.ndarray, k: int) -> None:
    if len(shape) != 2 or qids.ndim != 1 or gids.ndim != 1:
        raise ValueError("expected similarity [Q, G], query_ids [Q] and gallery_ids [G]")
    if shape != (len(qids), len(gids)):
        raise ValueError(
            f"similarity {shape} does not match {len(qids)} queries, {len(gids)} gallery"
        )
    if len(gids) == 0:
        raise ValueError("empty gallery")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
