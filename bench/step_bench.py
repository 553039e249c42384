"""Training-step throughput on this CPU, each figure a ratio or a count from one run.

- operators and host syncs per step (`StepCounter`), `cpu-tiny` and `orbench` (ViT-B/16 at
  384x128, random init, a 2 x 2 batch): targets <= 3,000 and <= 4,000 operators, 0 syncs;
- a `cpu-tiny` run on this code against the same run on the code before the throughput work
  (`--baseline`, a commit checked out into a temporary worktree and run with this venv), the
  same data and epochs, whole processes interleaved A B B A: target <= 0.6;
- the share of a step spent waiting for the loader (`reid train --profile`): target <= 0.10;
- step time under a competing CPU load (one busy process per core but one) over the quiet
  step time, OpenMP threads passive (`OMP_WAIT_POLICY=PASSIVE`, reid's default) and spinning:
  target <= 1.5 for passive;
- `train.compile`: compiled over eager step time (after compiling).

    .venv/bin/python bench/step_bench.py                     # everything (~15 min here)
    .venv/bin/python bench/step_bench.py --skip-baseline --epochs 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = "0ded627"  # main before the batched step, the image cache and the sync-free loop


def _reid(code: Path, *args: str, env: dict[str, str] | None = None) -> float:
    """Wall seconds of `python -m studies.cli ARGS` with the package at `code` first on the
    path (this venv's dependencies)."""
    full = {**os.environ, **(env or {}), "PYTHONPATH": str(code)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "studies.cli", *args], env=full, cwd=code,
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"reid {' '.join(args)} in {code} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def _counts(preset: str, overrides: list[str], data: Path) -> tuple[int, int]:
    """Operators and host syncs of one training step (after a warm-up step)."""
    from reid_core.config import load_config
    from reid_core.training.profile import StepCounter
    from reid_core.training.setup import DataBundle, build_trainer

    cfg = load_config(preset=preset, overrides=[*overrides, "data.cache=off"])
    trainer = build_trainer(cfg, DataBundle.load(data, cfg), load_pretrained=False)
    trainer.model.train()
    loader = iter(trainer.loader)
    batches = [next(loader) for _ in range(2)]
    trainer._train_step(batches[0], 0)
    counter = StepCounter()
    with counter.counting():
        trainer._train_step(batches[1], 0)
    return counter.total_ops, counter.total_syncs


def _spin(stop) -> None:  # a competing CPU load: one busy process
    while not stop.is_set():
        sum(i * i for i in range(10_000))


@contextlib.contextmanager
def _competing(processes: int):
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    procs = [ctx.Process(target=_spin, args=(stop,)) for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        time.sleep(1.0)
        yield
    finally:
        stop.set()
        for p in procs:
            p.join()


def _step_ms(data: Path, policy: str, steps: int) -> float:
    """Median step time (profiled window) of a short cpu-tiny run in a fresh process with
    `OMP_WAIT_POLICY=policy`."""
    with tempfile.TemporaryDirectory() as out:
        args = ["train", "--preset", "cpu-tiny", "--data", str(data), "--out", out, "--no-track",
                "--profile", "--set", "train.epochs=1",
                "--set", f"train.max_steps_per_epoch={steps}",
                "--set", "train.eval_every=100", "--set", "eval.trainval_identities=0"]  # fmt: skip
        _reid(REPO, *args, env={"OMP_WAIT_POLICY": policy})
        return float(json.loads((Path(out) / "profile.json").read_text())["step_ms"])


def _baseline_ratio(data: Path, epochs: int, runs: int) -> tuple[float, float, float]:
    """Median wall time of this code's and the baseline's cpu-tiny run, and their ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), BASELINE],
                       check=True, capture_output=True)  # fmt: skip
        try:
            common = ["train", "--preset", "cpu-tiny", "--data", str(data), "--no-track",
                      "--set", f"train.epochs={epochs}",
                      "--set", f"train.eval_every={epochs}"]  # fmt: skip
            _reid(REPO, *common, "--out", str(Path(tmp) / "warm"))  # builds the image cache
            times: dict[str, list[float]] = {"new": [], "old": []}
            for i in range(runs):
                order = ("new", "old") if i % 2 == 0 else ("old", "new")
                for name in order:
                    code = REPO if name == "new" else old
                    out = Path(tmp) / f"{name}{i}"
                    times[name].append(_reid(code, *common, "--out", str(out)))
                    print(f"  {name} run {i}: {times[name][-1]:.1f} s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)],
                           capture_output=True)  # fmt: skip
    new, previous = statistics.median(times["new"]), statistics.median(times["old"])
    return new, previous, new / previous


def main() -> None:
    from figures import command, figure

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each timed cpu-tiny run")
    ap.add_argument("--runs", type=int, default=2, help="runs of each code version")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--skip-orbench", action="store_true")
    args = ap.parse_args()
    cmd = command(__file__, *sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        from reid_core.data.synth import synthesize

        synthesize(data, identities=200, seed=0, size=(64, 32))
        os.environ["OMNIREID_CACHE"] = str(Path(tmp) / "cache")
        print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores", flush=True)
        cases = [("cpu-tiny", [], 3000)]
        if not args.skip_orbench:
            cases.append(("orbench", ["data.p=2", "data.k=2", "data.num_workers=0"], 4000))
        for preset, overrides, target in cases:
            ops, syncs = _counts(preset, overrides, data)
            print(f"{preset}: {ops} operators, {syncs} host syncs per step", flush=True)
            figure(f"operators per training step ({preset})", ops, "ops", f"<= {target}",
                   ops <= target, cmd)  # fmt: skip
            figure(f"host syncs per training step ({preset})", syncs, "syncs", "0",
                   syncs == 0, cmd)  # fmt: skip
        quiet = _step_ms(data, "PASSIVE", 30)
        wait = _data_wait(data)
        figure("loader wait / step time (cpu-tiny, image cache)", wait, "share", "<= 0.10",
               wait <= 0.10, cmd)  # fmt: skip
        busy = max(1, (os.cpu_count() or 2) - 1)
        with _competing(busy):
            loaded = _step_ms(data, "PASSIVE", 30)
            spinning = _step_ms(data, "ACTIVE", 30)
        print(f"step ms quiet {quiet:.1f}, loaded passive {loaded:.1f}, active {spinning:.1f}")
        figure(f"step time under {busy} competing busy process(es) / quiet (passive OpenMP)",
               loaded / quiet, "ratio", "<= 1.5", loaded / quiet <= 1.5, cmd)  # fmt: skip
        figure(f"step time under {busy} competing busy process(es) / quiet (spinning OpenMP)",
               spinning / quiet, "ratio", "-", None, cmd)  # fmt: skip
        compiled = _compiled_ms(data)
        figure("train.compile step time / eager (cpu-tiny, after compiling)",
               compiled / quiet, "ratio", "-", None, cmd)  # fmt: skip
        if not args.skip_baseline:
            name = f"cpu-tiny run wall time / the same run at {BASELINE} ({args.epochs} epochs)"
            try:
                new, old, ratio = _baseline_ratio(data, args.epochs, args.runs)
            except (subprocess.CalledProcessError, RuntimeError) as exc:  # no history here
                print(f"baseline {BASELINE} unavailable: {str(exc).splitlines()[0]}")
                figure(name, None, "ratio", "<= 0.6", None, cmd)
                return
            print(f"cpu-tiny {args.epochs} epochs: {new:.1f} s now, {old:.1f} s at {BASELINE}")
            figure(name, ratio, "ratio", "<= 0.6", ratio <= 0.6, cmd)


def _data_wait(data: Path) -> float:
    with tempfile.TemporaryDirectory() as out:
        args = ["train", "--preset", "cpu-tiny", "--data", str(data), "--out", out, "--no-track",
                "--profile", "--set", "train.epochs=1", "--set", "train.eval_every=100",
                "--set", "eval.trainval_identities=0"]  # fmt: skip
        _reid(REPO, *args)
        return float(json.loads((Path(out) / "profile.json").read_text())["data_wait_share"])


def _compiled_ms(data: Path) -> float:
    with tempfile.TemporaryDirectory() as out:
        args = ["train", "--preset", "cpu-tiny", "--data", str(data), "--out", out, "--no-track",
                "--profile", "--set", "train.compile=true", "--set", "train.epochs=1",
                "--set", "train.eval_every=100", "--set", "eval.trainval_identities=0"]  # fmt: skip
        _reid(REPO, *args)
        return float(json.loads((Path(out) / "profile.json").read_text())["step_ms"])


if __name__ == "__main__":
    main()
