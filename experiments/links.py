"""Links into the MLflow UI (3.17): runs, saved views of a study's trials, model versions.

MLflow 3 opens experiment pages in its GenAI mode unless the URL says otherwise (the
experiment tag `mlflow.experimentKind` is ignored in 3.17), so every link carries
`workflowType=machine_learning`. Links written into run notes and version descriptions are
relative (`#/...`): they open on whatever address the UI is served at.
"""

from __future__ import annotations

from urllib.parse import quote

from experiments.store import is_local

ML_MODE = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"  # `reid ui`'s default address


def ui_base(store_uri: str, ui_address: str = LOCAL_UI) -> str:
    """Where a browser opens this store: the server itself, or `reid ui` for a local store."""
    return ui_address if is_local(store_uri) else store_uri.rstrip("/")


def runs_path(experiment_id: str) -> str:
    return f"#/experiments/{experiment_id}/runs?{ML_MODE}"


def run_path(experiment_id: str, run_id: str) -> str:
    return f"#/experiments/{experiment_id}/runs/{run_id}?{ML_MODE}"


def view_path(experiment_id: str, key: str, charts: bool = False) -> str:
    """A saved view of the runs table (`experiments.views`); `charts` opens its chart mode."""
    mode = "&compareRunsMode=CHART" if charts else ""
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={quote(key)}{mode}&{ML_MODE}"


def version_path(name: str, version: str) -> str:
    return f"#/models/{quote(name)}/versions/{version}?{ML_MODE}"


def link(store_uri: str, path: str, ui_address: str = LOCAL_UI) -> str:
    """An absolute link to `path` (one of the `*_path` above)."""
    return f"{ui_base(store_uri, ui_address)}/{path}"


def with_hint(store_uri: str, text: str) -> str:
    """`text`, and how to start the UI when the store is local."""
    return text + ("  (start the UI with: reid ui)" if is_local(store_uri) else "")
