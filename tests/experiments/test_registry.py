"""Registry end to end: list, promote (and refuse), search, load in a fresh process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studies.cli import main

HERE = Path(__file__).parent


def _client(uri):
    import mlflow

    return mlflow.MlflowClient(uri, uri)


def _candidate(client, tracked, name, score, digest=None):
    """A version of `name` backed by the tracked run's model, with a run scoring `score`."""
    source = client.get_model_version("omnireid", "1").source
    tags = {
        "dataset.digest": digest or client.get_run(tracked.run_id).data.tags["dataset.digest"],
        "protocol": "unordered15",
    }
    run = client.create_run(tracked.experiment_id, tags=tags)
    client.log_metric(run.info.run_id, "test/score", score)
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    mv = client.create_model_version(name, source, run_id=run.info.run_id, tags=tags)
    return str(mv.version), run.info.run_id


def test_list_and_promote_end_to_end(tracked, mlflow_env, capsys, monkeypatch):
    # mlflow_env: MLflow resolves `models:/m-...` sources through the global tracking URI
    monkeypatch.chdir(tracked.home)
    client = _client(tracked.uri)
    base = client.get_run(tracked.run_id).data.metrics["test/score"]
    name, uri = "omnireid-reg", ["--tracking-uri", tracked.uri, "--name", "omnireid-reg"]
    v1, _ = _candidate(client, tracked, name, base)
    assert main(["models", "promote", *uri]) == 0
    assert "no current holder" in capsys.readouterr().out

    v2, _ = _candidate(client, tracked, name, base - 0.05)  # lower score: refused
    assert main(["models", "promote", *uri, "--version", v2]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "does not beat" in err
    assert str(client.get_model_version_by_alias(name, "champion").version) == v1
    tags = client.get_model_version(name, v2).tags
    assert tags["promotion.champion.outcome"] == "refused"
    assert tags["promotion.champion.previous_version"] == v1

    v3, run3 = _candidate(client, tracked, name, base + 0.01)
    assert main(["models", "promote", *uri, "--run", run3, "--min-delta", "0.05"]) == 1
    capsys.readouterr()
    assert main(["models", "promote", *uri, "--run", run3, "--min-delta", "0.005"]) == 0
    assert str(client.get_model_version_by_alias(name, "champion").version) == v3
    tags = client.get_model_version(name, v3).tags
    assert tags["promotion.champion.outcome"] == "promoted"
    assert tags["promotion.champion.previous_version"] == v1
    assert float(tags["promotion.champion.previous_score"]) == pytest.approx(base, abs=1e-6)
    assert float(tags["promotion.champion.score"]) == pytest.approx(base + 0.01, abs=1e-6)
    assert "beats" in tags["promotion.champion.reason"]

    v4, _ = _candidate(client, tracked, name, base + 0.5, digest="other-data")
    assert main(["models", "promote", *uri, "--version", v4]) == 1
    assert "other data" in capsys.readouterr().err

    capsys.readouterr()
    assert main(["models", "list", *uri, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["version"] for r in rows] == [v4, v3, v2, v1]
    assert rows[1]["aliases"] == ["champion"] and rows[1]["protocol"] == "unordered15"
    assert rows[3]["score"] == pytest.approx(base, abs=1e-6)


def test_search_ranks_gallery_and_caches_it(champion, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMNIREID_SEARCH_CACHE", str(tmp_path / "cache"))
    nir = sorted((champion.root / "nir").rglob("*.jpg"))[0]
    args = [
        "search",
        "--tracking-uri",
        champion.uri,
        "--gallery",
        str(champion.root),
        "--query",
        f"nir={nir}",
        "--query",
        "text=a person in a dark jacket",
        "--top",
        "5",
        "--json",
    ]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["gallery_cached"] is False and len(first["matches"]) == 5
    scores = [m["score"] for m in first["matches"]]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0001 for s in scores)
    assert all(m["path"].startswith("vis/") for m in first["matches"])
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["gallery_cached"] is True and second["matches"] == first["matches"]
    assert main(args[:-1]) == 0  # the table
    assert " 1  " in capsys.readouterr().out


def test_missing_alias_is_one_line(mlflow_env, capsys, tmp_path):
    nir = sorted((mlflow_env.root / "nir").rglob("*.jpg"))[0]
    rc = main(
        [
            "search",
            "--model",
            "models:/omnireid@nosuch",
            "--gallery",
            str(mlflow_env.root),
            "--query",
            f"nir={nir}",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "no alias 'nosuch'" in err and "\n" not in err


def test_incompatible_model_format_is_refused(mlflow_env, tmp_path):
    import mlflow

    from experiments.pyfunc import FORMAT_FILE, ModelFormatError
    from experiments.registry import load_model

    local = Path(mlflow.artifacts.download_artifacts("models:/omnireid/1"))
    copy = tmp_path / "model"
    shutil.copytree(local, copy)
    meta_path = copy / "data" / "omnireid" / FORMAT_FILE
    meta = json.loads(meta_path.read_text())
    meta.update(format_version=99, omnireid_version="9.0.0")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="format version 99"):
        load_model(str(copy))


def test_predict_validates_rows(mlflow_env):
    import pandas as pd

    from experiments.registry import load_model
    from reid_core.errors import DataError

    model = load_model("models:/omnireid/1")
    impl = model._model_impl  # the OmniReIDPyfunc behind MLflow's wrapper
    with pytest.raises(DataError, match="exactly one"):
        impl.predict(pd.DataFrame([{"query_id": "q", "modality": "nir"}]))
    with pytest.raises(DataError, match="cannot take a text"):
        impl.predict(pd.DataFrame([{"query_id": "q", "modality": "nir", "text": "hi"}]))


@pytest.mark.integration
def test_champion_in_fresh_process_reproduces_test_score(champion):
    env = {**os.environ, "MLFLOW_TRACKING_URI": champion.uri}
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "score_champion.py"),
            "models:/omnireid@champion",
            str(champion.root),
        ],
        cwd=champion.home,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    logged = _client(champion.uri).get_run(champion.run_id).data.metrics["test/score"]
    assert got["protocol"] == "unordered15"
    assert got["score"] == pytest.approx(logged, abs=1e-4)
