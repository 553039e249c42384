"""The `trainval` evaluation (a fixed sample of training identities scored at each validation)
and the per-view diagnostics reaching the callbacks."""

from __future__ import annotations

import io

from reid_core.config import load_config
from reid_core.training.callbacks import Callback
from reid_core.training.hooks import ProgressCallback
from reid_core.training.setup import DataBundle, build_trainer


def _cfg(*overrides):
    return load_config(preset="micro", overrides=list(overrides))


def test_trainval_protocol_is_a_fixed_sample_of_training_identities(synth_root):
    cfg = _cfg("eval.trainval_identities=5")
    a, b = DataBundle.load(synth_root, cfg), DataBundle.load(synth_root, cfg)
    assert a.trainval is not None and b.trainval is not None
    pids = a.trainval.pids()
    assert len(pids) == 5 and pids <= set(a.splits.train)
    assert a.trainval == b.trainval and a.protocol("trainval") is a.trainval
    assert len(a.trainval.sets) == 15
    assert DataBundle.load(synth_root, _cfg("eval.trainval_identities=0")).trainval is None


class _Seen(Callback):
    def __init__(self) -> None:
        self.splits: list[str] = []
        self.epoch_logs: list[dict[str, float]] = []

    def on_epoch_end(self, trainer, epoch, logs):
        self.epoch_logs.append(logs)

    def on_evaluate(self, trainer, epoch, split, metrics):
        self.splits.append(split)
        assert metrics["split"] == split


def test_each_validation_scores_trainval_after_val_and_prints_singles(synth_root):
    cfg = _cfg("train.epochs=1", "train.max_steps_per_epoch=2", "eval.trainval_identities=4")
    data = DataBundle.load(synth_root, cfg)
    seen, stream = _Seen(), io.StringIO()
    trainer = build_trainer(cfg, data, [seen, ProgressCallback(stream=stream)])
    trainer.fit()
    assert seen.splits == ["val", "trainval"]
    logs = seen.epoch_logs[0]
    assert {"sdm/nir", "sdm/sk", "sdm/nir_sk", "ce/nir"} <= set(logs)
    lines = [line for line in stream.getvalue().splitlines() if " @ epoch " in line]
    assert lines[0].startswith("val @ epoch 1") and lines[1].startswith("trainval @ epoch 1")
    assert all("| mAP nir=" in line and " sk=" in line for line in lines)
