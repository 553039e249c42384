"""What every run records besides its training curves: params and metrics in batches (MLflow's
`log_batch` limits), the code's git state, package versions and the dataset input."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_PACKAGES = ("omnireid", "torch", "torchvision", "open_clip_torch", "mlflow", "numpy")
_MAX_PARAMS_PER_CALL = 100  # MLflow's log_batch limits: 100 params, 100 tags, 1000 metrics
_MAX_METRICS_PER_CALL = 1000


def git_state(repo: Path) -> tuple[dict[str, str], str | None]:
    """Tags for the commit and dirty flag, and the diff when dirty (None outside a repository)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=20, check=True
        )
        return done.stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return {"git.commit": "none", "git.dirty": "unknown"}, None
    tags = {"git.commit": commit, "git.dirty": str(bool(status.strip())).lower()}
    tags["mlflow.source.git.commit"] = commit
    if not status.strip():
        return tags, None
    try:
        diff = git("diff", "HEAD")
    except (OSError, subprocess.SubprocessError):
        diff = ""
    return tags, f"# git status --porcelain\n{status}\n# git diff HEAD\n{diff}"


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"version.python": platform.python_version()}
    for dist in _PACKAGES:
        try:
            out[f"version.{dist}"] = version(dist)
        except PackageNotFoundError:
            out[f"version.{dist}"] = "absent"
    return out


def param_value(value: Any) -> str:
    """MLflow params are strings; lists and mappings as JSON, None as `null`."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def log_params(client: Any, run_id: str, flat: dict[str, Any]) -> None:
    """Dotted params in as few `log_batch` calls as MLflow's limits allow."""
    from mlflow.entities import Param

    params = [Param(k, param_value(v)) for k, v in flat.items()]
    for chunk in _chunks(params, _MAX_PARAMS_PER_CALL):
        client.log_batch(run_id, params=chunk)


def log_metrics(client: Any, run_id: str, values: dict[str, float], step: int) -> None:
    """Metrics at one step in one `log_batch` call (up to 1000 of them)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
    for chunk in _chunks(metrics, _MAX_METRICS_PER_CALL):
        client.log_batch(run_id, metrics=chunk)


def dataset_input(root: Path, index: Any) -> Any:
    """The data root as an MLflow dataset input (name, digest, source): the runs table's
    Dataset column."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    root = Path(root).resolve()
    dataset = Dataset(
        name=root.name, digest=index.digest[:12], source_type="local", source=root.as_uri()
    )
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])


def log_dataset(client: Any, run_id: str, dataset: Any, tries: int = 4) -> None:
    """`client.log_inputs` of one dataset input, tried again when a concurrent run inserted the
    same dataset first. The tracking store's get-or-create of a dataset row is not atomic: when
    study workers start trials on one dataset at the same moment, the loser of the race gets a
    unique-constraint error (PostgreSQL's `duplicate key value violates unique constraint
    "dataset_pk"`, SQLite's `UNIQUE constraint failed`) and its request is rolled back; the next
    try finds the row and links it. Any other error, or the last try's, is raised."""
    from mlflow.exceptions import MlflowException

    for attempt in range(tries):
        try:
            client.log_inputs(run_id, datasets=[dataset])
            return
        except MlflowException as exc:
            if attempt == tries - 1 or "unique" not in str(exc).lower():
                raise
            time.sleep(0.1 * (attempt + 1))
