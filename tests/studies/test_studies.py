"""Studies on the embedded stores (SQLite for Optuna and MLflow): trials, pruning, failures,
interrupts, concurrent creation, status and promotion."""

from __future__ import annotations

import json
import signal
import time

import pytest

from studies.cli import main
from tests.studies.conftest import reid, trials, write_spec

pytestmark = pytest.mark.slow


def _place(tmp_path, root):
    from studies.record import Placement

    return Placement(
        storage=f"sqlite:///{tmp_path}/studies.db",
        data_root=root,
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        checkpoints=tmp_path / "ckpt",
    )


def _run_here(spec_path, root, tmp_path):
    """Create the study and work it in this process (monkeypatches reach the trials)."""
    from studies.spec import load_spec
    from studies.study import create
    from studies.workers import WorkerArgs, work

    spec = load_spec(spec_path)
    place = _place(tmp_path, root)
    create(spec, place)
    work(WorkerArgs(spec.name, place))
    return spec, place


def _runs(tmp_path, kind=None):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("omnireid")
    query = f"tags.kind = '{kind}'" if kind else ""
    return client, client.search_runs([exp.experiment_id], query)


def test_invalid_sampled_config_is_one_failed_trial_and_the_study_goes_on(
    tmp_path, monkeypatch, study_root
):
    monkeypatch.chdir(tmp_path)
    key = "model.clip.custom.heads"  # micro's width 32 is not divisible by 3 heads
    space = {key: {"type": "categorical", "choices": [3, 2]}}
    path = write_spec(tmp_path, "bad-config", space=space, enqueue=[{key: 3}, {key: 2}])
    _, place = _run_here(path, study_root, tmp_path)
    got = sorted(trials(place.storage, "bad-config"), key=lambda t: t.number)
    assert [t.state.name for t in got] == ["FAIL", "COMPLETE"]
    assert "divisible" in got[0].user_attrs["fail_reason"]
    _, runs = _runs(tmp_path, "trial")
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 1 and "divisible" in failed[0].data.tags["fail_reason"]
    assert failed[0].data.params[key] == "3" and failed[0].data.tags["optuna.state"] == "FAIL"
    assert got[0].user_attrs["mlflow_run_id"] == failed[0].info.run_id


def test_always_pruning_prunes_every_trial_and_fails_none(tmp_path, monkeypatch, study_root):
    import optuna

    import studies.study

    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    monkeypatch.setattr(studies.study, "make_pruner", lambda spec: AlwaysPrune())
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, "prune-all", **{"overrides.train.epochs": 3})
    _, place = _run_here(path, study_root, tmp_path)
    got = trials(place.storage, "prune-all")
    assert [t.state.name for t in got] == ["PRUNED", "PRUNED"]
    assert all(t.last_step == 0 for t in got)  # stopped after the first validation
    _, runs = _runs(tmp_path, "trial")
    assert len(runs) == 2
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["pruned"] == "true"
        assert run.data.tags["optuna.state"] == "PRUNED"  # visibly pruned in the runs table
        assert "test.score" not in run.data.tags  # a pruned trial is never scored on test
        assert not any(k.startswith("test/") for k in run.data.metrics)
        assert "val/best_score" not in run.data.metrics  # Optuna ranks it nowhere either


def test_nan_loss_fails_that_trial_with_its_reason(tmp_path, monkeypatch, study_root):
    from reid_core.losses import objective

    real = objective.ReidObjective.loss
    calls = {"n": 0}

    def poisoned(self, model, batch, encoded, epoch):
        parts = real(self, model, batch, encoded, epoch)
        calls["n"] += 1
        if calls["n"] == 2:  # the first trial's second step
            parts.total = parts.total * float("nan")
        return parts

    monkeypatch.setattr(objective.ReidObjective, "loss", poisoned)
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, "nan")
    _, place = _run_here(path, study_root, tmp_path)
    got = sorted(trials(place.storage, "nan"), key=lambda t: t.number)
    assert [t.state.name for t in got] == ["FAIL", "COMPLETE"]
    assert "non-finite loss" in got[0].user_attrs["fail_reason"]
    _, runs = _runs(tmp_path, "trial")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]


