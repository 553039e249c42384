"""`reid eval` as its own MLflow run (tag `kind=eval`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from experiments.run_info import git_state, log_metrics, log_params, package_versions
from experiments.store import Store


def log_evaluation(
    store: Store, cfg: Any, data_root: Path, result: dict[str, Any], checkpoint: Path | None
) -> str:
    """Config params, tags, the headline metrics (step 0), the per-set table (CSV and MLflow's
    table artifact) and the bar plot; returns the run id."""
    from experiments.artifacts import metric_table_csv, percent_table, plot_map_bars
    from experiments.headline import eval_metrics
    from reid_core.config import config_hash, flatten, to_yaml
    from reid_core.data.dataset_index import build_index
    from reid_core.evaluation.evaluate import flat_metrics

    split = result["split"]
    tags = {
        "kind": "eval",
        "dataset.digest": build_index(data_root).digest,
        "config.hash": config_hash(cfg),
        "protocol": result["protocol"],
        "checkpoint": str(checkpoint) if checkpoint else "none (untrained baseline)",
        **package_versions(),
        **git_state(Path(__file__).resolve().parents[1])[0],
    }
    name = f"eval {Path(checkpoint).parent.parent.name if checkpoint else 'baseline'}"
    run_id = store.client.create_run(store.experiment_id, run_name=name, tags=tags).info.run_id
    try:
        log_params(store.client, run_id, flatten(cfg))
        log_metrics(store.client, run_id, eval_metrics(flat_metrics(result), split), 0)
        store.client.log_text(run_id, to_yaml(cfg), "config.yaml")
        store.client.log_text(run_id, metric_table_csv(result), f"metrics/{split}.csv")
        store.client.log_table(run_id, percent_table(result), f"metrics/{split}.json")
        with tempfile.TemporaryDirectory() as tmp:
            plot_map_bars(result, Path(tmp) / f"{split}_map_by_set.png")
            store.client.log_artifacts(run_id, tmp, "plots")
    except BaseException:
        store.client.set_terminated(run_id, "FAILED")
        raise
    store.client.set_terminated(run_id, "FINISHED")
    return run_id
