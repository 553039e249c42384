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

from reid_core.errors import ReidError, printable

DEFAULT_STORAGE = "sqlite:///studies.db"
_PG = re.compile(r"^postgres(ql)?(\+\w+)?://")


class StorageError(ReidError):
    """The study storage cannot be reached or used."""


def resolve_url(url: str | None, spec_url: str | None = None) -> str:
    """`--storage`, else the spec's `storage.url`, else the embedded SQLite file."""
    return url or spec_url or DEFAULT_STORAGE


_QUERY_PASSWORD = re.compile(r"([?&;]password=)([^&;#]*)", re.IGNORECASE)


def _split_password(url: str) -> tuple[str, str, str] | None:
    """`(scheme://user, password, @rest)` of a URL with a password, else None. The user info
    ends at the LAST `@`: a password may hold `@`, `/`, `:` or `%`-escapes (better to hide too
    much than too little); a `/` before the first `:` means a path, not a user (SQLite)."""
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return None
    user, colon, password = rest[:at].partition(":")
    if not colon or "/" in user:
        return None
    return f"{scheme}://{user}", password, rest[at:]


def redact(url: str) -> str:
    """The URL with its password replaced by `***`, whatever the password holds, and a
    `password=` query parameter too (for logs, tags and errors)."""
    parts = _split_password(url)
    if parts is not None and parts[1]:
        url = f"{parts[0]}:***{parts[2]}"
    return printable(_QUERY_PASSWORD.sub(r"\1***", url))


def scrub(text: str, url: str) -> str:
    """`text` (a driver's error message) with `url` redacted and its password, as written or
    %-decoded, replaced wherever it appears (libpq echoes parts of a connection string)."""
    from urllib.parse import unquote

    text = text.replace(url, redact(url))
    parts = _split_password(url)
    secrets = {parts[1]} if parts is not None else set()
    secrets |= {m.group(2) for m in _QUERY_PASSWORD.finditer(url)}
    secrets |= {unquote(s) for s in secrets}
    # a parser that split the URL inside the password echoes a piece of it: the pieces between,
    # before and after `@ / : ? #` go too
    for secret in list(secrets):
        cuts = [m.start() for m in re.finditer(r"[@/:?#]", secret)]
        secrets |= {secret[:c] for c in cuts} | {secret[c + 1 :] for c in cuts}
        secrets |= set(re.split(r"[@/:?#]", secret))
    for secret in sorted(secrets - {""}, key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, "***")
        else:  # a short piece only where it stands alone (`host 'ss'`), not inside words
            text = re.sub(rf"(?<![\w%]){re.escape(secret)}(?![\w%])", "***", text)
    return text


def _password_hint(url: str) -> str:
    """A hint when the password holds characters URL parsers split at."""
    parts = _split_password(url)
    if parts is None or not re.search(r"[@/:?#]", parts[1]):
        return ""
    return "; a password holding @ / : ? or # must be %-encoded in the URL (@ is %40, / is %2F)"


def _first_line(exc: BaseException, url: str) -> str:
    """The first line of a driver's error, its password scrubbed, at most 200 characters."""
    text = scrub(str(exc).strip(), url)
    return text.splitlines()[0][:200] if text else ""


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
            reason = _first_line(exc, url) or "no answer"
            raise StorageError(
                f"study storage {redact(url)} is unreachable ({reason}){_password_hint(url)}"
            ) from None
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
            reason = _first_line(exc, url) + _password_hint(url)
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
