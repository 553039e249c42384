"""Study overhead: a 4-trial study (one worker, no pruner) against the same 4 configs run as
plain, tracked `reid train` processes one after the other. Target: <= 10% more wall time.

Both sides run here, in one bench run, on the same synthetic data; each side gets a fresh
temporary folder with its own SQLite stores, so both pay store creation and imports.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from figures import command, figure

REID = [sys.executable, "-m", "studies.cli"]


def _configs(n: int) -> list[dict]:
    from pruning_bench import _configs as draw

    from studies.spec import load_spec

    return draw(load_spec("demo"), n, 0)


def _base(args: argparse.Namespace) -> dict:
    return {"train.epochs": args.epochs, "train.eval_every": args.epochs}


def _plain(configs: list[dict], root: Path, work: Path, args: argparse.Namespace) -> float:
    t0 = time.perf_counter()
    for i, config in enumerate(configs):
        sets = [f"{k}={v}" for k, v in {**_base(args), **config}.items()]
        cmd = [*REID, "train", "--preset", "cpu-tiny", "--data", str(root), "--out", f"run{i}"]
        cmd += [x for s in sets for x in ("--set", s)]
        subprocess.run(cmd, cwd=work, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def _study(configs: list[dict], root: Path, work: Path, args: argparse.Namespace) -> float:
    spec = {
        "name": "overhead",
        "base": {"preset": "cpu-tiny", "overrides": _base(args)},
        "space": yaml.safe_load(yaml.safe_dump(_space())),
        "enqueue": configs,
        "sampler": {"type": "random", "seed": 0},
        "pruner": {"type": "none"},
        "budget": {"n_trials": len(configs)},
    }
    path = work / "overhead.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    t0 = time.perf_counter()
    cmd = [*REID, "study", "run", str(path), "--data", str(root), "--workers", "1"]
    subprocess.run(cmd, cwd=work, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def _space() -> dict:
    from studies.spec import load_spec, spec_to_dict

    return spec_to_dict(load_spec("demo"))["space"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args()

    from reid_core.data.synth import synthesize

    configs = _configs(args.trials)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        synthesize(root, identities=args.identities, seed=0, size=(64, 32))
        (Path(tmp) / "plain").mkdir()
        (Path(tmp) / "study").mkdir()
        print(f"{args.trials} configs, cpu-tiny {args.epochs} epochs, {args.identities} identities")
        print(f"load average at start {os.getloadavg()[0]:.2f}")
        plain = _plain(configs, root, Path(tmp) / "plain", args)
        study = _study(configs, root, Path(tmp) / "study", args)
    ratio = study / plain
    print(
        f"plain reid train x{args.trials}: {plain:.1f} s; study: {study:.1f} s; ratio {ratio:.3f}"
    )
    figure(
        "study wall time / plain reid train runs",
        ratio,
        "ratio",
        "<= 1.10",
        ratio <= 1.10,
        command(__file__, *sys.argv[1:]),
    )


if __name__ == "__main__":
    main()
