"""MLflow's system metrics for tracked runs: on by default, off by MLflow's own switch."""

from __future__ import annotations

import time

import pytest

from experiments import system_metrics


@pytest.mark.parametrize("value", ["false", "0", "OFF"])
def test_mlflows_switch_turns_them_off(monkeypatch, value):
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", value)
    assert system_metrics.start("any-run", "sqlite:///unused.db") is None


def test_a_run_gets_cpu_and_memory_samples(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    run = client.create_run(client.create_experiment("sys", str(tmp_path / "art")))
    monitor = system_metrics.start(run.info.run_id, uri)
    assert monitor is not None
    time.sleep(1.0)
    system_metrics.stop(monitor)
    metrics = client.get_run(run.info.run_id).data.metrics
    assert metrics["system/cpu_utilization_percentage"] >= 0
    assert metrics["system/system_memory_usage_megabytes"] > 0
    system_metrics.stop(None)  # nothing to stop: no error
