"""How a study shows in the MLflow UI and in optuna-dashboard, with links both ways.

MLflow: the parent run's saved view ranks the trials by the value Optuna ranks them by
(`val/best_score`, the objective read at each trial's best-on-val epoch), with their sampled
params, test score and state; its chart mode plots the objective against the params. The
parent's description links the view and the best trial, and carries the best so far as the
metrics `best/<objective>` (`best/val_score`) and `best/test_score`; a trial run's description
links its parent and its optuna-dashboard page. optuna-dashboard: the study's metric names are
its objectives (`val/score`), and the study's and each trial's note link their MLflow pages.
MLflow links in notes are relative (`#/...`); optuna-dashboard's point at `reid ui`'s
address, or the tracking server's.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from studies.record import TrialAttr, read_record
from studies.spec import StudySpec

DASHBOARD = "http://127.0.0.1:8080"  # `reid study dashboard`'s default address
NOTE = "mlflow.note.content"  # MLflow renders a run's description as markdown
STATE = {"complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}  # tag `optuna.state`


def objective_names(spec: StudySpec) -> list[str]:
    """The study's metric names, as optuna-dashboard labels them."""
    second = [spec.second_objective.metric] if spec.second_objective else []
    return [spec.objective.metric, *second]


def set_metric_names(study: Any, spec: StudySpec) -> None:
    import optuna

    with warnings.catch_warnings():  # experimental in Optuna 5; optuna-dashboard reads it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(objective_names(spec))


def rank_metric(spec: StudySpec) -> str:
    """The MLflow metric that ranks trials as Optuna does (`val/best_score`)."""
    from experiments.headline import best_name

    return best_name(spec.objective.metric)


def parent_metric(metric: str) -> str:
    """The parent run's name for the best trial's `metric`: `val/score` -> `best/val_score`."""
    return "best/" + metric.replace("/", "_")


def save_view(store: Any, spec: StudySpec, parent_run_id: str) -> None:
    """The parent's saved view (keyed by its run id): its trials, best first."""
    from experiments.views import save_view as save
    from experiments.views import trials_view

    rank = rank_metric(spec)
    state = trials_view(
        parent_run_id,
        rank_by=rank,
        ascending=spec.objective.direction == "minimize",
        metrics=["val/best_epoch", "test/score"],
        params=list(spec.space),
        tags=["optuna.state"],
        curve=spec.objective.metric,
    )
    started = time.strftime("%m-%d %H:%M")
    name = f"study {spec.name} ({started}): trials by {rank}"
    save(store.client, store.experiment_id, parent_run_id, name, state)


def view_links(store: Any, parent_run_id: str) -> tuple[str, str]:
    """Absolute links to the parent's view: the ranked trials, and its charts."""
    from experiments import links

    eid = store.experiment_id
    return (
        links.link(store.uri, links.view_path(eid, parent_run_id)),
        links.link(store.uri, links.view_path(eid, parent_run_id, charts=True)),
    )


def printed_links(study: Any, spec: StudySpec, tracking_uri: str | None = None) -> list[str]:
    """What `reid study run` prints: the ranked trials and their charts."""
    from experiments import links
    from experiments.store import open_store

    record = read_record(study)
    store = open_store(*record.tracking_for(tracking_uri))
    table, charts = view_links(store, record.parent_run_id)
    rank = rank_metric(spec)
    return [
        links.with_hint(store.uri, f"trials ranked by {rank}: {table}"),
        f"{rank} against the sampled params: {charts}",
    ]


def dashboard_link(study_id: int, number: int | None = None) -> str:
    page = f"{DASHBOARD}/dashboard/studies/{study_id}"
    return page if number is None else f"{page}/trials?numbers={number}"


def dashboard_id(study: Any) -> int:
    """optuna-dashboard's id of the study (Optuna's storage key; Study has no public accessor)."""
    from studies.optuna_private import study_id

    return study_id(study)


def trial_note(store: Any, study_name: str, parent_run_id: str, study_id: int, number: int,
               storage: str) -> str:  # fmt: skip
    """The MLflow description of trial `number`'s run: its parent, the ranking, its Optuna page."""
    from experiments import links

    eid = store.experiment_id
    return (
        f"Optuna trial {number} of study [{study_name}]({links.run_path(eid, parent_run_id)})"
        f" · [all trials, ranked]({links.view_path(eid, parent_run_id)})"
        f" · [optuna-dashboard]({dashboard_link(study_id, number)})"
        f" (`reid study dashboard --storage {storage}`)"
    )


