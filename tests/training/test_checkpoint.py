from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from reid_core.errors import CheckpointError
from reid_core.training.checkpoint import (
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def test_rng_round_trip_through_weights_only_file(tmp_path):
    torch.manual_seed(3)
    state = rng_state()
    save_checkpoint(tmp_path / "c.pt", {"model": {}, "rng": state})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded = load_checkpoint(tmp_path / "c.pt")  # weights_only=True inside
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match=r"bad\.pt"):
        load_checkpoint(bad)


def test_atomic_save_leaves_no_temporary(tmp_path):
    save_checkpoint(tmp_path / "a.pt", {"model": {"w": torch.ones(2)}})
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_architecture_mismatch_names_keys():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    state = torch.nn.Sequential(torch.nn.Linear(2, 4)).state_dict()
    with pytest.raises(CheckpointError, match=r"shape: 0\.bias, 0\.weight"):
        load_model_state(model, state, "x.pt")
    with pytest.raises(CheckpointError, match=r"missing: 0\.bias"):
        load_model_state(model, {"0.weight": torch.zeros(3, 2)}, "x.pt")
