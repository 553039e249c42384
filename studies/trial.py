"""One trial: sample -> validated config -> a nested MLflow run of `experiments.run.train`.

Sampling goes through the config schema: an invalid combination is a FAILED trial with its
reason (user attr `fail_reason`, MLflow tag), never a crashed worker. A retried trial (its
worker died) resumes from its predecessor's last checkpoint into a new run folder.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reid_core.errors import ConfigError, ReidError
from studies.interrupt import StopCheck
from studies.pruning import PruningCallback, TrialProgress
from studies.record import StudyRecord, TrialAttr
from studies.spec import CategoricalParam, FloatParam, StudySpec
from studies.study_ui import STATE

log = logging.getLogger("omnireid.study")


@dataclass
class TrialResult:
    """What the worker tells Optuna: `state` is complete, pruned or failed."""

    state: str
    values: list[float] | None = None
    reason: str | None = None


@dataclass
class StudyContext:
    """What a worker needs to run trials of one study: the study's record, and where this
    worker reads data, writes run folders and tracks runs (`StudyRecord.data_for`, ...)."""

    record: StudyRecord
    storage_label: str  # the storage URL without its password
    data_root: Path
    checkpoints: Path  # this worker's trial run folders
    store: Any  # experiments.store.Store
    gpu: str | None = None
    bundle: Any = field(default=None, repr=False)  # the last DataBundle, reused when it fits

    @property
    def spec(self) -> StudySpec:
        return self.record.spec

    @property
    def study_name(self) -> str:
        return self.record.name

    @property
    def parent_run_id(self) -> str:
        return self.record.parent_run_id


# ---------------------------------------------------------------------------- sampling
def sample_params(trial: Any, spec: StudySpec) -> dict[str, Any]:
    """Suggest every parameter of the space whose `when` condition holds, in spec order."""
    params: dict[str, Any] = {}
    for key, p in spec.space.items():
        if p.when and any(params.get(k, _MISSING) != v for k, v in p.when.items()):
            continue
        if isinstance(p, FloatParam):
            params[key] = trial.suggest_float(key, p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, CategoricalParam):
            params[key] = trial.suggest_categorical(key, p.choices)
        else:
            params[key] = trial.suggest_int(key, p.low, p.high, step=p.step, log=p.log)
    return params


_MISSING = object()


def build_config(spec: StudySpec, params: dict[str, Any]) -> Any:
    """The base preset or file, its overrides, then the sampled params; validated once."""
    from reid_core.config import load_config

    overrides = {**spec.base.overrides, **params}
    return load_config(preset=spec.base.preset, config_file=spec.base.config, overrides=overrides)


# ------------------------------------------------------------------------------ a trial
def run_trial(ctx: StudyContext, trial: Any, frozen: Any) -> TrialResult:
    """Train one trial; every outcome but an interrupt is a TrialResult."""
    params = sample_params(trial, ctx.spec)
    run_dir = ctx.checkpoints / f"t{trial.number:04d}"
    predecessor = _predecessor(frozen)
    trial.set_user_attr(TrialAttr.RUN_DIR, str(run_dir.resolve()))
    tags = {
        "kind": "trial",
        "optuna.study": ctx.study_name,
        "optuna.trial": str(trial.number),
        "optuna.storage": ctx.storage_label,
    }
    if ctx.gpu is not None:
        tags["cuda_visible_devices"] = ctx.gpu
    name = f"{ctx.study_name}-t{trial.number}"
    try:
        cfg = build_config(ctx.spec, params)
    except ConfigError as exc:
        return _failed(ctx, trial, name, str(exc), params, tags)
    try:
        return _train(ctx, trial, cfg, run_dir, name, tags, predecessor)
    except ReidError as exc:  # a non-finite loss, bad data met mid-run, ...
        return _record_failure(trial, str(exc))
    except Exception as exc:  # a bug must not take the worker (and its other trials) down
        log.error("trial %d crashed:\n%s", trial.number, traceback.format_exc())
        return _record_failure(trial, f"{type(exc).__name__}: {exc}")


def _predecessor(frozen: Any) -> dict[str, Any] | None:
    """For a retried trial: the dead trial's number and user attrs (inherited by the retry)."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        history = Retry.retry_history(frozen)
    if not history:
        return None
    return {"number": history[-1], **frozen.user_attrs}