def mark_trial(trial: Any, store: Any, run_id: str, name: str) -> None:
    """Trial -> MLflow run: the user attr `mlflow_run_id` and an optuna-dashboard note with a
    link to the run `name`."""
    from optuna_dashboard import save_note

    from experiments import links
    from studies.storage import retry_db

    trial.set_user_attr(TrialAttr.RUN_ID, run_id)
    page = links.link(store.uri, links.run_path(store.experiment_id, run_id))
    text = f"MLflow run of trial {trial.number}: [{name}]({page}) (`{run_id}`)"
    retry_db(save_note, trial, links.with_hint(store.uri, text))


def mark_study(study: Any, store: Any, spec: StudySpec, parent_run_id: str) -> None:
    """Study -> MLflow: the metric names optuna-dashboard shows, the parent's saved view, and an
    optuna-dashboard note linking it."""
    from optuna_dashboard import save_note

    from experiments import links

    set_metric_names(study, spec)
    save_view(store, spec, parent_run_id)
    table, charts = view_links(store, parent_run_id)
    parent = links.link(store.uri, links.run_path(store.experiment_id, parent_run_id))
    text = (
        f"MLflow: [trials ranked by {rank_metric(spec)}]({table}) · "
        f"[{rank_metric(spec)} against the sampled params]({charts}) · [parent run]({parent})"
    )
    save_note(study, links.with_hint(store.uri, text))


def parent_note(store: Any, study: Any, spec: StudySpec, best: Any, storage: str) -> str:
    """The parent run's description: what the study searches, its counts, links to the ranked
    trials and their charts, the best trial so far and optuna-dashboard."""
    from experiments import links

    eid, parent = store.experiment_id, read_record(study).parent_run_id
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    states = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no trials yet"
    rank = rank_metric(spec)
    lines = [
        f"Optuna study **{spec.name}**: `{spec.objective.metric}` ({spec.objective.direction}) "
        f"over {', '.join(f'`{k}`' for k in spec.space)}; {states}.",
        "",
        f"- [Trials ranked by {rank}]({links.view_path(eid, parent)})",
        f"- [{rank} against the sampled params]({links.view_path(eid, parent, charts=True)})",
    ]
    if best is not None and best.user_attrs.get(TrialAttr.RUN_ID):
        run = links.run_path(eid, best.user_attrs[TrialAttr.RUN_ID])
        test = best.user_attrs.get(TrialAttr.TEST_SCORE)
        lines.append(
            f"- Best: trial {best.number}, [{spec.name}-t{best.number}]({run}): "
            f"{rank} {best.values[0]:.4f}" + (f", test score {test:.4f}" if test else "")
        )
    lines.append(
        f"- [optuna-dashboard]({dashboard_link(dashboard_id(study))}) "
        f"(`reid study dashboard --storage {storage}`)"
    )
    return "\n".join(lines)


def best_metrics(best: Any, spec: StudySpec) -> dict[str, float]:
    """The parent's metrics for the best trial: `best/val_score` (`best/<objective>`),
    `best/test_score`, `best/trial`."""
    if best is None:
        return {}
    out = {parent_metric(spec.objective.metric): float(best.values[0])}
    if best.user_attrs.get(TrialAttr.TEST_SCORE) is not None:
        out["best/test_score"] = float(best.user_attrs[TrialAttr.TEST_SCORE])
    out["best/trial"] = float(best.number)
    return out


def update_parent(store: Any, study: Any, spec: StudySpec, storage: str) -> None:
    """The parent run's best-so-far tags, metrics (step: trials finished) and description."""
    from experiments.run_info import log_metrics
    from experiments.runs import set_tags
    from studies.report import best_tags, best_trial

    parent = read_record(study).parent_run_id
    best = best_trial(study, spec)
    tags = {**best_tags(study, spec), NOTE: parent_note(store, study, spec, best, storage)}
    set_tags(store, parent, tags)
    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    log_metrics(store.client, parent, best_metrics(best, spec), len(done))
