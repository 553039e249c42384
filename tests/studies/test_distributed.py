"""Many workers on PostgreSQL storage with a real MLflow server; a worker killed mid-trial."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.studies.conftest import reid, trials, write_spec

pytestmark = [pytest.mark.postgres, pytest.mark.integration, pytest.mark.slow]


def test_three_workers_two_trials_each_on_postgres_and_an_mlflow_server(
    tmp_path, study_root, pg_db, mlflow_server
):
    import mlflow

    path = write_spec(tmp_path, "pg-three", budget={"n_trials": 6})
    # The password reaches neither logs, tags nor params (trust auth ignores it here).
    storage = pg_db.replace("postgres@", "postgres:s3cret-pw@")
    proc = reid(
        "study", "run", str(path), "--data", str(study_root), "--workers", "3",
        "--storage", storage, "--tracking-uri", mlflow_server,
        cwd=tmp_path,
    )  # fmt: skip
    out = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, out
    got = trials(storage, "pg-three")
    assert len(got) == 6 and len({t.number for t in got}) == 6
    assert [t.state.name for t in got] == ["COMPLETE"] * 6, out
    assert len({t.user_attrs["worker"] for t in got}) == 3  # every worker ran trials

    client = mlflow.MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("omnireid")
    (parent,) = client.search_runs([exp.experiment_id], "tags.kind = 'study'")
    children = client.search_runs([exp.experiment_id], "tags.kind = 'trial'")
    assert parent.info.status == "FINISHED" and len(children) == 6
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.info.status for c in children} == {"FINISHED"}
    assert sorted(int(c.data.tags["optuna.trial"]) for c in children) == list(range(6))
    assert {t.user_attrs["mlflow_run_id"] for t in got} == {c.info.run_id for c in children}
    # Artifacts come back through the server (served artifacts, not a shared folder).
    local = client.download_artifacts(children[0].info.run_id, "metrics/test.csv", str(tmp_path))
    assert Path(local).read_text(encoding="utf-8").startswith("set,level,queries")
    logs = "".join(p.read_text() for p in (tmp_path / "runs").rglob("*.log")) + out
    for run in (parent, *children):
        logs += repr(run.data.tags) + repr(run.data.params)
    assert "s3cret-pw" not in logs and "postgres:***@" in parent.data.tags["optuna.storage"]


def test_a_killed_worker_is_retried_from_its_checkpoint(tmp_path, study_root, pg_db):
    import mlflow

    overrides = {"overrides.train.epochs": 12, "overrides.train.max_steps_per_epoch": 4}
    path = write_spec(tmp_path, "pg-kill", budget={"n_trials": 1}, **overrides)
    mlflow_uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = ["--storage", pg_db, "--tracking-uri", mlflow_uri, "--data", str(study_root)]
    created = reid("study", "create", str(path), *common, cwd=tmp_path)
    assert created.wait(timeout=180) == 0, created.communicate()[0]

    first = reid("study", "worker", "pg-kill", *common, cwd=tmp_path, start_new_session=True)
    ckpt = tmp_path / "runs" / "studies" / "pg-kill" / "t0000" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not ckpt.exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert ckpt.exists(), first.communicate()[0]
    os.killpg(first.pid, signal.SIGKILL)  # no goodbye: the heartbeat just stops
    first.wait(timeout=30)
    assert [t.state.name for t in trials(pg_db, "pg-kill")] == ["RUNNING"]

    second = reid("study", "worker", "pg-kill", *common, cwd=tmp_path)
    out = second.communicate(timeout=600)[0]
    assert second.returncode == 0, out
    dead, retry = sorted(trials(pg_db, "pg-kill"), key=lambda t: t.number)
    assert dead.state.name == "FAIL" and retry.state.name == "COMPLETE", out
    assert retry.user_attrs["resumed_from_epoch"] >= 1

    client = mlflow.MlflowClient(mlflow_uri)
    assert client.get_run(dead.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    run = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["retry_of"] == "0"
    assert int(run.data.tags["resumed_from_epoch"]) >= 1
    exp = client.get_experiment_by_name("omnireid")
    (parent,) = client.search_runs([exp.experiment_id], "tags.kind = 'study'")
    assert parent.info.status == "FINISHED"  # the budget (one trial) is met
