"""bench/attribute_probe.py: the linear probes read attributes that are there and not others."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def attribute_probe(monkeypatch):
    path = BENCH / "attribute_probe.py"
    spec = importlib.util.spec_from_file_location("attribute_probe_under_test", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_probe_reads_a_planted_attribute_and_not_noise(attribute_probe):
    g = torch.Generator().manual_seed(0)
    y_train = torch.randint(0, 3, (300,), generator=g)
    y_test = torch.randint(0, 3, (90,), generator=g)
    direction = torch.randn(3, 16, generator=g)

    def features(y: torch.Tensor) -> torch.Tensor:
        return direction[y] + 0.3 * torch.randn(len(y), 16, generator=g)

    probe = attribute_probe.fit_probe(features(y_train), y_train, 3)
    with torch.no_grad():
        planted = attribute_probe.balanced_accuracy(probe(features(y_test)).argmax(1), y_test, 3)
        noise = torch.randn(90, 16, generator=g)
        unseen = attribute_probe.balanced_accuracy(probe(noise).argmax(1), y_test, 3)
    assert planted > 0.95 and unseen < 0.6
    # balanced: always answering the majority class scores 1 / classes, however common it is
    skewed = torch.tensor([0] * 8 + [1, 2])
    assert attribute_probe.balanced_accuracy(torch.zeros(10, dtype=torch.long), skewed, 3) == (
        pytest.approx(1 / 3)
    )


@pytest.mark.slow
def test_probe_runs_on_a_trained_checkpoint(attribute_probe, tmp_path):
    from experiments.run import train
    from reid_core.config import load_config
    from reid_core.data.synth import synthesize

    synth_root = tmp_path / "data"
    synthesize(synth_root, identities=24, seed=0, size=(64, 32))
    overrides = ["train.epochs=1", "train.max_steps_per_epoch=2", "train.eval_every=1"]
    train(load_config(preset="micro", overrides=overrides), synth_root, tmp_path / "run")
    result = attribute_probe.probe(tmp_path / "run" / "checkpoints" / "last.pt", synth_root, 0)
    assert set(result) == set(attribute_probe.ATTRIBUTES)
    for name, row in result.items():
        assert set(row) == {"vis", "nir", "sk", "cp", "chance"}, name
        assert all(0.0 <= cell[k] <= 1.0 for cell in row.values() for k in cell), name
    assert result["cap"]["chance"]["own"] == pytest.approx(0.5)
