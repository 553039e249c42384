"""`reid study best --promote`: the best trial's model through the registry's gated promotion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reid_core.errors import ReidError
from studies.record import TrialAttr, read_record
from studies.report import best_trial
from studies.spec import StudySpec


def promote_best(
    study: Any, spec: StudySpec, tracking_uri: str | None, model_name: str, min_delta: float
) -> str:
    """Register the best trial's model and move `@champion` when its test score wins; returns
    the one-line decision (PromotionRefused, exit 1, when it does not win)."""
    import mlflow

    from experiments.registry import promote, register_run_model
    from experiments.run_folder import log_from_folder
    from experiments.store import Store, check_reachable, resolve_uri

    best = best_trial(study, spec)
    if best is None:
        raise ReidError(f"study {study.study_name}: no completed trial to promote")
    run_id = best.user_attrs.get(TrialAttr.RUN_ID)
    if not run_id:
        raise ReidError(f"trial {best.number} has no MLflow run to promote")
    uri = resolve_uri(read_record(study).tracking_for(tracking_uri)[0])
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(uri, uri)
    # tracking.log_checkpoints best/none: the model is logged when the study completes, or now
    store = Store(uri, client.get_run(run_id).info.experiment_id, client)
    run_dir = Path(best.user_attrs.get(TrialAttr.RUN_DIR, ""))
    log_from_folder(store, run_id, run_dir, checkpoint=False, model=True)
    version = register_run_model(client, model_name, run_id)
    d = promote(client, model_name, version=version, min_delta=min_delta)
    before = f"version {d.holder.version}" if d.holder else "nobody"
    return (
        f"promoted {model_name} version {version} (trial {best.number}) to 'champion' "
        f"(was {before}): {d.reason}"
    )
