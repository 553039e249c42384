"""`reid ui`: the MLflow UI (its tracking server) over the project's store, on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import click


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """The `mlflow server` command line for `uri` (local stores: artifacts in ./mlartifacts)."""
    from experiments.store import DEFAULT_ARTIFACTS, is_local

    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    if is_local(uri):
        root = Path(DEFAULT_ARTIFACTS).resolve()
        cmd += ["--default-artifact-root", root.as_uri(), "--artifacts-destination", str(root)]
    return cmd


def server_env() -> dict[str, str]:
    """The environment of an `mlflow server` we start: MLflow's GenAI job workers off (with
    them one server was 10 processes and 2.4 GiB here, without them 2 and 0.5 GiB)."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def runs_view(uri: str, address: str) -> str:
    """The training-runs page of the default experiment (MLflow 3 otherwise opens on its
    GenAI overview)."""
    from experiments.store import DEFAULT_EXPERIMENT
    from experiments.tracking import UI_RUNS_VIEW

    try:
        import mlflow

        found = mlflow.MlflowClient(uri).get_experiment_by_name(DEFAULT_EXPERIMENT)
    except Exception:  # an empty or foreign store: the UI's front page will do
        found = None
    if found is None:
        return f"{address}/#/experiments"
    return f"{address}/#/experiments/{found.experiment_id}/{UI_RUNS_VIEW}"


def run_ui(tracking_uri: str | None, host: str, port: int) -> int:
    """Run the UI until interrupted; prints its address first. Returns the exit status."""
    from experiments.store import check_reachable, resolve_uri
    from experiments.tracking import sigterm_as_interrupt

    uri = resolve_uri(tracking_uri)
    check_reachable(uri)
    if not uri.startswith(("sqlite:", "postgresql", "mysql", "file:")) and "://" in uri:
        click.echo(f"{uri} is already a tracking server: open it in a browser", err=True)
        return 2
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port}"
    click.echo(f"MLflow UI for {uri} at {address}  (Ctrl-C stops it)")
    click.echo(f"training runs: {runs_view(uri, address)}")
    # Its own process group, so stopping `reid ui` stops the server and its workers too.
    proc = subprocess.Popen(ui_command(uri, host, port), start_new_session=True, env=server_env())
    try:
        with sigterm_as_interrupt():
            return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate `proc` and the processes of its group (POSIX), then kill what remains."""
    if proc.poll() is not None:
        return
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
