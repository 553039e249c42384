"""Study fixtures: tiny data, spec files, a fresh PostgreSQL database per test session (on the
shared server at 127.0.0.1:5432, dropped afterwards) and a real `mlflow server` on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

PG_HOST = os.environ.get("OMNIREID_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REPO = Path(__file__).resolve().parents[2]

# A micro study: trials take seconds. Epoch count and steps are set per test.
MICRO = {
    "base": {
        "preset": "micro",
        "overrides": {"train.epochs": 2, "train.eval_every": 1, "train.max_steps_per_epoch": 2},
    },
    "space": {
        "optim.lr.head": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True},
        "model.lora.rank": {"type": "categorical", "choices": [2, 4]},
    },
    "sampler": {"type": "random", "seed": 0},
    "pruner": {"type": "none"},
    "storage": {"heartbeat_interval": 1, "grace_period": 4, "max_retries": 2},
}


def write_spec(folder: Path, name: str, **changes: Any) -> Path:
    """A spec file `folder/<name>.yaml`: MICRO with `changes` (dotted keys for overrides)."""
    tree = yaml.safe_load(yaml.safe_dump(MICRO, sort_keys=False))
    tree["name"] = name
    for key, value in changes.items():
        if key.startswith("overrides."):
            tree["base"]["overrides"][key.removeprefix("overrides.")] = value
        else:
            tree[key] = value
    tree.setdefault("budget", {"n_trials": 2})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def reid(*args: str, cwd: Path, env: dict[str, str] | None = None, **kw: Any) -> Any:
    """`reid ARGS` in a subprocess (the console script's code path); the tracking store is the
    one the test names, never a URI another test left in the environment."""
    inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen(
        [sys.executable, "-m", "studies.cli", *args],
        cwd=cwd,
        env={**inherited, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        **(extra or {}),
    }


@pytest.fixture(scope="session")
def study_root(tmp_path_factory) -> Path:
    from reid_core.data.synth import synthesize

    root = tmp_path_factory.mktemp("study-synth") / "data"
    synthesize(root, identities=24, seed=0, size=(32, 16))
    return root


def _admin() -> Any:
    import psycopg

    return psycopg.connect(f"{PG_HOST}/postgres", autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def pg_server() -> str:
    try:
        _admin().close()
    except Exception as exc:  # the machine's PostgreSQL is part of CI: say why it skips
        pytest.skip(f"PostgreSQL at {PG_HOST} is not reachable ({exc})")
    return PG_HOST


@pytest.fixture
def pg_db(pg_server):
    """A fresh database for one test; dropped afterwards (connections terminated)."""
    name = f"omnireid_test_{uuid.uuid4().hex[:10]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{pg_server}/{name}"
    with _admin() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def mlflow_server(pg_db, tmp_path):
    """`mlflow server` with a PostgreSQL backend store and served artifacts, on loopback."""
    from tests.experiments.conftest import free_port, wait_http

    backend = pg_db.replace("postgresql://", "postgresql+psycopg://") + "_mlflow"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{pg_db.rsplit("/", 1)[1]}_mlflow"')
    port = free_port()
    artifacts = tmp_path / "served-artifacts"
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend,
        "--artifacts-destination", str(artifacts),
        "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = open(tmp_path / "mlflow-server.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=server_env(), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, tmp_path / "mlflow-server.log")
        yield url
    finally:
        from experiments.ui import stop_process_group

        stop_process_group(proc)
        log.close()
        with _admin() as conn:
            db = pg_db.rsplit("/", 1)[1] + "_mlflow"
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (db,)
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{db}"')


def trials(storage: str, name: str) -> list[Any]:
    import optuna

    from studies.storage import engine_url

    return optuna.load_study(study_name=name, storage=engine_url(storage)).get_trials()
