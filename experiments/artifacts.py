"""Run artifacts: per-evaluation metric tables (CSV) and plots (PNG: per-set mAP, CMC curves)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("mAP", "mAP100", "mINP", "R1", "R5", "R10")
LEVEL_COLOURS = {1: "#4c72b0", 2: "#55a868", 3: "#c44e52", 4: "#8172b2"}


def set_level(key: str) -> int:
    """MM level of a set name (`nir` -> 1, `nir_cp_text` -> 3)."""
    return len(key.split("_"))


def metric_table_csv(result: dict[str, Any]) -> str:
    """One row per set (level, queries, the six metrics), then the groups and `score`."""
    return history_csv([(None, result)])


def history_csv(results: list[tuple[int | None, dict[str, Any]]]) -> str:
    """`metric_table_csv` of several evaluations in one table; with their epoch (from 1) as the
    first column when they have one (val and trainval during training)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    lead = ["epoch"] if any(epoch is not None for epoch, _ in results) else []
    writer.writerow([*lead, "set", "level", "queries", *METRICS])
    for epoch, result in results:
        first = [epoch] if lead else []
        for key, m in result["sets"].items():
            row = [f"{m[name]:.6f}" for name in METRICS]
            writer.writerow([*first, key, set_level(key), int(m.get("num_queries", 0)), *row])
        for name, value in result["summary"].items():
            level = name.removeprefix("mm") if name != "score" else ""
            writer.writerow([*first, name, level, "", "", f"{value:.6f}", "", "", "", ""])
    return buf.getvalue()


def epochs_csv(rows: list[dict[str, Any]]) -> str:
    """One row per epoch, one column per key (in order of first appearance)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def percent_table(result: dict[str, Any]) -> Any:
    """An evaluation as a DataFrame for MLflow's `log_table` (the runs page's Artifact view
    compares such tables across runs): one row per set, then the groups; values x100."""
    import pandas as pd

    rows = [
        {"set": key, "level": set_level(key), "queries": int(m.get("num_queries", 0)),
         **{name: round(100 * m[name], 2) for name in METRICS}}
        for key, m in result["sets"].items()
    ]  # fmt: skip
    for name, value in result["summary"].items():
        rows.append({"set": name, "mAP100": round(100 * value, 2)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- CMC
def first_positive_ranks(similarity: np.ndarray, qids: np.ndarray, gids: np.ndarray) -> np.ndarray:
    """1-based rank of each query's best-ranked positive (stable: ties keep gallery order);
    0 for a query without any positive."""
    pos = qids[:, None] == gids[None, :]
    masked = np.where(pos, similarity, -np.inf)
    best = masked.max(axis=1)
    first = masked.argmax(axis=1)  # the first gallery index reaching the best positive score
    above = (similarity > best[:, None]).sum(axis=1)
    tied_before = (similarity[:, :] == best[:, None]) & (
        np.arange(len(gids))[None, :] < first[:, None]
    )
    ranks = 1 + above + tied_before.sum(axis=1)
    return np.where(pos.any(axis=1), ranks, 0)


def cmc(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    """CMC[k-1] = share of queries (with a positive) whose first positive is within rank k."""
    ranks = ranks[ranks > 0]
    if ranks.size == 0:
        return np.zeros(max_rank)
    return np.array([(ranks <= k).mean() for k in range(1, max_rank + 1)])


def cmc_curves(
    model: Any,
    root: Path,
    protocol: Any,
    data_cfg: Any,
    eval_cfg: Any,
    device: Any,
    max_rank: int = 20,
) -> dict[str, np.ndarray]:
    """Per query set, the CMC curve of `model` on `protocol` (ranks 1..max_rank)."""
    from reid_core.evaluation.evaluate import ProtocolEncoder

    was_training = model.training
    model.eval()
    try:
        enc = ProtocolEncoder(model, root, data_cfg, eval_cfg, device)
        g_emb, g_ids = enc.gallery(protocol)
        sets = enc.queries(protocol)
    finally:
        model.train(was_training)
    g = g_emb.float().cpu().numpy()
    gids = g_ids.numpy()
    limit = min(max_rank, len(gids))
    out = {}
    for qs, (q_emb, q_ids) in zip(protocol.sets, sets, strict=True):
        if len(q_ids):
            sim = q_emb.float().cpu().numpy() @ g.T
            out[qs.key] = cmc(first_positive_ranks(sim, q_ids.numpy(), gids), limit)
    return out


def cmc_from_embeddings(embeddings: Any, max_rank: int = 20) -> dict[str, np.ndarray]:
    """`cmc_curves` from the embeddings an evaluation already computed
    (`evaluate_protocol(..., return_embeddings=True)`): no second encoding pass."""
    g = embeddings.gallery.float().numpy()
    gids = embeddings.gallery_ids.numpy()
    limit = min(max_rank, len(gids))
    out = {}
    for key, (q_emb, q_ids) in embeddings.sets.items():
        if len(q_ids):
            sim = q_emb.float().numpy() @ g.T
            out[key] = cmc(first_positive_ranks(sim, q_ids.numpy(), gids), limit)
    return out


# -------------------------------------------------------------------------------------- plots
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_map_bars(result: dict[str, Any], path: Path) -> Path:
    """Per-set mAP (and mAP@100) bars, grouped and coloured by MM level."""
    plt = _pyplot()
    keys = sorted(result["sets"], key=lambda k: (set_level(k), list(result["sets"]).index(k)))
    x, pos, last = [], 0.0, None
    for k in keys:
        if last is not None and set_level(k) != last:
            pos += 0.8  # a gap between MM levels
        x.append(pos)
        pos += 1.0
        last = set_level(k)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(keys) + 2), 4.0))
    colours = [LEVEL_COLOURS.get(set_level(k), "grey") for k in keys]
    ax.bar(x, [100 * result["sets"][k]["mAP"] for k in keys], 0.8, color=colours, label="mAP")
    ax.scatter(
        x,
        [100 * result["sets"][k]["mAP100"] for k in keys],
        color="black",
        s=12,
        zorder=3,
        label="mAP@100",
    )
    ax.set_xticks(x, keys, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 125 * max(m["mAP"] for m in result["sets"].values()) + 1)
    ax.set_title(
        f"{result['split']} per-set mAP ({result['protocol']}), score {100 * result['score']:.2f}"
    )
    ax.legend(loc="upper right", fontsize=8, ncols=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_cmc(curves: dict[str, np.ndarray], path: Path) -> Path:
    """CMC curves: single-modality queries (MM1) against fused ones (MM2-MM4), with level means."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    by_level: dict[int, list[np.ndarray]] = {}
    for key, curve in curves.items():
        level = set_level(key)
        by_level.setdefault(level, []).append(curve)
        ranks = np.arange(1, len(curve) + 1)
        ax.plot(ranks, 100 * curve, color=LEVEL_COLOURS.get(level, "grey"), alpha=0.25, lw=0.8)
    for level in sorted(by_level):
        mean = np.mean(by_level[level], axis=0)
        label = "single (MM1)" if level == 1 else f"fused MM{level}"
        ax.plot(
            np.arange(1, len(mean) + 1),
            100 * mean,
            color=LEVEL_COLOURS.get(level, "grey"),
            lw=2.2,
            label=label,
        )
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_title("CMC: single vs fused queries (thin: per set)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
