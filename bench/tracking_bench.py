"""Tracking overhead: the same `reid train` (preset, config, seed) with and without MLflow.

Each run is a fresh `reid train` process on the same synthetic dataset, alternating untracked and
tracked runs; the tracked runs use a fresh SQLite store. Prints the wall times and the overhead
as a share of the untracked wall time (target: at most 10%).

    .venv/bin/python bench/tracking_bench.py                 # cpu-tiny, 1 pair
    .venv/bin/python bench/tracking_bench.py --repeat 2 --set train.epochs=4
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _train(
    work: Path, data: Path, name: str, args: argparse.Namespace, track: bool
) -> tuple[float, float]:
    cmd = [
        sys.executable,
        "-m",
        "studies.cli",
        "train",
        "--preset",
        args.preset,
        "--data",
        str(data),
        "--out",
        str(work / "runs" / name),
    ]
    for item in args.set:
        cmd += ["--set", item]
    if track:
        cmd += ["--tracking-uri", f"sqlite:///{work / name}.db", "--experiment", "bench"]
    else:
        cmd.append("--no-track")
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    found = re.search(r"tracking took ([0-9.]+) s", done.stdout)
    return wall, float(found.group(1)) if found else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-tiny")
    parser.add_argument("--identities", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs")
    parser.add_argument(
        "--set", action="append", default=[], help="config override for both runs (repeatable)"
    )
    args = parser.parse_args()
    if not any(item.startswith("train.seed=") for item in args.set):
        args.set.insert(0, "train.seed=0")

    from reid_core.data.synth import synthesize

    with tempfile.TemporaryDirectory(prefix="tracking-bench-") as tmp:
        work = Path(tmp)
        data = work / "data"
        synthesize(data, identities=args.identities, seed=0, size=(128, 64))
        plain, tracked, inside = [], [], []
        for i in range(args.repeat):
            plain.append(_train(work, data, f"plain{i}", args, track=False)[0])
            wall, seconds = _train(work, data, f"tracked{i}", args, track=True)
            tracked.append(wall)
            inside.append(seconds)
            print(
                f"pair {i + 1}: untracked {plain[-1]:.1f} s, tracked {wall:.1f} s "
                f"(of which tracking {seconds:.1f} s)",
                flush=True,
            )
    base, with_tracking = statistics.median(plain), statistics.median(tracked)
    measured = statistics.median(inside)
    overhead = with_tracking - base
    print(f"preset {args.preset}, overrides {' '.join(args.set)}, {args.identities} identities")
    print(
        f"untracked wall {base:.1f} s, tracked wall {with_tracking:.1f} s (median of "
        f"{args.repeat}): difference {overhead:+.1f} s = {100 * overhead / base:+.1f}%"
    )
    print(
        f"time inside tracking (store, hooks, artifacts, model; timed in the run) "
        f"{measured:.1f} s = {100 * measured / base:.1f}% of the untracked wall time "
        "(target <= 10%)"
    )

    from figures import command, figure, script_args

    cmd = command(__file__, *script_args())
    share = 100 * measured / base
    figure(
        f"tracking overhead: time inside tracking / untracked wall ({args.preset})",
        share, "%", "<= 10", share <= 10, cmd,
    )  # fmt: skip
    figure(
        f"tracking overhead: tracked wall / untracked wall - 1 ({args.preset})",
        100 * overhead / base, "%", "<= 10 (noisy on a shared CPU)", 100 * overhead / base <= 10,
        cmd,
    )  # fmt: skip


if __name__ == "__main__":
    main()
