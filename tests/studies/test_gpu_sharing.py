"""`--gpus 0,0`: a device listed twice runs two workers on it (`reid study worker` as
`reid study run`). Without CUDA here the workers train on the CPU, but their placement is what a
GPU machine gets: each worker sees `CUDA_VISIBLE_DEVICES=0`."""

from __future__ import annotations

import pytest

from tests.studies.conftest import reid, trials, write_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_one_worker_command_runs_two_workers_on_one_device(tmp_path, study_root):
    import mlflow

    path = write_spec(tmp_path, "shared", budget={"n_trials": 4})
    storage = f"sqlite:///{tmp_path}/studies.db"
    mlflow_uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = ["--storage", storage, "--tracking-uri", mlflow_uri]
    create = reid("study", "create", str(path), "--data", str(study_root), *common, cwd=tmp_path)
    assert create.wait(timeout=300) == 0, create.stdout.read()
    worker = reid("study", "worker", "shared", *common, "--gpus", "0,0", cwd=tmp_path)
    out = worker.communicate(timeout=900)[0]
    assert worker.returncode == 0, out
    assert "2 worker(s) on GPUs 0,0" in out
    done = trials(storage, "shared")
    assert [t.state.name for t in done] == ["COMPLETE"] * 4
    assert len({t.user_attrs["worker"] for t in done}) == 2  # two processes shared the device
    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("omnireid")
    runs = client.search_runs([exp.experiment_id], "tags.kind = 'trial'")
    assert {r.data.tags.get("cuda_visible_devices") for r in runs} == {"0"}


def test_a_malformed_gpu_list_is_one_line(tmp_path, capsys):
    from studies.cli import main

    code = main(
        ["study", "worker", "x", "--storage", f"sqlite:///{tmp_path}/s.db", "--gpus", "0,a"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --gpus '0,a'") and err.count("\n") == 1
