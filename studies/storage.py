"""Optuna storage: embedded SQLite (`sqlite:///studies.db`) or PostgreSQL for many machines.

Heartbeats and `RetryHeartbeatStaleTrialCallback` let a trial whose worker died be retried by
another. `study_lock` serialises the few read-then-write steps (creating a study and its parent
run, topping up the budget, claiming a trial) across processes and machines: a file lock for
SQLite (one machine), a PostgreSQL advisory lock otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reid_core.errors import ReidError

DEFAULT_STORAGE = "sqlite:///studies.db"
_PG = re.compile(r"^postgres(ql)?(\+\w+)?://")


class StorageError(ReidError):
    """The study storage cannot be reached or used."""


def resolve_url(url: str | None, spec_url: str | None = None) -> str:
    """`--storage`, else the spec's `storage.url`, else the embedded SQLite file."""
    return url or spec_url or DEFAULT_STORAGE


def redact(url: str) -> str:
    """The URL with its password replaced by `***` (for logs, tags and errors)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def is_postgres(url: str) -> bool:
    return bool(_PG.match(url))


def engine_url(url: str) -> str:
    """SQLAlchemy's spelling: `postgresql://` uses psycopg 3 (the installed driver)."""
    return _PG.sub("postgresql+psycopg://", url) if is_postgres(url) else url


def _libpq_url(url: str) -> str:
    return _PG.sub("postgresql://", url)


def check_reachable(url: str, timeout: float = 5.0) -> None:
    """Fail fast and in one line, before any trial starts."""
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).expanduser().resolve().parent
        if not folder.is_dir():
            raise StorageError(f"study storage {url}: folder {folder} does not exist")
        return
    if is_postgres(url):
        import psycopg

        try:
            psycopg.connect(_libpq_url(url), connect_timeout=int(timeout)).close()
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "no answer"
            raise StorageError(f"study storage {redact(url)} is unreachable ({reason})") from None
        return
    if not url.startswith(("sqlite:", "mysql")):
        raise StorageError(
            f"study storage {redact(url)}: unsupported URL (sqlite:///FILE or postgresql://...)"
        )


def open_storage(
    url: str, heartbeat_interval: int, grace_period: int | None, max_retries: int
) -> Any:
    """An RDBStorage with heartbeats; a worker that dies is retried up to `max_retries` times,
    inheriting the dead trial's params, user attrs (checkpoint, MLflow run) and reports."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    check_reachable(url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs = {"connect_args": {"timeout": 60}}  # workers wait for each other's writes
    elif is_postgres(url):
        kwargs = {"pool_pre_ping": True}  # a restarted server: reconnect, not fail
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return RDBStorage(
                engine_url(url),
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period or 2 * heartbeat_interval,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=max_retries, inherit_intermediate_values=True
                ),
            )
        except Exception as exc:  # SQLAlchemy / driver errors, many types
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise StorageError(f"study storage {redact(url)}: {reason}") from None


def _lock_key(url: str, name: str) -> int:
    digest = hashlib.sha256(f"omnireid-study\0{redact(url)}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def study_lock(url: str, name: str) -> Iterator[None]:
    """Exclusive across processes (SQLite: a file lock beside the database) and machines
    (PostgreSQL: an advisory lock, released when its connection closes, even on a crash)."""
    if is_postgres(url):
        import psycopg

        with psycopg.connect(_libpq_url(url), autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_lock_key(url, name),))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(url, name),))
        return
    from experiments.store import file_lock

    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///")).expanduser().resolve()
        path = db.with_name(f".{db.name}.{_lock_key(url, name) & 0xFFFFFFFF:08x}.lock")
    else:
        import tempfile

        path = Path(tempfile.gettempdir()) / f"omnireid-study-{_lock_key(url, name):x}.lock"
    with file_lock(path):
        yield


def _transient(exc: BaseException | None) -> bool:
    """A dropped or refused database connection (a restarted server), not a logic error; Optuna
    wraps those in StorageInternalError, so the causes are looked at too."""
    import psycopg
    import sqlalchemy.exc

    seen = 0
    while exc is not None and seen < 8:
        kinds = (
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.InterfaceError,
            psycopg.OperationalError,
        )
        if isinstance(exc, kinds):
            return True
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def retry_db(call: Any, *args: Any, patience: float = 120.0, **kwargs: Any) -> Any:
    """`call(*args, **kwargs)`, retried with backoff while the storage is unreachable (up to
    `patience` seconds): a restarted PostgreSQL costs a trial a pause, not its result."""
    import logging
    import random
    import time

    deadline = time.monotonic() + patience
    delay = 0.5
    while True:
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            if not _transient(exc) or time.monotonic() > deadline:
                raise
            logging.getLogger("omnireid.study").warning(
                "study storage unreachable (%s); retrying in %.1f s",
                str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__,
                delay,
            )
            time.sleep(delay + random.random() * 0.2)
            delay = min(delay * 2, 8.0)


class DurableTrial:
    """A trial whose storage calls (`set_user_attr`, `report`, `should_prune`, `suggest_*`)
    wait out a storage outage through `retry_db`; everything else passes through."""

    def __init__(self, trial: Any) -> None:
        self._trial = trial

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._trial, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            return retry_db(value, *args, **kwargs)

        return call
