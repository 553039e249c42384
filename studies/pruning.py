"""The Optuna adapter of the training engine: report each validation, ask the pruner, stop.

It is an engine callback like any other (optuna-integration's pruning handlers are the model):
the engine knows nothing of Optuna, and a pruned run ends through the normal stop request, so
its MLflow run closes FINISHED before the objective raises `TrialPruned`.
"""

from __future__ import annotations

from typing import Any

from reid_core.training.callbacks import Callback
from studies.record import TrialAttr


class PruningCallback(Callback):
    """Reports `metric` after every evaluation of its split; a stop request when the pruner
    says so. `prune=False` (two-objective studies) does nothing. The objective's final value
    is the tracker's (`MlflowTracker.best`), so Optuna and MLflow hold the same number.
    """

    def __init__(self, trial: Any, metric: str, *, prune: bool = True) -> None:
        self.trial = trial
        self.metric = metric
        self.prune = prune
        self.pruned_at: int | None = None

    def on_evaluate(self, trainer: Any, epoch: int, split: str, metrics: dict[str, Any]) -> None:
        if split != self.metric.split("/")[0] or not self.prune:
            return
        from reid_core.evaluation.evaluate import flat_metrics

        flat = flat_metrics(metrics)
        if self.metric not in flat:
            return
        self.trial.report(flat[self.metric], epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            trainer.request_stop(f"pruned by the study's pruner after epoch {epoch + 1}")


class TrialProgress(Callback):
    """Epoch and latest val score as trial user attrs, for `reid study status` and the live
    table (one small storage write per epoch)."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        self.trial.set_user_attr(TrialAttr.EPOCH, epoch + 1)

    def on_evaluate(self, trainer: Any, epoch: int, split: str, metrics: dict[str, Any]) -> None:
        if split == "val":
            self.trial.set_user_attr(TrialAttr.VAL_SCORE, float(metrics["score"]))
