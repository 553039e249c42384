"""Servers bind 127.0.0.1 unless asked; registered models load without unpickling code."""

from __future__ import annotations

import pickle
from pathlib import Path

import click
import pytest

LOCAL = ("127.0.0.1", "localhost", "::1")


def _commands(group: click.Group, prefix: str = ""):
    for name, cmd in group.commands.items():
        yield f"{prefix}{name}", cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix}{name} ")


def test_every_host_option_defaults_to_loopback():
    from studies.cli import _assemble

    hosts = {
        name: param.default
        for name, cmd in _commands(_assemble())
        for param in cmd.params
        if param.name == "host"
    }
    assert "ui" in hosts  # the MLflow UI at least
    assert {n: h for n, h in hosts.items() if h not in LOCAL} == {}


def test_reid_ui_passes_the_host_it_is_given(monkeypatch):
    from experiments import ui
    from studies.cli import main

    seen = []
    monkeypatch.setattr(ui, "run_ui", lambda uri, host, port: seen.append(host) or 0)
    assert main(["ui"]) == 0
    assert main(["ui", "--host", "0.0.0.0"]) == 0  # other hosts only when asked explicitly
    assert seen == ["127.0.0.1", "0.0.0.0"]
    cmd = ui.ui_command("sqlite:///x.db", "127.0.0.1", 5000)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"


@pytest.mark.integration
@pytest.mark.slow
def test_registered_model_is_safetensors_and_yaml_and_loads_without_pickle(tmp_path, monkeypatch):
    import mlflow

    from reid_core.data.synth import synthesize
    from studies.cli import main

    root = tmp_path / "data"
    synthesize(root, identities=12, seed=0, size=(48, 24))
    monkeypatch.chdir(tmp_path)  # mlflow.db and mlartifacts are relative to the cwd
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["train", "--preset", "micro", "--data", str(root), "--out", "run",
                 "--tracking-uri", uri, "--set", "train.epochs=1",
                 "--set", "train.max_steps_per_epoch=1"])  # fmt: skip
    assert code == 0
    client = mlflow.MlflowClient(uri, uri)
    (version,) = client.search_model_versions("name='omnireid'")
    local = Path(mlflow.artifacts.download_artifacts(version.source, tracking_uri=uri))
    files = [p for p in local.rglob("*") if p.is_file()]
    names = [p.name for p in files]
    assert any(n.endswith(".safetensors") for n in names)
    assert any(n.endswith((".yaml", ".yml")) for n in names if n != "MLmodel")
    pickled = [n for n in names if n.endswith((".pkl", ".pickle", ".pt", ".pth", ".joblib"))]
    assert pickled == [], pickled
    mlmodel = (local / "MLmodel").read_text()
    assert "loader_module: experiments.pyfunc" in mlmodel and "python_model" not in mlmodel

    def refuse(*args, **kwargs):
        raise AssertionError("a registered model must load without unpickling")

    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, refuse)
    try:
        import cloudpickle

        for name in ("load", "loads"):
            monkeypatch.setattr(cloudpickle, name, refuse)
    except ImportError:
        pass
    model = mlflow.pyfunc.load_model(f"models:/omnireid/{version.version}")
    assert model.metadata.flavors["python_function"]["loader_module"] == "experiments.pyfunc"
