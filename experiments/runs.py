"""Runs that are not one training run: a study's parent run, a trial that never trained.

The studies layer calls these; MLflow stays inside `experiments` (DESIGN.md, "Layers").
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from experiments.run_info import log_params, package_versions
from experiments.store import Store

_MAX_TAGS_PER_CALL = 100
_TAG_LIMIT = 8000  # MLflow's tag value limit is 8000 characters


def create_run(
    store: Store,
    name: str,
    tags: dict[str, str],
    *,
    parent_run_id: str | None = None,
    params: dict[str, Any] | None = None,
) -> str:
    """Open a run (nested under `parent_run_id` when given); returns its id."""
    tags = {**package_versions(), **tags}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run = store.client.create_run(store.experiment_id, run_name=name, tags=_clip(tags))
    if params:
        log_params(store.client, run.info.run_id, params)
    return run.info.run_id


def set_tags(store: Store, run_id: str, tags: dict[str, Any]) -> None:
    """Tags in as few calls as MLflow allows; values are strings (mappings as JSON)."""
    from mlflow.entities import RunTag

    items = [RunTag(k, v) for k, v in _clip(tags).items()]
    for i in range(0, len(items), _MAX_TAGS_PER_CALL):
        store.client.log_batch(run_id, tags=items[i : i + _MAX_TAGS_PER_CALL])


def _clip(tags: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in tags.items():
        text = value if isinstance(value, str) else json.dumps(value)
        out[key] = text if len(text) <= _TAG_LIMIT else text[: _TAG_LIMIT - 3] + "..."
    return out


def run_status(store: Store, run_id: str) -> str | None:
    """RUNNING, FINISHED, FAILED or KILLED; None for a run the store does not know."""
    from mlflow.exceptions import MlflowException

    try:
        return str(store.client.get_run(run_id).info.status)
    except MlflowException:
        return None


def end_run(store: Store, run_id: str, status: str = "FINISHED") -> None:
    store.client.set_terminated(run_id, status)


def kill_run(store: Store, run_id: str) -> bool:
    """Mark a run whose process died KILLED (a run already ended is left as it is)."""
    if run_status(store, run_id) == "RUNNING":
        end_run(store, run_id, "KILLED")
        return True
    return False


def log_failed_run(
    store: Store,
    name: str,
    reason: str,
    *,
    parent_run_id: str | None,
    params: dict[str, Any],
    tags: dict[str, str],
) -> str:
    """A trial that could not start (e.g. its sampled config is invalid): a FAILED run with
    the sampled params and the reason, so the UI shows it beside the others."""
    run_id = create_run(
        store, name, {**tags, "fail_reason": reason}, parent_run_id=parent_run_id, params=params
    )
    end_run(store, run_id, "FAILED")
    return run_id


def log_files(store: Store, run_id: str, files: dict[str, bytes | str], folder: str) -> None:
    """Write `files` (name -> content) as artifacts under `folder`."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            path = Path(tmp) / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        store.client.log_artifacts(run_id, tmp, folder)


def child_runs(store: Store, parent_run_id: str) -> list[Any]:
    """The runs nested under a parent run."""
    return list(
        store.client.search_runs(
            [store.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'"
        )
    )
