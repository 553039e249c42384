"""The Optuna adapter of the training engine: report each validation, ask the pruner, stop.

It is an engine callback like any other (optuna-integration's pruning handlers are the model):
the engine knows nothing of Optuna, and a pruned run ends through the normal stop request, so
its MLflow run closes FINISHED before the objective raises `TrialPruned`.
"""

from __future__ import annotations

from typing import Any

from reid_core.training.callbacks import Callback

SCORE = "val/score"


class PruningCallback(Callback):
    """Reports `metric` after every val evaluation; a stop request when the pruner says so.

    `prune=False` (two-objective studies) only records the values. `history` keeps every val
    evaluation's flat metrics, so the objective can read `metric` at the best-on-val epoch.
    """

    def __init__(self, trial: Any, metric: str, *, prune: bool = True) -> None:
        self.trial = trial
        self.metric = metric
        self.prune = prune
        self.history: list[tuple[int, dict[str, float]]] = []
        self.pruned_at: int | None = None

    def on_evaluate(self, trainer: Any, epoch: int, split: str, metrics: dict[str, Any]) -> None:
        if split != self.metric.split("/")[0]:
            return
        from reid_core.evaluation.evaluate import flat_metrics

        flat = flat_metrics(metrics)
        self.history.append((epoch, flat))
        if self.metric not in flat or not self.prune:
            return
        self.trial.report(flat[self.metric], epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            trainer.request_stop(f"pruned by the study's pruner after epoch {epoch + 1}")

    def value_at_best(self) -> float | None:
        """`metric` at the evaluation with the best val score (the checkpoint a finished run
        is scored with); None when it was never produced."""
        rows = [flat for _, flat in self.history if SCORE in flat]
        if not rows:
            return None
        return max(rows, key=lambda flat: flat[SCORE]).get(self.metric)


class TrialProgress(Callback):
    """Epoch and latest val score as trial user attrs, for `reid study status` and the live
    table (one small storage write per epoch)."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        self.trial.set_user_attr("epoch", epoch + 1)

    def on_evaluate(self, trainer: Any, epoch: int, split: str, metrics: dict[str, Any]) -> None:
        if split == "val":
            self.trial.set_user_attr("val_score", float(metrics["score"]))
