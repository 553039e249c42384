"""Creating, resuming and closing a study: its Optuna study, its MLflow parent run, its budget.

A study's record (`studies.record`) holds everything a worker on another machine needs (the
spec, data root, checkpoint folder, tracking URI, parent run id), so `reid study worker NAME
--storage URL` is all a second machine runs. The budget is `n_trials` counted trials
(`counted`): the spec's enqueued configs wait as WAITING trials, and a worker claims a new slot
only when it starts a trial (`slots_left`, under `study_lock`), so no two workers overshoot
`n_trials`, a rerun after an interruption claims what is left, and a huge budget costs nothing
up front.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from studies.record import (
    Placement,
    StudyError,
    StudyRecord,
    TrialAttr,
    has_record,
    read_record,
    record_from_attrs,
    refresh_record,
    write_record,
)
from studies.spec import StudySpec, spec_to_dict
from studies.storage import open_storage, redact, scrub, study_lock

DEFAULT_CHECKPOINTS = Path("runs") / "studies"


# --------------------------------------------------------------------------- optuna parts
def make_sampler(spec: StudySpec, worker: int = 0) -> Any:
    """The spec's sampler; each worker gets its own seed (seed + worker) so parallel workers'
    random start-up trials differ."""
    import optuna

    s = spec.sampler
    seed = None if s.seed is None else s.seed + worker
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if s.type == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=s.n_startup_trials, multivariate=s.multivariate
            )
        if s.type == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=s.n_startup_trials)
        if s.type == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=s.n_startup_trials)
        if s.type == "grid":
            return optuna.samplers.GridSampler(_grid(spec), seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)


def _grid(spec: StudySpec) -> dict[str, list[Any]]:
    from studies.spec import CategoricalParam, FloatParam

    grid: dict[str, list[Any]] = {}
    for key, p in spec.space.items():
        if isinstance(p, CategoricalParam):
            grid[key] = list(p.choices)
        elif isinstance(p, FloatParam):
            assert p.step is not None  # the spec check requires it for grid
            n = round((p.high - p.low) / p.step)
            grid[key] = [p.low + i * p.step for i in range(n + 1)]
        else:
            grid[key] = list(range(p.low, p.high + 1, p.step))
    return grid


def make_pruner(spec: StudySpec) -> Any:
    import optuna

    p = spec.effective_pruner
    warm = {"n_startup_trials": p.n_startup_trials, "n_warmup_steps": p.n_warmup_steps}
    if p.type == "median":
        return optuna.pruners.MedianPruner(**warm, interval_steps=p.interval_steps)
    if p.type == "percentile":
        return optuna.pruners.PercentilePruner(
            p.percentile, **warm, interval_steps=p.interval_steps
        )
    if p.type == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.min_resource, reduction_factor=p.reduction_factor
        )
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1 if p.min_resource == "auto" else p.min_resource,
            max_resource=p.max_resource,
            reduction_factor=p.reduction_factor,
        )
    return optuna.pruners.NopPruner()


def storage_for(spec: StudySpec, url: str) -> Any:
    st = spec.storage
    return open_storage(url, st.heartbeat_interval, st.grace_period, st.max_retries)


def load(
    name: str, url: str, *, storage: Any = None, worker: int = 0
) -> tuple[Any, StudySpec, Any]:
    """An existing study with its spec (from the study's user attrs) and storage."""
    import optuna

    from studies.storage import check_reachable

    check_reachable(url)
    if storage is None:
        spec = _stored_spec(name, url)
        storage = storage_for(spec, url)
    try:
        summaries = optuna.get_all_study_names(storage)
    except Exception as exc:
        raise StudyError(f"study storage {redact(url)}: {scrub(str(exc), url)}") from None
    if name not in summaries:
        known = ", ".join(sorted(summaries)) or "none"
        raise StudyError(f"no study {name!r} in {redact(url)} (studies there: {known})")
    probe = optuna.load_study(study_name=name, storage=storage)
    spec = read_record(probe, f" in {redact(url)}").spec
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(spec, worker),
        pruner=make_pruner(spec),
    )
    return study, spec, storage


def _stored_spec(name: str, url: str) -> StudySpec:
    """Read the spec with a plain storage first: the heartbeat settings live in the spec."""
    import optuna

    from studies.storage import engine_url

    try:
        plain = optuna.storages.RDBStorage(engine_url(url))
        study_id = plain.get_study_id_from_name(name)
        attrs = plain.get_study_user_attrs(study_id)
    except KeyError:
        raise StudyError(f"no study {name!r} in {redact(url)}") from None
    except Exception as exc:
        reason = scrub(str(exc), url).splitlines() or [type(exc).__name__]
        raise StudyError(f"study storage {redact(url)}: {reason[0]}") from None
    return record_from_attrs(name, attrs, f" in {redact(url)}").spec