def _train(
    ctx: StudyContext,
    trial: Any,
    cfg: Any,
    run_dir: Path,
    name: str,
    tags: dict[str, str],
    predecessor: dict[str, Any] | None,
) -> TrialResult:
    from experiments.run import train
    from experiments.runs import kill_run

    resume_from = None
    if predecessor is not None:
        tags["retry_of"] = str(predecessor["number"])
        if predecessor.get(TrialAttr.RUN_ID):
            kill_run(ctx.store, predecessor[TrialAttr.RUN_ID])
        last = Path(predecessor.get(TrialAttr.RUN_DIR, "")) / "checkpoints" / "last.pt"
        resume_from = last if predecessor.get(TrialAttr.RUN_DIR) and last.is_file() else None
        if resume_from is None:  # died before its first checkpoint: starts over
            tags["resumed_from_epoch"] = "0"  # else the tracker tags the checkpoint's epoch
    pruner = PruningCallback(trial, ctx.spec.objective.metric, prune=not ctx.spec.multi_objective)
    tracker = _tracker(ctx, trial, cfg, run_dir, name, tags)
    with tracker:
        outcome = train(
            cfg,
            ctx.data_root,
            run_dir,
            resume_from=resume_from,
            data=ctx.bundle,
            callbacks=[tracker, pruner, TrialProgress(trial), StopCheck()],
        )
        ctx.bundle = outcome.data
        pruned = outcome.status == "stopped" and pruner.pruned_at is not None
        if resume_from is not None:
            trial.set_user_attr(TrialAttr.RESUMED_FROM_EPOCH, outcome.resumed_from_epoch)
        if pruned:
            result = TrialResult("pruned")
        else:
            if outcome.finished:
                trial.set_user_attr(TrialAttr.TEST_SCORE, float(outcome.result["score"]))
            result = _values(ctx, trial, outcome, tracker, cfg)
        # the run logs `val/best_score` from the same `tracker.best` Optuna is told
        state = {"pruned": str(pruned).lower(), "optuna.state": STATE[result.state]}
        tracker.finish(outcome, tags=state)
    return result


def _tracker(
    ctx: StudyContext, trial: Any, cfg: Any, run_dir: Path, name: str, tags: dict[str, str]
) -> Any:
    """The trial's MLflow run: nested under the study's, described with its links; its
    checkpoint and model per `tracking.log_checkpoints` (best: the best trial's are logged
    when the study completes, `workers.finalize`)."""
    from experiments.tracking import Logs, MlflowTracker
    from studies.study_ui import NOTE, dashboard_id, mark_trial, trial_note

    every = ctx.spec.tracking.log_checkpoints == "all"
    note = trial_note(
        ctx.store, ctx.study_name, ctx.parent_run_id, dashboard_id(trial.study),
        trial.number, ctx.storage_label,
    )  # fmt: skip
    return MlflowTracker(
        cfg,
        ctx.data_root,
        run_dir,
        store=ctx.store,
        run_name=name,
        tags={**tags, NOTE: note},
        parent_run_id=ctx.parent_run_id,
        # `reid study best --promote` registers the winner only
        logs=Logs(model_name=None, log_model=every, checkpoints="best" if every else "none"),
        objective=ctx.spec.objective.metric,
        on_start=lambda run_id: mark_trial(trial, ctx.store, run_id, name),
    )


def _values(ctx: StudyContext, trial: Any, outcome: Any, tracker: Any, cfg: Any) -> TrialResult:
    """The objective values: the first is `tracker.best` (read at the best-on-val epoch)."""
    metric = ctx.spec.objective.metric
    best = tracker.best(outcome)
    if best is None:
        return _record_failure(trial, f"training never produced the objective {metric!r}")
    values = [best.value]
    second = ctx.spec.second_objective
    if second is not None:
        values.append(_second_value(second.metric, outcome, cfg))
        trial.set_user_attr(second.metric, values[-1])
    if not all(math.isfinite(v) for v in values):
        return _record_failure(trial, f"objective values {values} are not finite")
    return TrialResult("complete", values)


def _second_value(metric: str, outcome: Any, cfg: Any) -> float:
    model = outcome.model
    if metric == "trainable_params":
        return float(sum(p.numel() for p in model.parameters() if p.requires_grad))
    return query_latency_ms(model, cfg.data.height, cfg.data.width, outcome.device)


def query_latency_ms(model: Any, height: int, width: int, device: Any, batch: int = 16) -> float:
    """Milliseconds per query for a single-sketch query embedded in batches of `batch`
    (median of 5 timed passes after a warm-up): the cost of answering a query."""
    import torch

    from reid_core.modality import ALL_MODALITIES, Modality

    x = torch.randn(batch, Modality.SK.channels, height, width, device=device)
    mask = torch.zeros(batch, len(ALL_MODALITIES), dtype=torch.bool, device=device)
    mask[:, Modality.SK.column] = True
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(6):
            t0 = time.perf_counter()
            feats = model.encode({Modality.SK: x})
            model.head(model.fuse(feats, mask), mask)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t0)
    return 1000.0 * sorted(times)[len(times) // 2] / batch


def _record_failure(trial: Any, reason: str) -> TrialResult:
    reason = reason.strip().splitlines()[0][:500] if reason.strip() else "unknown error"
    trial.set_user_attr(TrialAttr.FAIL_REASON, reason)
    log.warning("trial %d failed: %s", trial.number, reason)
    return TrialResult("failed", reason=reason)


def _failed(
    ctx: StudyContext,
    trial: Any,
    name: str,
    reason: str,
    params: dict[str, Any],
    tags: dict[str, str],
) -> TrialResult:
    """An invalid sampled config: a FAILED trial and a FAILED MLflow run, both with the reason."""
    from experiments.runs import log_failed_run
    from studies.study_ui import mark_trial

    tags = {**tags, "optuna.state": STATE["failed"]}
    run_id = log_failed_run(
        ctx.store, name, reason, parent_run_id=ctx.parent_run_id, params=params, tags=tags
    )
    mark_trial(trial, ctx.store, run_id, name)
    return _record_failure(trial, reason)
