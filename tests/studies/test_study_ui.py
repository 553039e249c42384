"""One truth about a trial: Optuna and MLflow rank trials by the same number, the parent run
holds the best, and the study's pages link each other (MLflow runs <-> optuna-dashboard)."""

from __future__ import annotations

import json

import pytest

from tests.studies.conftest import trials, write_spec
from tests.studies.test_studies import _run_here, _runs

pytestmark = pytest.mark.slow


def _artifacts(client, run_id):
    return {a.path for a in client.list_artifacts(run_id)}


def test_optuna_and_mlflow_rank_the_trials_the_same_way(tmp_path, monkeypatch, study_root):
    import optuna
    from optuna_dashboard import get_note

    from studies.optuna_private import trial_id

    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, "rank", budget={"n_trials": 3})
    _, place = _run_here(path, study_root, tmp_path)
    study = optuna.load_study(study_name="rank", storage=place.storage)
    done = sorted(trials(place.storage, "rank"), key=lambda t: -t.value)
    client, runs = _runs(tmp_path, "trial")
    exp = runs[0].info.experiment_id
    ranked = client.search_runs(
        [exp], "tags.kind = 'trial'", order_by=["metrics.`val/best_score` DESC"]
    )
    # the same order and the very same numbers: the objective is the run's val/best_score
    assert [t.user_attrs["mlflow_run_id"] for t in done] == [r.info.run_id for r in ranked]
    assert [t.value for t in done] == [r.data.metrics["val/best_score"] for r in ranked]
    assert all(r.data.tags["optuna.state"] == "COMPLETE" for r in ranked)
    assert study.metric_names == ["val/score"]  # optuna-dashboard's objective label

    _, (parent,) = _runs(tmp_path, "study")
    best = done[0]
    assert parent.data.metrics["best/val_score"] == study.best_value == best.value
    assert parent.data.metrics["best/test_score"] == best.user_attrs["test_score"]
    note = parent.data.tags["mlflow.note.content"]
    assert f"#/experiments/{exp}/runs/{best.user_attrs['mlflow_run_id']}?" in note
    assert f"viewStateShareKey={parent.info.run_id}" in note

    # trial <-> optuna-dashboard, both ways
    for t in done:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert f"trials?numbers={t.number}" in run.data.tags["mlflow.note.content"]
        dash = get_note(optuna.trial.Trial(study, trial_id(t)))
        assert f"#/experiments/{exp}/runs/{run.info.run_id}?workflowType=machine_learning" in dash
    assert f"viewStateShareKey={parent.info.run_id}" in get_note(study)

    # the saved view the printed link opens: the study's trials, best first
    view = json.loads(
        client.get_experiment(exp).tags[f"mlflow.sharedViewState.{parent.info.run_id}"]
    )
    state = json.loads(view["state"])
    assert state["searchFilter"] == f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    assert state["orderByKey"] == "metrics.`val/best_score`" and state["orderByAsc"] is False
    assert "params.`model.lora.rank`" in state["selectedColumns"]

    # tracking.log_checkpoints: best (default): only the best trial keeps checkpoint and model
    for r in ranked:
        has = "checkpoints" in _artifacts(client, r.info.run_id)
        assert has == (r.info.run_id == best.user_attrs["mlflow_run_id"]), r.info.run_name
        assert bool(r.outputs.model_outputs) == has
    (model,) = client.get_run(best.user_attrs["mlflow_run_id"]).outputs.model_outputs
    assert client.get_logged_model(model.model_id).name == f"rank-t{best.number}"


def test_another_objective_is_logged_in_its_best_form_and_all_keeps_every_checkpoint(
    tmp_path, monkeypatch, study_root
):
    monkeypatch.chdir(tmp_path)
    path = write_spec(
        tmp_path,
        "mm",
        objective={"metric": "val/mm/1", "direction": "maximize"},
        tracking={"log_checkpoints": "all"},
        **{"overrides.train.epochs": 2},
    )
    _, place = _run_here(path, study_root, tmp_path)
    got = trials(place.storage, "mm")
    client, runs = _runs(tmp_path, "trial")
    by_id = {r.info.run_id: r for r in runs}
    for t in got:
        run = by_id[t.user_attrs["mlflow_run_id"]]
        assert run.data.metrics["val/best_mm/1"] == t.value
        assert 1 <= run.data.metrics["val/best_epoch"] <= 2
        assert "checkpoints" in _artifacts(client, run.info.run_id) and run.outputs.model_outputs
    _, (parent,) = _runs(tmp_path, "study")
    assert parent.data.metrics["best/val_mm_1"] == max(t.value for t in got)
