"""MLflow's system metrics (CPU, memory, disk, network; GPU utilisation, memory and power where
`pynvml` sees a GPU) beside a tracked run's losses, under `system/` in the run's charts.

On for every tracked run; MLflow's own switch turns them off
(`MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false`) and its variables set the sampling
(`MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`, seconds, default 10 here).
"""

from __future__ import annotations

import logging
import os
from typing import Any

SAMPLING_S = 10.0
_OFF = {"0", "false", "no", "off"}


def enabled() -> bool:
    return os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "").strip().lower() not in _OFF


def start(run_id: str, tracking_uri: str) -> Any | None:
    """A started monitor logging to `run_id` (it stops by itself when the run ends), or None
    when turned off or psutil is missing."""
    if not enabled():
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    except ImportError:  # psutil is a dependency; a trimmed environment runs without
        return None
    # MLflow logs a line at INFO for every start and stop: one per run is noise in a study
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    try:
        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=SAMPLING_S, tracking_uri=tracking_uri
        )
    except Exception as e:  # a side channel: the run goes on without it
        logging.getLogger(__name__).warning("system metrics are off for this run: %s", e)
        return None
    monitor.start()
    return monitor


def stop(monitor: Any | None) -> None:
    """Stop sampling and flush what was sampled (waits at most one sampling interval)."""
    if monitor is not None:
        monitor.finish()
