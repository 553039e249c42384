"""A tracked training run: params, tags, metrics, artifacts, model; run states on failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from reid_core.evaluation.metrics import CMC_RANKS

SETS = [
    "nir",
    "cp",
    "sk",
    "text",
    "nir_cp",
    "nir_sk",
    "nir_text",
    "cp_sk",
    "cp_text",
    "sk_text",
    "nir_cp_sk",
    "nir_cp_text",
    "nir_sk_text",
    "cp_sk_text",
    "nir_cp_sk_text",
]
SET_METRICS = ["mAP", "mAP100", "mINP", *(f"R{k}" for k in CMC_RANKS)]


def _run(tracked):
    import mlflow

    return mlflow.MlflowClient(tracked.uri).get_run(tracked.run_id)


def test_params_are_the_dotted_config(tracked):
    params = _run(tracked).data.params
    dotted = [k for k in params if "." in k]
    assert len(dotted) >= 40
    assert params["train.epochs"] == "1" and params["model.clip.name"] == "custom"
    assert params["data.modalities"].startswith("[")  # lists are JSON strings


def test_tags_describe_code_data_and_device(tracked):
    from reid_core.data.dataset_index import build_index

    tags = _run(tracked).data.tags
    assert tags["dataset.digest"] == build_index(tracked.root).digest
    assert tags["protocol"] == tracked.result["protocol"] == "unordered15"
    assert tags["device"] == "cpu" and len(tags["config.hash"]) == 16
    assert tags["git.dirty"] in ("true", "false", "unknown") and tags["git.commit"]
    for dist in ("torch", "mlflow", "open_clip_torch", "omnireid"):
        assert tags[f"version.{dist}"]


def test_metrics_are_the_headline_within_the_budget(tracked):
    import mlflow

    client = mlflow.MlflowClient(tracked.uri)
    metrics = _run(tracked).data.metrics
    assert len(metrics) <= 60, sorted(metrics)  # system metrics included
    system = {k for k in metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    assert len(metrics) - len(system) <= 50, sorted(metrics)
    singles = ["nir", "cp", "sk", "text"]
    for split in ("val", "test"):
        assert {f"{split}/score", *(f"{split}/mm/{g}" for g in range(1, 5))} <= set(metrics)
    assert {f"val/mAP/{s}" for s in singles} <= set(metrics)
    assert not [k for k in metrics if k.startswith(("val/mAP100/", "val/R1/", "test/mAP/"))]
    assert metrics["test/score"] == pytest.approx(tracked.result["score"], abs=1e-12)
    for key in ("loss", "ce", "sdm", "norm_penalty", "feature_norm", "grad_norm", "spikes",
                "lr/head", "lr/backbone", "ce/nir"):  # fmt: skip
        assert f"train/{key}" in metrics, key
    assert "perf/samples_per_s" in metrics and not [k for k in metrics if "/sdm/" in k]
    # epochs count from 1, as in the files and the CLI; one-off numbers sit at step 0 (bars)
    val = client.get_metric_history(tracked.run_id, "val/score")
    assert [m.step for m in val] == [1]
    assert [m.step for m in client.get_metric_history(tracked.run_id, "train/loss")] == [1]
    assert [m.step for m in client.get_metric_history(tracked.run_id, "test/score")] == [0]
    assert metrics["val/best_score"] == max(m.value for m in val)
    assert metrics["val/best_epoch"] == 1


def test_tables_hold_every_set_and_epoch(tracked):
    import csv

    import mlflow

    def table(name):
        local = mlflow.artifacts.download_artifacts(
            run_id=tracked.run_id, artifact_path=name, tracking_uri=tracked.uri
        )
        return list(csv.DictReader(Path(local).read_text().splitlines()))

    val = table("metrics/val.csv")
    assert len(val) == 15 + 5 and {r["epoch"] for r in val} == {"1"}
    assert {r["set"] for r in val} >= {"nir", "nir_cp_sk_text", "mm1", "score"}
    train = table("metrics/train.csv")
    assert [r["epoch"] for r in train] == ["1"] and "sdm/nir_cp" in train[0]
    test = table("metrics/test.csv")
    assert len(test) == 15 + 5 and "epoch" not in test[0]
    run = _run(tracked)
    logged = json.loads(run.data.tags["mlflow.loggedArtifacts"])
    assert {"path": "metrics/test.json", "type": "table"} in logged


# ------------------------------------------------------------------------ callback, no store
class _FakeClient:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return SimpleNamespace(info=SimpleNamespace(run_id="r1"))

        return record


def _tracker(tmp_path, micro_cfg, exp_root, evaluates=False):
    from experiments.tracking import Logs, MlflowTracker, Store

    client = _FakeClient()  # no store: a recording fake client
    tracker = MlflowTracker(
        micro_cfg, exp_root, tmp_path, store=Store("fake", "0", client), run_name="t",
        logs=Logs(model_name=None, log_model=False, plots=False),
    )  # fmt: skip
    trainer = SimpleNamespace(
        device="cpu",
        state=SimpleNamespace(epoch=0),
        stop_reason=None,
        should_eval=lambda epoch: evaluates,
    )
    tracker.on_train_start(trainer)
    return tracker, client, trainer


def _batches(client):
    return [[m.key for m in c[2]["metrics"]] for c in client.calls if c[0] == "log_batch"]


def test_epoch_metrics_are_one_batched_call(tmp_path, micro_cfg, exp_root):
    tracker, client, trainer = _tracker(tmp_path, micro_cfg, exp_root)
    client.calls.clear()
    logs = {"loss": 1.0, "ce": 0.5, "lr.head": 1e-3, "sdm/nir_cp": 2.0, "samples_per_s": 9.0}
    tracker.on_epoch_end(trainer, 0, logs)
    assert [c[0] for c in client.calls] == ["log_text", "log_batch"]  # metrics/train.csv
    assert _batches(client) == [["train/loss", "train/ce", "train/lr/head", "perf/samples_per_s"]]
    assert {m.step for m in client.calls[1][2]["metrics"]} == {1}  # epochs count from 1


def test_an_evaluated_epoch_is_logged_with_its_validation_val_first(tmp_path, micro_cfg, exp_root):
    tracker, client, trainer = _tracker(tmp_path, micro_cfg, exp_root, evaluates=True)
    client.calls.clear()
    tracker.on_epoch_end(trainer, 2, {"loss": 1.0})
    assert _batches(client) == []
    sets = {s: {"mAP": 0.5, "mAP100": 0.5, "mINP": 0.1, "R1": 0.4, "R5": 0.6, "R10": 0.7}
            for s in ("nir", "nir_cp")}  # fmt: skip
    summary = {"mm1": 0.5, "mm2": 0.5, "score": 0.5}
    result = {"split": "val", "sets": sets, "summary": summary, "score": 0.5, "protocol": "p"}
    tracker.on_evaluate(trainer, 2, "val", result)
    (batch,) = _batches(client)
    assert batch == ["val/score", "val/mm/1", "val/mm/2", "val/mAP/nir", "train/loss"]


@pytest.mark.parametrize(("how", "status"), [("failed", "FAILED"), ("interrupted", "KILLED")])
def test_crash_or_interrupt_ends_the_run(tmp_path, micro_cfg, exp_root, how, status):
    tracker, client, trainer = _tracker(tmp_path, micro_cfg, exp_root)
    tracker.on_train_end(trainer, how)
    assert ("set_terminated", ("r1", status), {}) in client.calls
    tracker.__exit__(None, None, None)  # already ended: nothing more
    assert sum(c[0] == "set_terminated" for c in client.calls) == 1


def test_failure_after_training_ends_failed(tmp_path, micro_cfg, exp_root):
    tracker, client, trainer = _tracker(tmp_path, micro_cfg, exp_root)
    tracker.on_train_end(trainer, "finished")  # open until the test evaluation
    assert not any(c[0] == "set_terminated" for c in client.calls)
    with pytest.raises(RuntimeError), tracker:
        raise RuntimeError("test evaluation crashed")
    assert ("set_terminated", ("r1", "FAILED"), {}) in client.calls


def test_real_crash_leaves_no_running_run(tmp_path, monkeypatch, exp_root):
    import mlflow

    from experiments.run import train
    from experiments.tracking import MlflowTracker, open_store
    from reid_core.config import load_config
    from reid_core.training.callbacks import Callback

    class Boom(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            raise RuntimeError("boom")

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = load_config(preset="micro", overrides=["train.epochs=1", "train.max_steps_per_epoch=1"])
    with (
        pytest.raises(RuntimeError, match="boom"),
        MlflowTracker(cfg, exp_root, tmp_path / "run", store=open_store(uri)) as tracker,
    ):
        train(cfg, exp_root, tmp_path / "run", callbacks=[tracker, Boom()])
    run = mlflow.MlflowClient(uri).get_run(tracker.logged_run_id)
    assert run.info.status == "FAILED"
    assert not (tmp_path / "mlruns").exists()


# ------------------------------------------------------------------------------- store, CLI
def test_unreachable_server_is_one_line(capsys, tmp_path, monkeypatch):
    from studies.cli import main
    from tests.experiments.conftest import free_port

    monkeypatch.chdir(tmp_path)
    uri = f"http://127.0.0.1:{free_port()}"
    assert main(["models", "list", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: tracking server") and "unreachable" in err
    assert "\n" not in err


def test_missing_sqlite_folder_is_one_line(capsys, tmp_path):
    from studies.cli import main

    assert main(["models", "list", "--tracking-uri", f"sqlite:///{tmp_path}/no/mlflow.db"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.integration
def test_experiment_created_once_by_racing_processes(tmp_path):
    code = (
        "import sys; from experiments.tracking import open_store; "
        "print(open_store(sys.argv[1], 'race').experiment_id)"
    )
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, uri],
            cwd=tmp_path,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    ids = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(ids) == 1


@pytest.mark.integration
@pytest.mark.slow
def test_no_track_never_imports_mlflow(tmp_path, exp_root):
    code = (
        "import sys; from studies.cli import main; "
        "rc = main(['train', '--no-track', '--preset', 'micro', '--set', 'train.epochs=1', "
        "'--set', 'train.max_steps_per_epoch=1', '--data', sys.argv[1], '--out', 'run']); "
        "assert rc == 0, rc; assert 'mlflow' not in sys.modules, 'mlflow imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(exp_root)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()


def test_eval_is_tracked_as_its_own_run(tracked, capsys, monkeypatch):
    import mlflow

    from studies.cli import main

    monkeypatch.chdir(tracked.home)
    ckpt = tracked.out / "checkpoints" / "best.pt"
    args = [
        "eval",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(tracked.root),
        "--tracking-uri",
        tracked.uri,
    ]
    assert main(args) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1].split()[2]
    run = mlflow.MlflowClient(tracked.uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["kind"] == "eval"
    assert run.data.metrics["test/score"] == pytest.approx(tracked.result["score"], abs=1e-6)


def test_data_root_is_the_runs_dataset_input(tracked):
    import mlflow

    from reid_core.data.dataset_index import build_index

    run = mlflow.MlflowClient(tracked.uri).get_run(tracked.run_id)
    (logged,) = run.inputs.dataset_inputs
    assert logged.dataset.name == tracked.root.name
    assert logged.dataset.digest == build_index(tracked.root).digest[:12]
    assert logged.dataset.source == tracked.root.resolve().as_uri()


def test_links_open_the_model_training_pages():
    from experiments import links

    assert links.link("sqlite:///mlflow.db", links.runs_path("3")) == (
        "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
    )
    server = links.link("http://10.0.0.5:5000/", links.run_path("3", "abc"))
    assert server == "http://10.0.0.5:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    view = links.view_path("3", "k1", charts=True)
    assert view == (
        "#/experiments/3/runs?viewStateShareKey=k1&compareRunsMode=CHART"
        "&workflowType=machine_learning"
    )


class _RacingClient:
    """log_inputs fails like the tracking store's loser of a dataset-insert race, `fails` times."""

    def __init__(self, fails: int, message: str) -> None:
        self.fails, self.message, self.calls = fails, message, 0

    def log_inputs(self, run_id, datasets):
        from mlflow.exceptions import MlflowException

        self.calls += 1
        if self.calls <= self.fails:
            raise MlflowException(self.message)


def test_a_dataset_insert_race_is_tried_again_and_other_errors_are_not():
    from mlflow.exceptions import MlflowException

    from experiments.run_info import log_dataset

    pg = 'duplicate key value violates unique constraint "dataset_pk"'
    client = _RacingClient(1, pg)
    log_dataset(client, "run", object())
    assert client.calls == 2  # the second try finds the row the winner inserted
    sqlite = _RacingClient(2, "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.name")
    log_dataset(sqlite, "run", object())
    assert sqlite.calls == 3
    always = _RacingClient(10, pg)
    with pytest.raises(MlflowException, match="dataset_pk"):
        log_dataset(always, "run", object(), tries=3)
    assert always.calls == 3
    other = _RacingClient(1, "RESOURCE_DOES_NOT_EXIST: run not found")
    with pytest.raises(MlflowException, match="run not found"):
        log_dataset(other, "run", object())
    assert other.calls == 1
