"""One tracked `micro` training run in a per-session SQLite store, shared read-only by the
experiments tests (a run costs seconds; each test building its own would cost minutes)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

OVERRIDES = ["train.epochs=1", "train.max_steps_per_epoch=2"]


@dataclass
class TrackedRun:
    root: Path  # dataset
    home: Path  # the cwd of the run: mlflow.db and mlartifacts live here
    uri: str
    run_id: str
    experiment_id: str
    result: dict[str, Any]
    out: Path


def wait_http(url: str, proc: Any, log: Path | None = None, timeout: float = 180) -> None:
    """Until `url` answers; fails naming the server's output when it exits first."""
    import time
    import urllib.request

    def tail() -> str:
        return log.read_text()[-2000:] if log is not None and log.exists() else ""

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s: {tail()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def exp_root(tmp_path_factory) -> Path:
    from reid_core.data.synth import synthesize

    root = tmp_path_factory.mktemp("exp-synth") / "data"
    synthesize(root, identities=24, seed=0, size=(48, 24))
    return root


@pytest.fixture(scope="session")
def tracked(tmp_path_factory, exp_root) -> TrackedRun:
    from experiments.run import train
    from experiments.tracking import MlflowTracker, open_store
    from reid_core.config import load_config

    home = tmp_path_factory.mktemp("exp-home")
    uri = f"sqlite:///{home}/mlflow.db"
    cfg = load_config(preset="micro", overrides=OVERRIDES)
    before = Path.cwd()
    os.chdir(home)  # the store's defaults are relative to the cwd, as in `reid train`
    # a sample every 0.2 s, so the seconds of a micro run log system metrics
    sampling = os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")
    os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "0.2"
    try:
        out = home / "runs" / "tracked"
        with MlflowTracker(cfg, exp_root, out, store=open_store(uri)) as tracker:
            outcome = train(cfg, exp_root, out, callbacks=[tracker])
            tracker.finish(outcome)
        result = outcome.result
    finally:
        os.chdir(before)
        if sampling is None:
            os.environ.pop("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", None)
        else:
            os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = sampling
    assert tracker.logged_run_id and tracker.model_version == "1"
    return TrackedRun(
        exp_root, home, uri, tracker.logged_run_id, tracker.store.experiment_id, result, out
    )


@pytest.fixture(scope="session")
def champion(tracked) -> TrackedRun:
    """`omnireid@champion` -> version 1 (the tracked run's model)."""
    import mlflow

    from experiments.registry import alias_holder, promote

    client = mlflow.MlflowClient(tracked.uri, tracked.uri)
    if alias_holder(client, "omnireid", "champion") is None:
        promote(client, "omnireid", version="1")
    return tracked


@pytest.fixture
def mlflow_env(tracked, monkeypatch):
    """The tracked store as the process's default tracking URI."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked.uri)
    mlflow.set_tracking_uri(tracked.uri)
    mlflow.set_registry_uri(tracked.uri)
    return tracked
