"""The MLflow tracking store: embedded SQLite (artifacts in ./mlartifacts) or a server.

`open_store` fails fast and in one line when the store cannot be reached, and creates the
experiment once even when several processes start together.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reid_core.errors import ReidError

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
DEFAULT_EXPERIMENT = "omnireid"


class TrackingError(ReidError):
    """The tracking store cannot be reached or used."""


def resolve_uri(uri: str | None = None) -> str:
    """`uri`, else $MLFLOW_TRACKING_URI, else the embedded `sqlite:///mlflow.db` (in the cwd)."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, instead of MLflow's minutes of HTTP retries."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
                pass
        except urllib.error.HTTPError:
            return  # it answers; authentication or routing is MLflow's to report
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise TrackingError(
                f"tracking server {uri} is unreachable ({reason}); start it, fix "
                "--tracking-uri / MLFLOW_TRACKING_URI, or pass --no-track"
            ) from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).expanduser().resolve().parent
        if not folder.is_dir():
            raise TrackingError(f"tracking store {uri}: folder {folder} does not exist")


def _quiet_mlflow() -> None:
    """MLflow's info logs off; its download progress bars only on a terminal (piped, each
    redraw would be one more line of output)."""
    if not sys.stderr.isatty():
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.models.model"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class Store:
    """A tracking store with its client and experiment."""

    uri: str
    experiment_id: str
    client: Any  # mlflow.MlflowClient


def open_store(uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> Store:
    """Connect to the store and make sure `experiment` exists (safely, across processes).

    Local stores put artifacts in `./mlartifacts` through the experiment's `artifact_location`
    (MLflow would otherwise write `<cwd>/mlruns`).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    _quiet_mlflow()
    uri = resolve_uri(uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    location = Path(DEFAULT_ARTIFACTS).resolve().as_uri() if is_local(uri) else None
    last: Exception | None = None
    for attempt in range(5):
        try:
            with _store_lock(uri):
                client = mlflow.MlflowClient(uri, uri)
                return Store(uri, _ensure_experiment(client, experiment, location), client)
        except MlflowException as exc:
            if "deleted" in str(exc).lower():
                raise TrackingError(
                    f"experiment {experiment!r} is deleted; restore it or choose "
                    "another --experiment"
                ) from None
            last = exc
        except Exception as exc:  # concurrent schema creation on a fresh SQLite file
            last = exc
        time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
    reason = str(last).strip().splitlines()[0][:200] if last else "unknown error"
    raise TrackingError(f"tracking store {uri}: {reason}")


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """For a SQLite store, an exclusive lock (a file in the temp folder, named by the database's
    path): MLflow builds a fresh database's schema on first use, and two processes doing it
    together leave it half-built."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = str(Path(uri.removeprefix("sqlite:///")).resolve())
    key = hashlib.sha256(db.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    with file_lock(Path(tempfile.gettempdir()) / f"omnireid-mlflow-{key}.lock"):
        yield


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created when missing) across the processes of a machine;
    the OS drops it when the holder dies."""
    with open(path, "a+b") as fh:
        if os.name == "nt":
            import msvcrt

            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)  # retries for 10 s, then raises
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if os.name == "nt":
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _ensure_experiment(client: Any, name: str, location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            # The kind MLflow's UI will read once its feature flag is gone (3.17 ignores it and
            # needs `workflowType=machine_learning` in links: experiments.links).
            kind = {"mlflow.experimentKind": "custom_model_development"}
            return client.create_experiment(name, artifact_location=location, tags=kind)
        except MlflowException:  # another process created it between our get and create
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        raise MlflowException(f"experiment {name!r} is deleted")
    return found.experiment_id
