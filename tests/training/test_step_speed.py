"""The training step never waits for the device, and a profiled run reports its own speed."""

from __future__ import annotations

import json

import pytest
import torch

from reid_core.config import load_config
from reid_core.training.profile import StepCounter
from reid_core.training.setup import DataBundle, build_trainer


def test_the_counter_sees_every_kind_of_host_sync():
    counter = StepCounter()
    x = torch.randn(8)
    with counter.counting():
        bool(x.sum() > 0)
        float(x[0])
        x[x > 0]  # boolean-mask indexing runs nonzero
        x.tolist()
        x.nonzero()
        (x * 2).add_(1)
    assert {"__bool__", "__float__", "__getitem__", "tolist", "nonzero"} <= set(counter.syncs)
    assert counter.total_ops >= 2 and counter.ops["aten.mul"] == 1


@pytest.mark.parametrize("colour_dims", [0, 16])  # with and without the grey pass
def test_a_training_step_makes_no_host_sync(synth_root, colour_dims):
    cfg = load_config(
        preset="micro",
        overrides=[f"model.head.colour_dims={colour_dims}", "data.modality_dropout.p=0.3"],
    )
    trainer = build_trainer(cfg, DataBundle.load(synth_root, cfg), load_pretrained=False)
    trainer.model.train()
    loader = iter(trainer.loader)  # the loader is the host's work: fetched before counting
    batches = [next(loader) for _ in range(3)]
    trainer._train_step(batches[0], 0)  # warm-up: lazy initialisation may read the device
    counter = StepCounter()
    with counter.counting():
        for batch in batches[1:]:
            names, values = trainer._train_step(batch, 0)
    assert counter.total_syncs == 0, dict(counter.syncs)
    assert counter.total_ops > 100  # the counter saw the step
    assert names[0] == "loss" and values.shape == (len(names),)


def test_profiled_run_writes_its_speed_and_a_trace(synth_root, tmp_path):
    from studies.cli import main

    out = tmp_path / "run"
    args = ["train", "--preset", "micro", "--data", str(synth_root), "--out", str(out),
            "--no-track", "--profile", "--set", "train.epochs=8",
            "--set", "train.eval_every=8"]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "profile.json").read_text())
    assert report["steps_timed"] == 10 and report["host_syncs_per_step"] == 0
    assert report["ops_per_step"] > 100 and report["samples_per_s"] > 0
    assert report["step_ms"] > 0 and 0 <= report["data_wait_share"] < 1
    assert report["flops_per_step"] > 0 and 0 < report["mfu"] < 1
    trace = json.loads((out / report["trace"]).read_text())  # Perfetto's chrome-trace format
    assert trace["traceEvents"]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert all("data_wait_share" in row for row in history if row["kind"] == "train")


def test_compile_falls_back_to_eager_in_one_line(synth_root, monkeypatch, capsys):
    from torch._dynamo.exc import Unsupported

    from reid_core.training import compiling

    def cannot(fn, **kwargs):
        def call(*args, **kw):
            raise Unsupported("no compiler for this op")

        return call

    monkeypatch.setattr(compiling.torch, "compile", cannot)
    cfg = load_config(preset="micro", overrides=["train.compile=true", "train.epochs=1"])
    trainer = build_trainer(cfg, DataBundle.load(synth_root, cfg), load_pretrained=False)
    assert "rows" in trainer.model.fusion.__dict__  # the compiled callable is installed
    assert trainer.fit() == "finished"
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("train.compile:")]
    assert lines == ["train.compile: cannot compile here (no compiler for this op); training eager"]
    assert "rows" not in trainer.model.fusion.__dict__  # the eager method is back
