"""Data-parallel training: `reid train` under torchrun (2 CPU processes, gloo) against a single
process on the same global batch, rank 0 alone writing, and a resumed run under torchrun."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reid_core.training.distributed import SINGLE, DistContext, launched
from studies.cli import main

# Relative tolerances of the per-epoch figures compared between the two runs. Measured (micro,
# 3 epochs x 2 steps): loss, ce and sdm agree to 2e-7 and the gradient norm to 1.1e-6 (float
# rounding: DDP sums the gradients in another order). The feature norm (pre-BNNeck, so not
# normalised) moves most, 6e-5: Adam turns rounding-level differences of near-zero gradients
# into learning-rate-sized steps. A real difference is far larger: the SDM softmax over one
# rank's share instead of the global batch, or a gradient N times too small, change them by
# several percent.
REL_TOL = {
    "loss": 1e-4, "ce": 1e-4, "sdm": 1e-4, "norm_penalty": 1e-4,
    "grad_norm": 1e-4, "feature_norm": 1e-3,
}  # fmt: skip
LOSS_KEYS = tuple(REL_TOL)

# No augmentation: flips and crops draw from each process's own torch generator, so they cannot
# match a single process. Modality dropout is keyed by sample and epoch, so it can: p=0.7 leaves
# some rank shares without a modality (variable gathers, parameters unused on one rank).
SAME_BATCH = (
    "train.epochs=3", "train.max_steps_per_epoch=2", "train.eval_every=100", "train.log_every=1",
    "data.augment.flip_p=0", "data.augment.pad=0", "data.modality_dropout.p=0.7",
    "data.num_workers=0",
)  # fmt: skip


def _sets(overrides: tuple[str, ...]) -> list[str]:
    return [x for o in overrides for x in ("--set", o)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(data: Path, out: Path, *args: str, nproc: int = 2) -> str:
    """`torchrun --nproc-per-node 2 -m studies.cli train ...` (what docs/DISTRIBUTED.md shows),
    or with `nproc=1` a plain `reid train`, both with one torch thread per process (the same
    kernels); returns the combined output of every rank."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["OMP_NUM_THREADS"] = "1"
    launcher = [
        "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
    ]  # fmt: skip
    cmd = [
        sys.executable, *(launcher if nproc > 1 else []),
        "-m", "studies.cli", "train", "--preset", "micro", "--data", str(data),
        "--out", str(out), "--no-track", *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=out.parent, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def _history(out: Path, kind: str = "train") -> list[dict]:
    rows = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == kind]


def _step_losses(output: str) -> list[float]:
    return [float(x) for x in re.findall(r"^step \d+: loss=(\S+)", output, re.MULTILINE)]


