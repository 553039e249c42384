"""Gallery search: exact (chunked matrix product + argpartition) against faiss HNSW and IVF.

Synthetic L2-normalised 512-d embeddings shaped like a ReID gallery: identities of 8 images each,
an identity's centre drawn from a 64-d latent space mapped into 512-d plus an isotropic identity
offset, each image its centre plus noise; a query is a fresh noisy sample of a random identity
(not in the gallery). Real embeddings have such low-dimensional structure; i.i.d. Gaussian rows
would have none (a harder case for any approximate index; not measured here).

Per gallery size: build time of each faiss index, latency per single query (p50, p99; each
query searched alone, as the service does) of exact and faiss search, and faiss recall@10
against exact. Memory: the gallery (N x D float32: 2 GiB at 1M) plus one faiss copy at a time.

    .venv/bin/python bench/gallery_index_bench.py [--rows 100000,1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PER_ID, LATENT = 8, 64


def synthetic(rows: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gallery `[rows, dim]` and queries `[queries, dim]`, float32, L2-normalised (chunked)."""
    rng = np.random.default_rng(seed)
    n_ids = -(-rows // PER_ID)
    basis = (rng.standard_normal((LATENT, dim)) / np.sqrt(LATENT)).astype(np.float32)
    z = rng.standard_normal((n_ids, LATENT)).astype(np.float32)
    offset = (0.5 * rng.standard_normal((n_ids, dim))).astype(np.float32)
    gallery = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, 65_536):
        pid = np.arange(start, min(rows, start + 65_536)) // PER_ID
        part = z[pid] @ basis + offset[pid]
        part += 0.35 * rng.standard_normal(part.shape, dtype=np.float32)
        gallery[start : start + len(pid)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    pid = rng.integers(0, n_ids, queries)
    q = z[pid] @ basis + offset[pid] + 0.35 * rng.standard_normal((queries, dim), dtype=np.float32)
    return gallery, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def latencies(search, queries: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Rows found per query and p50/p99 latency in ms, one query per call."""
    found, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        rows, _ = search(q[None, :])
        times.append(time.perf_counter() - t0)
        found.append(rows[0])
    ms = 1000 * np.asarray(times)
    return np.stack(found), float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def recall_at(approx: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact, strict=True)]))


SWEEP = {
    "hnsw": ("efSearch", (64, 128, 256, 512, 1024)),
    "ivf": ("nprobe", (32, 64, 128, 256)),
}


def _set(index, kind: str, value: int) -> None:
    if kind == "hnsw":
        index.hnsw.efSearch = value
    else:
        index.nprobe = value


def run(
    rows: int,
    dim: int,
    n_queries: int,
    exact_queries: int,
    kinds: list[str],
    cmd: str,
    search_threads: int = 0,
):
    import faiss
    from figures import figure

    from experiments.gallery.index import (
        HNSW_EF_SEARCH,
        IVF_NPROBE,
        build_faiss,
        exact_topk,
        faiss_topk,
    )

    defaults = {"hnsw": HNSW_EF_SEARCH, "ivf": IVF_NPROBE}
    t0 = time.perf_counter()
    gallery, queries = synthetic(rows, dim, n_queries)
    print(f"\n{rows} rows x {dim}: generated in {time.perf_counter() - t0:.1f} s", flush=True)
    truth, _ = exact_topk(gallery, queries, 10)  # all queries at once: the reference
    _, p50, p99 = latencies(lambda q: exact_topk(gallery, q, 10), queries[:exact_queries])
    print(f"exact  p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  ({exact_queries} queries)", flush=True)
    tag = f"{rows // 1000}k"
    big = rows >= 1_000_000
    figure(f"exact search p99 latency per query, {tag} x {dim}", p99, "ms", "-", None, cmd)
    for kind in kinds:
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # build on every core
        t0 = time.perf_counter()
        index = build_faiss(gallery, kind)
        built = time.perf_counter() - t0
        if search_threads:
            faiss.omp_set_num_threads(search_threads)
        print(f"{kind}: built in {built:.1f} s", flush=True)
        knob, values = SWEEP[kind]
        for value in sorted({*values, defaults[kind]}):
            _set(index, kind, value)
            found, p50, p99 = latencies(lambda q, ix=index: faiss_topk(ix, q, 10), queries)
            recall = recall_at(found, truth)
            mark = "  <- default" if value == defaults[kind] else ""
            print(
                f"  {kind:5} {knob} {value:4}  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
                f"recall@10 {recall:.4f}{mark}",
                flush=True,
            )
            if value != defaults[kind]:
                continue
            name = f"faiss {kind} ({knob} {value})"
            target_ms, target_r = ("<= 50", ">= 0.95") if big else ("-", "-")
            figure(
                f"{name} p99 latency per query, {tag} x {dim}",
                p99,
                "ms",
                target_ms,
                (p99 <= 50) if big else None,
                cmd,
            )
            figure(
                f"{name} recall@10 vs exact, {tag} x {dim}",
                recall,
                "fraction",
                target_r,
                (recall >= 0.95) if big else None,
                cmd,
            )
        figure(f"faiss {kind} build time, {tag} x {dim}", built, "s", "-", None, cmd)
        del index
        gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000", help="gallery sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200, help="faiss queries (and recall)")
    parser.add_argument("--exact-queries", type=int, default=50, help="exact latency queries")
    parser.add_argument("--kinds", default="hnsw,ivf")
    parser.add_argument(
        "--search-threads",
        type=int,
        default=1,
        help="faiss OpenMP threads while searching (one query at a time, as the service "
        "does; 0: faiss's default); builds use every core",
    )
    parser.add_argument(
        "--hnsw-max-rows",
        type=int,
        default=0,
        help="skip HNSW above this many rows (its build took 6-19 min at 1M rows on 2 cores); "
        "0: no limit",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    import faiss
    from figures import command

    argv = sys.argv[1:]
    cmd = command(__file__, *argv)
    cores, load = os.cpu_count(), os.getloadavg()
    print(f"faiss {faiss.__version__}; {cores} cores; search threads {args.search_threads}")
    print(f"load average at the start: {load}")
    for rows in (int(r) for r in args.rows.split(",")):
        kinds = args.kinds.split(",")
        if "hnsw" in kinds and 0 < args.hnsw_max_rows < rows:
            kinds.remove("hnsw")
            print(f"\n{rows} rows: HNSW skipped (--hnsw-max-rows {args.hnsw_max_rows})")
        run(rows, args.dim, args.queries, args.exact_queries, kinds, cmd, args.search_threads)
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
