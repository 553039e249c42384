"""SIGTERM during `reid train` (a scheduler pre-empting the job).

The last completed epoch's checkpoint is on disk (written atomically each epoch: the epoch in
flight is lost), the MLflow run ends KILLED, the process exits 143 (128 + SIGTERM), and
`reid train --resume` continues to exactly the weights and scores of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reid_core.training.checkpoint import load_checkpoint
from tests.faults.conftest import SHORT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SETS = [*SHORT, "train.epochs=4", "train.seed=3", "eval.trainval_identities=8"]  # with trainval


def _cmd(root: Path, out: Path, *more: str) -> list[str]:
    sets = [a for s in SETS for a in ("--set", s)]
    return [sys.executable, "-m", "studies.cli", "train", "--preset", "micro", "--data",
            str(root), "--out", str(out), *sets, *more]  # fmt: skip


def test_sigterm_kills_the_run_and_resume_continues_identically(data_root, tmp_path):
    from mlflow.tracking import MlflowClient

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    track = ["--tracking-uri", db, "--experiment", "faults"]
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _cmd(data_root, out, *track), cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    last = out / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 240
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "terminated (SIGTERM)"
    stopped_at = load_checkpoint(last)["epoch"]
    assert 1 <= stopped_at < 4

    client = MlflowClient(db)
    (run,) = client.search_runs([client.get_experiment_by_name("faults").experiment_id])
    assert run.info.status == "KILLED"

    resumed = subprocess.run(_cmd(data_root, out, "--resume", "--no-track"), cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = subprocess.run(_cmd(data_root, tmp_path / "ref", "--no-track"), cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert straight.returncode == 0, straight.stderr[-2000:]

    a = load_checkpoint(last)
    b = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 4 and a["step"] == b["step"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    got = json.loads((out / "metrics.json").read_text())
    want = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert got["score"] == want["score"] and got["sets"] == want["sets"]
