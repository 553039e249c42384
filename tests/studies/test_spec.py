"""Study specs: the issue's example loads as written; each mistake is one line before any trial."""

from __future__ import annotations

import pytest
import yaml

from studies.cli import main
from studies.spec import SpecError, load_spec, parse_spec, shipped_specs
from tests.studies.conftest import write_spec

EXAMPLE = """
name: lr-temp
base: {preset: cpu-tiny, overrides: {train.epochs: 6, train.eval_every: 2}}
space:
  optim.lr.backbone: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
  loss.sdm.temperature: {type: float, low: 0.1, high: 0.3}
  model.lora.rank: {type: categorical, choices: [2, 4, 8]}
enqueue: [{optim.lr.backbone: 3.0e-4, loss.sdm.temperature: 0.2, model.lora.rank: 4}]
objective: {metric: val/score, direction: maximize}
sampler: {type: tpe, seed: 0}
pruner: {type: median, n_startup_trials: 2, n_warmup_steps: 2}
budget: {n_trials: 8}
storage: {heartbeat_interval: 5, grace_period: 20, max_retries: 2}
"""


def test_the_issue_example_loads_as_written(tmp_path):
    path = tmp_path / "lr-temp.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    spec = load_spec(path)
    assert list(spec.space) == ["optim.lr.backbone", "loss.sdm.temperature", "model.lora.rank"]
    assert spec.space["optim.lr.backbone"].log and spec.budget.n_trials == 8
    assert spec.effective_pruner.type == "median" and spec.storage.grace_period == 20
    assert spec.tracking.log_checkpoints == "best"  # only the best trial keeps its checkpoint


def test_log_checkpoints_from_the_command_line_replaces_the_specs(tmp_path):
    from studies.cli import _setup

    path = tmp_path / "lr-temp.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    spec, _ = _setup(str(path), None, None, None, None, "all")
    assert spec.tracking.log_checkpoints == "all" and list(spec.space) == list(
        load_spec(path).space
    )


def test_shipped_specs_load_and_enqueue_their_base():
    from studies.trial import build_config

    names = shipped_specs()
    assert {"demo", "orbench-lora"} <= set(names)
    for name in names:
        spec = load_spec(name)
        assert spec.enqueue, f"{name} enqueues nothing"
        base = build_config(spec, {})
        for key, value in spec.enqueue[0].items():  # the base preset's own values
            from reid_core.config import flatten

            assert flatten(base)[key] == pytest.approx(value), (name, key)


def _with(**changes):
    tree = yaml.safe_load(EXAMPLE)
    tree.update(changes)
    return tree


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"space": {"optim.lr.bakbone": {"type": "float", "low": 1, "high": 2}}}, "bakbone"),
        ({"space": {"optim.lr.head": {"type": "float", "low": 2, "high": 1}}}, "low must be"),
        ({"space": {"optim.lr.head": {"type": "float", "low": 0, "high": 1, "log": True}}}, "> 0"),
        ({"space": {"model.lora.rank": {"type": "int", "low": 4, "high": 4}}}, "low must be"),
        ({"enqueue": [{"model.lora.rank": 5}]}, "outside the space"),
        ({"enqueue": [{"optim.lr.head": 1e-3}]}, "not a parameter of the space"),
        ({"second_objective": {"metric": "latency_ms"}}, "two-objective"),
        ({"objective": {"metric": "val/loss"}}, "never produces"),
        ({"objective": {"metric": "test/score"}}, "never produces"),
        ({"sampler": {"type": "tpee"}}, "tpee"),
        ({"pruner": {"type": "mediam"}}, "mediam"),
        ({"budget": {}}, "n_trials"),
        ({"surprise": 1}, "surprise"),
        ({"space": {"model.lora.rank": {"type": "choice", "choices": [1]}}}, "choice"),
        ({"tracking": {"log_checkpoints": "some"}}, "tracking.log_checkpoints"),
    ],
)
def test_bad_specs_are_one_line_naming_the_key(changes, expected):
    with pytest.raises(SpecError) as info:
        parse_spec(_with(**changes), "bad.yaml")
    message = str(info.value)
    assert message.startswith("bad.yaml: ") and expected in message and "\n" not in message


def test_conditional_parameter_needs_an_earlier_parent():
    space = {
        "model.stem.base": {
            "type": "int",
            "low": 8,
            "high": 32,
            "when": {"model.stem.kind": "conv"},
        },
        "model.stem.kind": {"type": "categorical", "choices": ["patch", "conv"]},
    }
    with pytest.raises(SpecError, match="listed before"):
        parse_spec(_with(space=space, enqueue=[]), "c.yaml")
    ordered = dict(reversed(list(space.items())))
    spec = parse_spec(_with(space=ordered, enqueue=[]), "c.yaml")

    import optuna

    from studies.trial import sample_params

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = []
    for _ in range(12):
        trial = study.ask()
        params = sample_params(trial, spec)
        seen.append(params)
        study.tell(trial, 0.0)
        assert ("model.stem.base" in params) == (params["model.stem.kind"] == "conv")
    kinds = {p["model.stem.kind"] for p in seen}
    assert kinds == {"patch", "conv"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["study", "run", "nosuch"], "unknown study spec 'nosuch'"),
        (["study", "run", "missing.yaml"], "no such file"),
        (["study", "status", "nope", "--storage", "sqlite:///nofolder/x.db"], "does not exist"),
        (
            ["study", "run", "SPEC", "--storage", "postgresql://nobody@127.0.0.1:1/none"],
            "is unreachable",
        ),
        (["study", "run", "SPEC", "--tracking-uri", "http://127.0.0.1:1"], "unreachable"),
    ],
)
def test_cli_errors_are_one_line_before_any_trial(
    tmp_path, monkeypatch, capsys, study_root, args, expected
):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, "cli-errors")
    args = [str(spec) if a == "SPEC" else a for a in args]
    if args[1] == "run":
        args += ["--data", str(study_root)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and "\n" not in err, err
    assert not (tmp_path / "runs").exists()  # no trial ever started


def test_objective_set_must_exist_in_the_val_protocol(tmp_path, monkeypatch, capsys, study_root):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, "bad-set", objective={"metric": "val/mAP/nir_thermal"})
    assert main(["study", "create", str(spec), "--data", str(study_root)]) == 2
    err = capsys.readouterr().err
    assert "never produces 'val/mAP/nir_thermal'" in err and "nir_sk" in err


def test_password_is_redacted():
    from studies.storage import redact

    assert redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
