"""Fault-injection fixtures: a small synthetic tree copied per test, and ways to break it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SHORT = ["train.max_steps_per_epoch=2", "train.eval_every=1"]


@pytest.fixture(scope="session")
def pristine_root(tmp_path_factory) -> Path:
    from reid_core.data.synth import synthesize

    root = tmp_path_factory.mktemp("faults") / "data"
    synthesize(root, identities=16, seed=0, size=(64, 32))
    return root


@pytest.fixture
def data_root(pristine_root, tmp_path) -> Path:
    """A private copy: tests truncate its images."""
    root = tmp_path / "data"
    shutil.copytree(pristine_root, root)
    return root


def truncate_first(root: Path, modality: str, pids: set[int] | None = None) -> list[str]:
    """Cut the first `modality` image of each identity (or of `pids`) to a third of its bytes;
    returns the paths relative to `root`."""
    done = []
    for folder in sorted((root / modality).iterdir()):
        if pids is not None and int(folder.name) not in pids:
            continue
        image = sorted(folder.iterdir())[0]
        blob = image.read_bytes()
        image.write_bytes(blob[: len(blob) // 3])
        done.append(image.relative_to(root).as_posix())
    return done


def split_pids(root: Path, split: str) -> set[int]:
    from reid_core.config import load_config
    from reid_core.training.setup import DataBundle

    splits = DataBundle.load(root, load_config(preset="micro")).splits
    return set(getattr(splits, split))


def reid(*args: str) -> int:
    """`reid ARGS` in this process (the real entry point, exit status returned)."""
    from studies.cli import main

    return main([str(a) for a in args])
