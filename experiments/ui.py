"""`reid ui`: the MLflow UI (its tracking server) over the project's store, on loopback.

`reid ui` opens the store first (a fresh SQLite file gets its schema now; a store that cannot
be used is one line), prints where to look (the newest studies' saved views, the training runs),
then replaces itself with the server: uvicorn serving `experiments.ui_app` in this process, the
one process `mlflow server --workers 1` would have started as its child. With MLflow's GenAI
job workers off, that is one process instead of three (docs/TRACKING.md, "UI"). On Windows,
where exec starts a new process and hands the console back at once, the server runs as a
child that `reid ui` waits for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import click

APP = "experiments.ui_app:app"
_SHOWN_STUDIES = 3


def server_env(uri: str) -> dict[str, str]:
    """What `mlflow server` tells its uvicorn child (MLflow's own variable names): the stores,
    served artifacts (local stores: in ./mlartifacts) and its GenAI job workers off (with them
    one server was 10 processes and 2.4 GiB here)."""
    from mlflow.environment_variables import (
        _MLFLOW_IN_JOB_EXECUTOR,
        _MLFLOW_SERVER_BOOT_ID,
        _MLFLOW_SGI_NAME,
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION,
    )
    from mlflow.server import constants as c

    from experiments.store import DEFAULT_ARTIFACTS, is_local

    root = Path(DEFAULT_ARTIFACTS).resolve()
    return {
        **os.environ,
        c.BACKEND_STORE_URI_ENV_VAR: uri,
        c.REGISTRY_STORE_URI_ENV_VAR: uri,
        c.ARTIFACT_ROOT_ENV_VAR: root.as_uri() if is_local(uri) else "mlflow-artifacts:/",
        c.SERVE_ARTIFACTS_ENV_VAR: "true",
        c.ARTIFACTS_DESTINATION_ENV_VAR: str(root),
        c.SECRETS_CACHE_TTL_ENV_VAR: "60",  # `mlflow server`'s defaults
        c.SECRETS_CACHE_MAX_SIZE_ENV_VAR: "1000",
        _MLFLOW_SERVER_BOOT_ID.name: uuid.uuid4().hex,
        _MLFLOW_SGI_NAME.name: "uvicorn",
        _MLFLOW_IN_JOB_EXECUTOR.name: "false",
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION.name: "false",
    }


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """The server's command line (`uri` reaches it through `server_env`)."""
    import mlflow

    log_config = Path(mlflow.__file__).parent / "server" / "uvicorn_log_config.yaml"
    logs = ["--log-config", str(log_config)] if log_config.is_file() else []
    return [sys.executable, "-m", "uvicorn", *logs, "--host", host, "--port", str(port),
            "--workers", "1", APP]  # fmt: skip


def open_ui_store(uri: str) -> Any:
    """The store's client, after one read that creates a fresh SQLite file's schema (under the
    store's lock, as `open_store` does); one line when the store cannot be used."""
    import mlflow

    from experiments.store import TrackingError, _quiet_mlflow, _store_lock

    _quiet_mlflow()
    try:
        with _store_lock(uri):
            client = mlflow.MlflowClient(uri, uri)
            client.search_experiments(max_results=1)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else repr(exc)
        raise TrackingError(f"tracking store {uri}: {reason}") from None
    return client


def where_to_look(client: Any, address: str) -> list[str]:
    """Lines naming the newest studies' saved views and the training runs."""
    from experiments import links
    from experiments.store import DEFAULT_EXPERIMENT
    from experiments.views import saved_views

    found = client.get_experiment_by_name(DEFAULT_EXPERIMENT)
    if found is None:
        return [f"experiments: {address}/#/experiments"]
    eid = found.experiment_id
    lines = [
        f"{name}: {address}/{links.view_path(eid, key)}"
        for key, name in saved_views(found)[:_SHOWN_STUDIES]
    ]
    return [*lines, f"training runs: {address}/{links.runs_path(eid)}"]


def run_ui(tracking_uri: str | None, host: str, port: int) -> int:
    """Print the address and links, then become the server (see the module docstring)."""
    from experiments.store import check_reachable, resolve_uri

    uri = resolve_uri(tracking_uri)
    check_reachable(uri)
    if not uri.startswith(("sqlite:", "postgresql", "mysql", "file:")) and "://" in uri:
        click.echo(f"{uri} is already a tracking server: open it in a browser", err=True)
        return 2
    client = open_ui_store(uri)
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port}"
    click.echo(f"MLflow UI for {uri} at {address}  (Ctrl-C stops it)")
    for line in where_to_look(client, address):
        click.echo(line)
    cmd, env = ui_command(uri, host, port), server_env(uri)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "nt":
        return _run_child(cmd, env)
    os.execve(cmd[0], cmd, env)  # does not return: this process is the server now
    return 0  # pragma: no cover


def _run_child(cmd: list[str], env: dict[str, str]) -> int:
    """Windows: the server as a child process, stopped with `reid ui`."""
    proc = subprocess.Popen(cmd, env=env)
    try:
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
