"""Logging what a finished run folder holds into its MLflow run afterwards.

A study with `tracking.log_checkpoints: best` (the default) lets its trials log neither
checkpoint nor pyfunc model; when the study completes (or `reid study best --promote` runs) the
best trial's run gets both from its run folder, which stays on disk: the checkpoint its test
score came from and the model built from it, the same weights a trial logging at the end of
training would have logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.store import Store
from reid_core.training.paths import RunPaths


def logged_model_id(client: Any, run_id: str) -> str | None:
    """The id of the model the run logged (MLflow 3 keeps logged models apart from runs)."""
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    return outputs[-1].model_id if outputs else None


def model_from_checkpoint(checkpoint: Path) -> tuple[Any, Any]:
    """The config and the network a checkpoint holds (no pretrained weights are read)."""
    from reid_core.config import validate_tree
    from reid_core.model import build_model
    from reid_core.training.checkpoint import load_checkpoint, load_model_state

    state = load_checkpoint(checkpoint)
    cfg = validate_tree(state["config"], f"{checkpoint} config")
    model = build_model(cfg, len(state["train_pids"]), load_pretrained=False)
    load_model_state(model, state["model"], str(checkpoint))
    return cfg, model.eval()


def log_from_folder(
    store: Store, run_id: str, run_dir: Path, *, checkpoint: bool, model: bool
) -> list[str]:
    """Log the run folder's best checkpoint and its pyfunc model into `run_id`, each unless the
    run has it already; returns what was logged. The run ends FINISHED again."""
    import mlflow

    from experiments.pyfunc import log_pyfunc
    from experiments.tracking import checkpoint_files, logged_model_name

    client, paths, done = store.client, RunPaths(Path(run_dir)), []
    has = {a.path for a in client.list_artifacts(run_id)}
    if checkpoint and "checkpoints" not in has:
        for path in checkpoint_files(paths, "best"):
            client.log_artifact(run_id, str(path), "checkpoints")
            done.append(f"checkpoints/{path.name}")
    if model and logged_model_id(client, run_id) is None and paths.final_checkpoint().is_file():
        cfg, net = model_from_checkpoint(paths.final_checkpoint())
        name = logged_model_name(client.get_run(run_id).info.run_name or run_id)
        with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
            log_pyfunc(net, cfg, None, name=name)
        done.append(f"model {name}")
    return done
