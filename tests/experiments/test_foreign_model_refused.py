"""A foreign pyfunc registered under our name and alias: `reid search`, `reid index build` and
`reid models promote` refuse it in one line, and its code never runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.pyfunc import ModelFormatError


class Payload:
    """Writes a marker file whenever it is unpickled: the proof that foreign code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).write_text("foreign code ran")
        self.__dict__.update(state)


@pytest.fixture
def foreign_champion(tracked, tmp_path, monkeypatch):
    """A cloudpickled pyfunc registered as a new version of `omnireid`, holding @champion in a
    copy of the tracked store (the shared store keeps its own champion)."""
    import shutil

    import mlflow
    from mlflow.pyfunc import PythonModel

    class Foreign(PythonModel):
        def __init__(self, marker: str) -> None:
            self.payload = Payload(marker)

        def predict(self, context, model_input):
            return model_input

    home = tmp_path / "home"
    shutil.copytree(tracked.home, home, ignore=shutil.ignore_patterns("runs"))
    monkeypatch.chdir(home)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # MLflow's own switch on: the refusal below must come from OmniReID's check alone
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    marker = tmp_path / "marker"
    client = mlflow.MlflowClient(uri, uri)
    # an experiment of its own, so the foreign artifacts stay in this copy
    experiment = client.create_experiment("foreign", (home / "foreign").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(
            name="foreign", python_model=Foreign(str(marker)), registered_model_name="omnireid"
        )
    version = str(info.registered_model_version)
    client.set_registered_model_alias("omnireid", "champion", version)
    marker.unlink(missing_ok=True)  # logging checked the model by loading it
    assert mlflow.pyfunc.load_model(f"models:/omnireid/{version}") and marker.exists()
    marker.unlink()  # the marker works: plain MLflow loading runs the foreign code
    return uri, version, marker, client


@pytest.mark.integration
@pytest.mark.slow
def test_foreign_model_is_refused_by_every_command(foreign_champion, tracked, tmp_path, capsys):
    from studies.cli import main

    uri, version, marker, client = foreign_champion
    sketch = next((tracked.root / "sk").rglob("*.*"))
    model = ["--model", "models:/omnireid@champion", "--tracking-uri", uri]
    commands = {
        "search": ["search", *model, "--gallery", str(tracked.root), "--query", f"sk={sketch}"],
        "index": ["index", "build", *model, "--gallery", str(tracked.root), "--out", "idx"],
        "promote": ["models", "promote", "--version", version, "--tracking-uri", uri],
    }
    for name, argv in commands.items():
        if name == "promote":  # the alias back on our model: the foreign one must not take it
            client.set_registered_model_alias("omnireid", "champion", "1")
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "not an OmniReID model" in err, (name, err)
        assert "\n" not in err, (name, err)
        assert not marker.exists(), f"`reid {name}` ran the foreign model's code"
    assert not (tmp_path / "home" / "idx").exists()  # nothing half-written
    assert str(client.get_model_version_by_alias("omnireid", "champion").version) == "1"

    from experiments.registry import load_model

    with pytest.raises(ModelFormatError):
        load_model(f"models:/omnireid/{version}")
    assert not marker.exists()
    ours = load_model("models:/omnireid/1").metadata.flavors["python_function"]
    assert ours["loader_module"] == "experiments.pyfunc"
