"""Rank lists: what the model retrieves for a few seeded queries, as pictures.

One PNG per query set (`ranklist_<set>.png`, the single sets and the quadruple by default): a row
per query with its items on the left (images as images, the caption as wrapped text) and the top
gallery images on the right, framed green for the query's identity and red for another, with the
rank of the first correct match. Drawn from the embeddings the evaluation already computed
(`evaluate_protocol(..., return_embeddings=True)`), so nothing is encoded twice.
"""

from __future__ import annotations

import tempfile
import textwrap
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reid_core.errors import ReidError

TOP = 10
LEVELS = (1, 4)  # single sets and the quadruple
GREEN, RED = "#2ca02c", "#d62728"


@dataclass
class RankRow:
    """One query of a rank list: its items, identity, top gallery rows and first-match rank."""

    pid: int
    items: tuple[Any, ...]  # QueryItem
    top: list[int]  # gallery rows, best first
    scores: list[float]
    first_match: int  # 1-based rank of the best-ranked positive; 0: no positive in the gallery


def pick_queries(q_ids: np.ndarray, g_ids: np.ndarray, n: int, seed: int, key: str) -> np.ndarray:
    """`n` query positions of a set (those with a positive in the gallery), seeded per set."""
    eligible = np.flatnonzero(np.isin(q_ids, g_ids))
    if eligible.size == 0 or n <= 0:
        return eligible[:0]
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    chosen = rng.choice(eligible, size=min(n, eligible.size), replace=False)
    return np.sort(chosen)


def rank_rows(
    embeddings: Any, protocol: Any, key: str, n: int, seed: int, top: int = TOP
) -> list[RankRow]:
    """The rows of set `key`'s rank list (see `RankRow`)."""
    from experiments.artifacts import first_positive_ranks

    qs = next((s for s in protocol.sets if s.key == key), None)
    if qs is None or key not in embeddings.sets:
        raise ReidError(f"rank lists: no query set {key!r} in protocol {protocol.name}")
    q_emb, q_ids = (t.numpy() for t in embeddings.sets[key])
    g = embeddings.gallery.numpy()
    g_ids = embeddings.gallery_ids.numpy()
    chosen = pick_queries(q_ids, g_ids, n, seed, key)
    if chosen.size == 0:
        return []
    sim = q_emb[chosen] @ g.T  # [n, G]
    firsts = first_positive_ranks(sim, q_ids[chosen], g_ids)
    rows = []
    for i, qpos in enumerate(chosen):
        order = np.argsort(-sim[i], kind="stable")[:top]  # ties keep gallery order, as in eval
        query = qs.queries[int(qpos)]
        scores = [float(sim[i, j]) for j in order]
        rows.append(RankRow(query.pid, query.items, order.tolist(), scores, int(firsts[i])))
    return rows


def default_sets(protocol: Any, levels: Sequence[int] = LEVELS) -> list[str]:
    return [qs.key for qs in protocol.sets if qs.size in levels and qs.queries]


def write_rank_lists(
    embeddings: Any,
    protocol: Any,
    root: Path,
    out_dir: Path,
    n: int = 5,
    seed: int = 0,
    sets: Sequence[str] | None = None,
) -> list[Path]:
    """Draw `ranklist_<set>.png` into `out_dir` for `n` seeded queries of each set in `sets`
    (default: the single sets and the quadruple); returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gallery = protocol.gallery
    written = []
    for key in sets if sets is not None else default_sets(protocol):
        rows = rank_rows(embeddings, protocol, key, n, seed)
        if rows:
            path = out_dir / f"ranklist_{key}.png"
            written.append(draw_rank_list(rows, gallery, Path(root), key, path))
    return written


def log_rank_lists(
    client: Any,
    run_id: str,
    embeddings: Any,
    protocol: Any,
    root: Path,
    n: int = 5,
    seed: int = 0,
) -> list[str]:
    """`write_rank_lists` into the run's `plots/`; returns the artifact paths."""
    with tempfile.TemporaryDirectory() as tmp:
        files = write_rank_lists(embeddings, protocol, root, Path(tmp), n, seed)
        if files:
            client.log_artifacts(run_id, tmp, "plots")
    return [f"plots/{f.name}" for f in files]


# ------------------------------------------------------------------------------------ drawing
def _load(root: Path, rel: str) -> tuple[np.ndarray, str | None]:
    from PIL import Image

    try:
        with Image.open(root / rel) as img:
            if img.mode in ("L", "I", "I;16", "1"):
                return np.asarray(img.convert("L")), "gray"
            return np.asarray(img.convert("RGB")), None
    except OSError:
        return np.full((8, 4, 3), 128, dtype=np.uint8), None  # unreadable: a grey tile


def _frame(ax: Any, colour: str | None, width: float = 4.0) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(colour is not None)
        if colour is not None:
            spine.set_edgecolor(colour)
            spine.set_linewidth(width)


def draw_rank_list(
    rows: Sequence[RankRow], gallery: Sequence[tuple[int, str]], root: Path, key: str, path: Path
) -> Path:
    """One figure: a row per query, its items, a gap, then its top gallery images."""
    from experiments.artifacts import _pyplot

    plt = _pyplot()
    n_items = max(len(r.items) for r in rows)
    n_top = max(len(r.top) for r in rows)
    ratios = [1.0] * n_items + [0.25] + [1.0] * n_top
    fig, axes = plt.subplots(
        len(rows),
        len(ratios),
        figsize=(0.95 * sum(ratios) + 0.4, 2.25 * len(rows) + 0.5),
        gridspec_kw={"width_ratios": ratios},
        squeeze=False,
    )
    for r, row in enumerate(rows):
        for c in range(len(ratios)):
            _frame(axes[r, c], None)
        for c, item in enumerate(row.items):
            _draw_item(axes[r, c], item, root)
        for c, (g, score) in enumerate(zip(row.top, row.scores, strict=True)):
            ax = axes[r, n_items + 1 + c]
            pid, rel = gallery[g]
            img, cmap = _load(root, rel)
            ax.imshow(img, cmap=cmap, aspect="auto")
            _frame(ax, GREEN if pid == row.pid else RED)
            ax.set_title(f"{c + 1}: {score:.2f}", fontsize=7, pad=2)
            ax.set_xlabel(f"id {pid:04d}", fontsize=6, labelpad=1)
        first = f"first match: rank {row.first_match}" if row.first_match else "no match"
        axes[r, 0].set_ylabel(f"id {row.pid:04d}\n{first}", fontsize=7)
    fig.suptitle(
        f"rank list {key}: query (left), top {n_top} gallery (green: same identity, red: other)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _draw_item(ax: Any, item: Any, root: Path) -> None:
    from reid_core.modality import Modality

    if item.modality is Modality.TEXT:
        wrapped = "\n".join(textwrap.wrap(item.value, 18)[:12])
        ax.text(0.03, 0.97, wrapped, fontsize=6, va="top", ha="left", transform=ax.transAxes)
        _frame(ax, "#999999", 0.8)
    else:
        img, cmap = _load(root, item.value)
        ax.imshow(img, cmap=cmap, aspect="auto")
        _frame(ax, "#999999", 0.8)
    ax.set_title(item.modality.value, fontsize=7, pad=2)


# ------------------------------------------------------------------------ `reid eval` helper