# ------------------------------------------------------------------------------- create
def create(spec: StudySpec, place: Placement) -> Any:
    """Create the study (or load it when it exists with the same spec), its parent run and its
    trial slots; safe when several processes start together. Returns the study."""
    import optuna

    from experiments.store import open_store
    from studies.study_ui import mark_study, set_metric_names, update_parent

    data_root = place.data_root or (Path(spec.data) if spec.data else None)
    if data_root is None:
        raise StudyError(f"study {spec.name}: give --data ROOT (or `data:` in the spec)")
    check_data(spec, data_root)
    from studies.storage import check_reachable

    check_reachable(place.storage)  # one line, before the lock needs a connection
    store = open_store(place.tracking_uri, place.experiment)  # fails fast when unreachable
    with study_lock(place.storage, spec.name):
        storage = storage_for(spec, place.storage)  # a fresh database's schema: one at a time
        study = optuna.create_study(
            study_name=spec.name,
            storage=storage,
            directions=spec.directions,
            sampler=make_sampler(spec),
            pruner=make_pruner(spec),
            load_if_exists=True,
        )
        if has_record(study):
            _check_same(spec, read_record(study).spec)
            if study.metric_names is None:  # a study from before the names were set
                set_metric_names(study, spec)
            refresh_record(study, spec)  # the budget may grow, what the runs store change
            return study
        record = _new_record(spec, place, data_root, store)
        write_record(study, record)
        mark_study(study, store, spec, record.parent_run_id)
        update_parent(store, study, spec, redact(place.storage))
        for config in spec.enqueue:
            study.enqueue_trial(config, user_attrs={TrialAttr.ENQUEUED: True})
    return study


def _new_record(spec: StudySpec, place: Placement, data_root: Path, store: Any) -> StudyRecord:
    """A new study's record, with its MLflow parent run."""
    checkpoints = (place.checkpoints or _default_checkpoints(spec)).resolve()
    return StudyRecord(
        name=spec.name,
        spec=spec,
        data_root=Path(data_root).resolve(),
        checkpoints=checkpoints / spec.name,
        tracking_uri=store.uri,
        experiment=place.experiment,
        parent_run_id=_parent_run(store, spec, place.storage),
        n_trials=spec.budget.n_trials,
    )


def _default_checkpoints(spec: StudySpec) -> Path:
    return Path(spec.storage.checkpoints) if spec.storage.checkpoints else DEFAULT_CHECKPOINTS


def _check_same(spec: StudySpec, stored_spec: StudySpec) -> None:
    mine, stored = spec_to_dict(spec), spec_to_dict(stored_spec)
    differ = sorted(
        k
        for k in mine
        if k not in ("budget", "description", "tracking") and mine[k] != stored.get(k)
    )
    if differ:
        raise StudyError(
            f"study {spec.name!r} exists with a different spec ({', '.join(differ)}); "
            "choose another name or run the stored spec"
        )


def check_data(spec: StudySpec, data_root: Path) -> None:
    """Fail before any trial: the base config must be valid, the data readable, and the
    objective's query set one the val protocol has."""
    from studies.trial import build_config

    cfg = build_config(spec, {})
    from reid_core.training.setup import DataBundle

    bundle = DataBundle.load(Path(data_root), cfg)
    parts = spec.objective.metric.split("/")
    if len(parts) == 3 and parts[1] != "mm":
        sets = [qs.key for qs in bundle.val.sets]
        if parts[2] not in sets:
            raise StudyError(
                f"objective.metric: training never produces {spec.objective.metric!r}: the val "
                f"protocol ({bundle.val.name}) has the sets {', '.join(sets)}"
            )


def _parent_run(store: Any, spec: StudySpec, storage_url: str) -> str:
    from experiments.runs import create_run, log_files
    from reid_core.config import flatten

    base = flatten(_base_config(spec))
    tags = {
        "kind": "study",
        "optuna.study": spec.name,
        "optuna.storage": redact(storage_url),
        "study.sampled_keys": ",".join(spec.space),
        "study.objective": spec.objective.metric,
        "study.direction": spec.objective.direction,
        "study.sampler": spec.sampler.type,
        "study.pruner": spec.effective_pruner.type,
        "study.n_trials": str(spec.budget.n_trials),
    }
    params = {k: v for k, v in base.items() if k not in spec.space}
    run_id = create_run(store, spec.name, tags, params=params)
    log_files(store, run_id, {"spec.json": json.dumps(spec_to_dict(spec), indent=2)}, "study")
    return run_id


def _base_config(spec: StudySpec) -> Any:
    from studies.trial import build_config

    return build_config(spec, {})


# ------------------------------------------------------------------------------- budget
def counted(trial: Any) -> bool:
    """Whether a trial uses up the budget: done, running, waiting, or failed for a reason of
    its own. A trial whose worker died (it is retried) or that was interrupted does not."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    if trial.state is TrialState.WAITING:
        return True
    return trial.state is TrialState.FAIL and TrialAttr.FAIL_REASON in trial.user_attrs


def slots_left(study: Any) -> int | None:
    """Trials the budget still allows beyond the counted ones (call under the lock when about
    to claim one); None for a budget of time alone."""
    n_trials = read_record(study).n_trials
    if n_trials is None:
        return None
    return max(0, n_trials - sum(counted(t) for t in study.get_trials(deepcopy=False)))


def budget_met(study: Any) -> bool:
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in done and counted(t)]
    n_trials = read_record(study).n_trials
    return n_trials is not None and len(finished) >= n_trials
