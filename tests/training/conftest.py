from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A small synthetic dataset shared by the training tests (read-only for them)."""
    from reid_core.data.synth import synthesize

    root = tmp_path_factory.mktemp("synth") / "data"
    synthesize(root, identities=24, seed=0, size=(64, 32))
    return root


@pytest.fixture
def micro_overrides():
    """micro, shortened: 2 epochs of at most 3 steps, val each epoch."""
    return ["train.epochs=2", "train.max_steps_per_epoch=3", "train.eval_every=1"]
