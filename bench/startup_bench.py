"""Start-up: `reid --help` against `python -c "import torch"`, fresh processes, interleaved.

`reid --help` must import neither torch, mlflow nor optuna (DESIGN.md); this measures what that
buys: the median wall time of each command over `--repeats` runs (order flipped every run), and
the ratio (target < 0.25).

    .venv/bin/python bench/startup_bench.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def reid_command() -> list[str]:
    """The installed console script beside this interpreter, else the module entry."""
    script = Path(sys.executable).with_name("reid")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "studies.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    commands = {
        "reid --help": [*reid_command(), "--help"],
        "import torch": [sys.executable, "-c", "import torch"],
    }
    for cmd in commands.values():  # warm the page cache for both before timing
        wall(cmd)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for rep in range(args.repeats):
        names = list(commands) if rep % 2 == 0 else list(commands)[::-1]
        for name in names:
            times[name].append(wall(commands[name]))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, ts in times.items():
        print(f"{name:<13} median {med[name]:.3f} s of {args.repeats} (min {min(ts):.3f} s)")
    ratio = med["reid --help"] / med["import torch"]
    print(f"reid --help / import torch: {ratio:.3f} (target < 0.25)")

    from figures import command, figure

    figure(
        "`reid --help` start-up / `python -c 'import torch'`",
        ratio, "ratio", "< 0.25", ratio < 0.25, command(__file__, *sys.argv[1:]),
    )  # fmt: skip


if __name__ == "__main__":
    main()