# ------------------------------------------------------------------------------- unit tests
def test_a_process_without_torchrun_is_a_single_process(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert launched() == SINGLE and not SINGLE.enabled and SINGLE.is_main
    # Without a process group every collective is the identity.
    logs = {"loss": 2.0, "batch_size": 8.0}
    assert SINGLE.mean_logs(logs, summed=("batch_size",)) == logs
    assert SINGLE.broadcast({"score": 1}) == {"score": 1} and SINGLE.all_gather(3) == [3]
    assert SINGLE.all_true(False) is False and SINGLE.sync_stop("pruned") == "pruned"
    assert SINGLE.device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launched() == DistContext(4, 3, 1) and not launched().is_main
    assert DistContext(4, 3, 1).device(torch.device("cuda")) == torch.device("cuda", 1)


def test_a_rank_resumes_its_own_rng_state_and_the_global_bad_image_count(synth_root):
    from reid_core.config import load_config
    from reid_core.training.checkpoint import rng_state
    from reid_core.training.setup import DataBundle, build_trainer

    cfg = load_config(preset="micro")
    trainer = build_trainer(cfg, DataBundle.load(synth_root, cfg), load_pretrained=False)
    state = trainer.state_dict()
    assert "rng_ranks" not in state  # a single process stores its own state only
    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        states.append(rng_state())
    state.update(rng_ranks=states, bad_images=5)
    trainer.dist = DistContext(2, 1, 1)  # as rank 1 of 2 sees it (no collective is involved)
    trainer.load_state_dict(state)
    assert torch.equal(torch.get_rng_state(), states[1]["torch"])
    assert trainer.state.bad_images == 0  # rank 0 carries the global count on
    trainer.dist = DistContext(2, 0, 0)
    trainer.load_state_dict(state)
    assert torch.equal(torch.get_rng_state(), states[0]["torch"])
    assert trainer.state.bad_images == 5


def test_ranks_other_than_0_neither_track_nor_print(synth_root, tmp_path, monkeypatch, capsys):
    import experiments.run
    from experiments.run import RunOutcome

    calls = []

    def fake_train(cfg, data_root, out, **kwargs):
        calls.append(kwargs)
        return RunOutcome("finished", None, None, None, None, {}, is_main=False)

    monkeypatch.setattr(experiments.run, "train", fake_train)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    store = tmp_path / "mlflow.db"
    argv = ["train", "--preset", "micro", "--data", str(synth_root), "--out", str(tmp_path / "r")]
    assert main([*argv, "--tracking-uri", f"sqlite:///{store}"]) == 0
    assert len(calls) == 1 and "callbacks" not in calls[0]  # no MLflow tracker
    assert not store.exists() and capsys.readouterr().out == ""


# ---------------------------------------------------------------------- two processes, gloo
def _stop_and_nan(rank: int, root: str, work: str, port: int) -> None:
    """One rank of `test_ranks_stop_together` (torch.multiprocessing spawns it)."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    from experiments.run import train
    from reid_core.config import load_config
    from reid_core.losses import objective
    from reid_core.training.callbacks import Callback

    class StopAtStep2(Callback):  # rank 0 alone runs callbacks, as under `reid train`
        def on_step_end(self, trainer, step, logs):
            if step == 2:
                trainer.request_stop("enough")

    cfg = load_config(preset="micro", overrides=["train.epochs=2", "data.num_workers=0"])
    outcome = train(cfg, Path(root), Path(work) / "stop", callbacks=[StopAtStep2()])
    report = {"status": outcome.status, "reason": outcome.stop_reason}
    if rank == 1:  # a non-finite loss on one rank only: the other must not run on alone
        real = objective.ReidObjective.loss
        calls = {"n": 0}

        def poisoned(self, model, batch, encoded, epoch):
            parts = real(self, model, batch, encoded, epoch)
            calls["n"] += 1
            if calls["n"] == 3:
                parts.total = parts.total * float("nan")
            return parts

        objective.ReidObjective.loss = poisoned
    try:
        train(cfg, Path(root), Path(work) / "nan")
    except Exception as exc:
        report["error"] = str(exc)
    Path(work, f"rank{rank}.json").write_text(json.dumps(report))


@pytest.mark.slow
@pytest.mark.integration
def test_ranks_stop_together_on_a_stop_request_and_on_a_non_finite_loss(synth_root, tmp_path):
    import torch.multiprocessing as mp

    procs = mp.start_processes(
        _stop_and_nan,
        args=(str(synth_root), str(tmp_path), _free_port()),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    try:
        for _ in range(300):  # a rank left waiting in a collective would hang here
            if procs.join(timeout=1):
                break
        else:
            pytest.fail("the ranks did not finish within 300 s")
    finally:
        for p in procs.processes:
            if p.is_alive():
                p.kill()
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for report in reports:
        assert report["status"] == "stopped" and report["reason"] == "enough"
        assert report["error"] == "non-finite loss at epoch 0 step 2"
    history = _history(tmp_path / "stop")
    assert len(history) == 1 and history[0]["epoch"] == 0  # stopped inside the first epoch
    stopped = json.loads((tmp_path / "stop" / "metrics.json").read_text())
    assert stopped["status"] == "stopped" and "score" not in stopped


@pytest.mark.slow
@pytest.mark.integration
def test_two_processes_gather_the_grey_pass(synth_root, tmp_path):
    """With colour dimensions each rank encodes a grey pass of its own RGB images (a channel
    drawn at random per rank, so no single process draws the same), gathered like the RGB
    features: the run trains, aligns the pass and evaluates."""
    out = tmp_path / "grey"
    _torchrun(synth_root, out, *_sets((*SAME_BATCH, "model.head.colour_dims=16")))
    history = _history(out)
    assert len(history) == 3
    assert all(math.isfinite(h["loss"]) and math.isfinite(h["sdm/vis_grey"]) for h in history)
    assert json.loads((out / "metrics.json").read_text())["status"] == "finished"


@pytest.mark.slow
@pytest.mark.integration
def test_two_processes_follow_the_single_process_loss_curve(synth_root, tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    overrides = _sets(SAME_BATCH)
    single_out = _torchrun(synth_root, single, *overrides, nproc=1)
    output = _torchrun(synth_root, ddp, *overrides)

    one, two = _history(single), _history(ddp)
    assert len(one) == len(two) == 3  # one history writer: rank 0
    for a, b in zip(one, two, strict=True):
        for key, rel in REL_TOL.items():
            assert b[key] == pytest.approx(a[key], rel=rel, abs=1e-6), (a["epoch"], key)
        assert b["samples_per_s"] > 0
    # Per step (the progress lines, 4 significant digits): rank 0 alone prints them.
    steps = _step_losses(output)
    assert len(steps) == 6 and steps == pytest.approx(_step_losses(single_out), rel=1e-3)
    test_one = json.loads((single / "metrics.json").read_text())["score"]
    test_two = json.loads((ddp / "metrics.json").read_text())["score"]
    assert test_two == pytest.approx(test_one, abs=1e-3)
    assert output.count("wrote ") == 1 and output.count("nir_cp_sk_text") == 1

    # Rank 0 alone wrote, and its checkpoints are interchangeable with a single process's.
    assert sorted(p.name for p in (ddp / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    mine = torch.load(ddp / "checkpoints" / "last.pt", weights_only=True)
    theirs = torch.load(single / "checkpoints" / "last.pt", weights_only=True)
    assert list(mine["model"]) == list(theirs["model"])  # no DDP `module.` prefix
    assert len(mine["rng_ranks"]) == 2 and "rng_ranks" not in theirs


@pytest.mark.slow
@pytest.mark.integration
def test_a_resumed_run_under_torchrun_continues_identically(synth_root, tmp_path):
    from experiments.run import evaluate
    from reid_core.config import load_config

    # With augmentation on (each rank draws from its own generator) and a schedule that does
    # not depend on train.epochs, so that 1 epoch + 1 resumed epoch is the 2-epoch run.
    common = (
        "train.max_steps_per_epoch=2", "train.eval_every=1", "optim.scheduler.name=step",
        "data.modality_dropout.p=0.7", "data.num_workers=0",
    )  # fmt: skip
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    _torchrun(synth_root, whole, *_sets((*common, "train.epochs=2")))
    _torchrun(synth_root, cut, *_sets((*common, "train.epochs=1")))
    _torchrun(synth_root, cut, "--resume", *_sets((*common, "train.epochs=2")))

    a, b = _history(whole), _history(cut)
    assert [r["epoch"] for r in b] == [0, 1]
    assert {k: b[1][k] for k in LOSS_KEYS} == {k: a[1][k] for k in LOSS_KEYS}
    scores = [[r["score"] for r in _history(run, "val")] for run in (cut, whole)]
    assert scores[0] == scores[1]
    result = json.loads((cut / "metrics.json").read_text())
    assert result["score"] == json.loads((whole / "metrics.json").read_text())["score"]

    # The torchrun checkpoint scores the same in a single process.
    cfg = load_config(preset="micro", overrides=[*common, "train.epochs=2"])
    best = cut / "checkpoints" / "best.pt"
    alone = evaluate(cfg, synth_root, checkpoint=best, split="test", out=None)
    assert alone["score"] == pytest.approx(result["score"], abs=1e-6)
