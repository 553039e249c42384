"""Bench: retrieval_metrics against a per-query loop in the style of torchreid's eval_func.

3000 queries x 20000 gallery, 400 identities, random float32 similarities, seed 0.
Peak memory is tracemalloc's peak of numpy allocations during the call (the input matrix, already
allocated, is not counted). Run: .venv/bin/python bench/metrics_bench.py [--repeats N]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from reid_core.evaluation.metrics import retrieval_metrics

METRICS = ("mAP", "mAP100", "mINP", "R1", "R5", "R10")


def eval_loop(sim: np.ndarray, qids: np.ndarray, gids: np.ndarray, k: int = 100) -> dict:
    """torchreid eval_func's shape: stable argsort of each row, metrics from the hit positions."""
    rows = []
    for row, qid in zip(sim, qids, strict=True):
        order = np.argsort(-row, kind="stable")
        matches = gids[order] == qid
        if not matches.any():
            continue
        ranks = np.flatnonzero(matches) + 1
        precision = np.arange(1, len(ranks) + 1) / ranks
        ap_k = precision[ranks <= k].sum() / min(len(ranks), k)
        rows.append([precision.mean(), ap_k, len(ranks) / ranks[-1], ranks[0]])
    ap, ap_k, inp, first = np.array(rows).T
    cmc = {f"R{r}": float(np.mean(first <= r)) for r in (1, 5, 10)}
    return {"mAP": ap.mean(), f"mAP{k}": ap_k.mean(), "mINP": inp.mean(), **cmc}


def timed(fn, *args) -> tuple[float, float, dict]:
    """Seconds, tracemalloc peak in MiB, result."""
    tracemalloc.start()
    start = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--gallery", type=int, default=20000)
    parser.add_argument("--ids", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    sim = rng.standard_normal((args.queries, args.gallery), dtype=np.float32)
    qids, gids = rng.integers(0, args.ids, args.queries), rng.integers(0, args.ids, args.gallery)
    print(f"{args.queries} queries x {args.gallery} gallery, {args.ids} ids, float32, seed 0")
    print(f"similarity matrix itself: {sim.nbytes / 2**20:.0f} MiB (not counted below)")

    runs = [timed(retrieval_metrics, sim, qids, gids) for _ in range(args.repeats)]
    fast_s, fast_peak, fast = min(runs, key=lambda run: run[0])
    times = ", ".join(f"{run[0]:.3f}" for run in runs)
    loop_s, loop_peak, slow = timed(eval_loop, sim, qids, gids)

    worst = max(abs(fast[name] - slow[name]) for name in METRICS)
    assert worst < 1e-6, f"disagree by {worst}"
    print("metrics: " + ", ".join(f"{name} {fast[name]:.6f}" for name in METRICS))
    print(f"agree with the loop to {worst:.1e}; {fast['num_skipped']} queries skipped")
    print(
        f"retrieval_metrics: {fast_s:.3f} s best of {args.repeats} ({times}), "
        f"peak {fast_peak:.1f} MiB"
    )
    print(f"per-query loop:    {loop_s:.3f} s once, peak {loop_peak:.1f} MiB")
    print(f"speed-up: {loop_s / fast_s:.1f}x")

    from figures import command, figure, script_args

    speedup = loop_s / fast_s
    figure(
        f"retrieval metrics vs per-query loop ({args.queries} x {args.gallery})",
        speedup, "x faster", ">= 4", speedup >= 4, command(__file__, *script_args()),
    )  # fmt: skip


if __name__ == "__main__":
    main()