def test_status_json_best_and_promotion(tmp_path, monkeypatch, study_root, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, "promo", enqueue=[{"optim.lr.head": 5e-4, "model.lora.rank": 4}])
    _, place = _run_here(path, study_root, tmp_path)
    capsys.readouterr()
    assert main(["study", "status", "promo", "--storage", place.storage, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["study"] == "promo" and st["states"]["COMPLETE"] == 2 and st["running"] == []
    assert {"number", "value", "params", "mlflow_run_id"} <= set(st["best"])
    assert st["best"]["params"] == trials(place.storage, "promo")[st["best"]["number"]].params

    client, parents = _runs(tmp_path, "study")
    (parent,) = parents
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["best.trial"] == str(st["best"]["number"])
    assert parent.data.tags["study.sampled_keys"] == "optim.lr.head,model.lora.rank"
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/trials.csv", "study/optimization_history.png"} <= names
    _, children = _runs(tmp_path, "trial")
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert sorted(r.info.run_name for r in children) == ["promo-t0", "promo-t1"]

    args = ["study", "best", "promo", "--storage", place.storage]
    assert main([*args, "--tracking-uri", place.tracking_uri, "--promote"]) == 0
    out = capsys.readouterr().out
    assert f"best trial {st['best']['number']}" in out and "to 'champion'" in out
    version = client.get_model_version_by_alias("omnireid", "champion")
    assert version.run_id == st["best"]["mlflow_run_id"]
    assert f"runs/{version.run_id}?workflowType=machine_learning" in version.description
    assert float(version.tags["test.score"]) == pytest.approx(st["best"]["test_score"])


def test_two_objectives_pick_the_pareto_trial_the_spec_names(tmp_path, monkeypatch, study_root):
    monkeypatch.chdir(tmp_path)
    path = write_spec(
        tmp_path,
        "pareto",
        second_objective={"metric": "trainable_params", "direction": "minimize"},
        pruner=None,
        pareto_best={"rule": "second_within", "tolerance": 1.0},
        enqueue=[
            {"optim.lr.head": 5e-4, "model.lora.rank": 2},
            {"optim.lr.head": 5e-4, "model.lora.rank": 4},
        ],
    )
    spec, place = _run_here(path, study_root, tmp_path)
    from studies.report import best_trial
    from studies.study import load

    study, spec, _ = load("pareto", place.storage)
    got = trials(place.storage, "pareto")
    assert all(len(t.values) == 2 for t in got)
    best = best_trial(study, spec)  # within a tolerance of 1.0, the fewest parameters wins
    assert best.params["model.lora.rank"] == 2
    assert best.values[1] == min(t.values[1] for t in got)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.integration
def test_sigint_stops_cleanly_and_a_rerun_continues_to_the_budget(tmp_path, study_root):
    path = write_spec(
        tmp_path,
        "interrupt",
        budget={"n_trials": 3},
        **{"overrides.train.epochs": 6, "overrides.train.max_steps_per_epoch": 3},
    )
    storage = f"sqlite:///{tmp_path}/studies.db"
    args = ["study", "run", str(path), "--data", str(study_root), "--storage", storage]
    args += ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]  # not the env's
    # Ctrl-C as at a terminal: a shell starts background jobs with SIGINT ignored and children
    # inherit that (CI started as `.ci/run &` did, and the study then ran to its budget)
    proc = reid(*args, cwd=tmp_path, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            started = [t for t in trials(storage, "interrupt") if t.user_attrs.get("epoch")]
        except Exception:  # the study is not created yet
            started = []
        if started:
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=180)[0]
    assert proc.returncode == 130, out
    got = trials(storage, "interrupt")
    assert not [t for t in got if t.state.name == "RUNNING"], out
    assert any(t.user_attrs.get("interrupted") for t in got), out
    _, runs = _runs(tmp_path)
    assert not [
        r for r in runs if r.info.status == "RUNNING" and r.data.tags.get("kind") == "trial"
    ]

    again = reid(*args, cwd=tmp_path)
    out = again.communicate(timeout=600)[0]
    assert again.returncode == 0, out
    got = trials(storage, "interrupt")
    assert sum(t.state.name == "COMPLETE" for t in got) == 3, out
    assert not [t for t in got if t.state.name in ("RUNNING", "WAITING")]
    _, parents = _runs(tmp_path, "study")
    assert [p.info.status for p in parents] == ["FINISHED"]


@pytest.mark.integration
def test_two_creates_at_once_make_one_study_and_one_parent_run(tmp_path, study_root):
    path = write_spec(tmp_path, "race", budget={"n_trials": 3}, enqueue=[{"model.lora.rank": 2}])
    storage = f"sqlite:///{tmp_path}/studies.db"
    args = ["study", "create", str(path), "--data", str(study_root), "--storage", storage]
    args += ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    procs = [reid(*args, cwd=tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # the enqueued config once, not doubled; slots are claimed as trials start, not here
    assert len(trials(storage, "race")) == 1, outs
    _, parents = _runs(tmp_path, "study")
    assert len(parents) == 1
